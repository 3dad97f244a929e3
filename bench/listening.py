"""Listening: scores/shared-context.yaml with and without the policy, at three tempi, same seeds.

    python bench/listening.py [--seeds 5] [--time-scale 0.2]

For each tempo (the reviewers' tempo rewritten to moderato, allegro, presto) and each seed, runs
the score with listening and without it (``hct bench --compare no-listen`` does the same for the
score as written). Prints, per tempo, the median over seeds of:

* the reviewers' input cost with listening ÷ without it, and ÷ the same prompts sent uncached;
* the makespan growth with listening, in seconds and in leader's times to first token (TTFT:
  the simulated provider's fixed part plus the prefill of the leader's uncached prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.models import model_info
from hct_cli.program.compile import compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.providers.simulated import SimulatedProvider, prefill_of
from hct_cli.score import Score

SCORE = Path(__file__).resolve().parents[1] / "scores" / "shared-context.yaml"
REVIEWERS = ("security", "performance", "correctness", "concurrency", "api", "tests")


def at_tempo(score: Score, tempo: str) -> Score:
    agents = {name: replace(agent, tempo=tempo) if name in REVIEWERS else agent for name, agent in score.agents.items()}
    return replace(score, agents=MappingProxyType(agents))


def run(score: Score, seed: int, time_scale: float, listening: bool) -> RunResult:
    program = compile_score(score)
    provider = SimulatedProvider(seed, time_scale=time_scale)
    performer = Performer(
        program,
        Hands(lambda spec: provider),
        inputs=resolve_inputs(score, {}),
        options=EngineOptions(listening=listening),
    )
    result = asyncio.run(performer.run())
    assert result.status == "completed", result.status
    return result


def reviewers_input(result: RunResult) -> tuple[float, float]:
    """(what the reviewers' prompts cost, what they would cost uncached)."""
    paid = uncached = 0.0
    for name in REVIEWERS:
        record = result.agents[name]
        paid += record.input_cost_usd
        for call in record.all_calls():
            info = model_info(call.result.model or "")
            if info is not None:
                uncached += info.cost(call.result.prompt_tokens, 0)
    return paid, uncached


def leader_ttft_s(result: RunResult, time_scale: float) -> float:
    """The time to first token of a reviewer's call with nothing cached, as simulated."""
    record = result.agents[REVIEWERS[0]]
    call = record.all_calls()[-1]
    info = model_info(call.result.model or "")
    assert info is not None
    base, rate = prefill_of(info.provider)
    return (base + call.result.prompt_tokens / rate) * time_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--time-scale", type=float, default=0.2)
    args = parser.parse_args()
    score = load_score(SCORE)
    report: dict[str, Any] = {}
    for tempo in ("moderato", "allegro", "presto"):
        variant = at_tempo(score, tempo)
        vs_without, vs_uncached, growth_s, growth_ttft, ttfts = [], [], [], [], []
        for seed in range(args.seeds):
            with_listening = run(variant, seed, args.time_scale, listening=True)
            without = run(variant, seed, args.time_scale, listening=False)
            paid, uncached = reviewers_input(with_listening)
            paid_without, _ = reviewers_input(without)
            ttft = leader_ttft_s(without, args.time_scale)
            vs_without.append(paid / paid_without)
            vs_uncached.append(paid / uncached)
            growth = with_listening.makespan_s - without.makespan_s
            growth_s.append(growth)
            growth_ttft.append(growth / ttft)
            ttfts.append(ttft)
        report[tempo] = {
            "input_cost_listen/no-listen": round(statistics.median(vs_without), 4),
            "input_cost_listen/uncached": round(statistics.median(vs_uncached), 4),
            "makespan_growth_s": round(statistics.median(growth_s), 4),
            "makespan_growth_max_s": round(max(growth_s), 4),
            "leader_ttft_s": round(statistics.median(ttfts), 4),
            "makespan_growth/ttft": round(statistics.median(growth_ttft), 4),
            "makespan_growth/ttft_max": round(max(growth_ttft), 4),
        }
    report["seeds"] = args.seeds
    report["time_scale"] = args.time_scale
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
