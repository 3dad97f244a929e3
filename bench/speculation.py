"""Speculation past slow gates: scores/research-brief.yaml with and without it, same seeds.

    python bench/speculation.py [--seeds 9] [--time-scale 1.0]

Prints, per variant, the median makespan and the total cost (squashed work included) over the
seeds, and the median of the per-seed makespan ratios. "without" is the same score with every
``speculate`` set to false and every ``attacca`` to false.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from hct_cli.engine import Hands
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.perform import Performer
from hct_cli.program.compile import compile_score
from hct_cli.program.lint import load_score
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score import Score

SCORE = Path(__file__).resolve().parents[1] / "scores" / "research-brief.yaml"


def without_speculation(score: Score) -> Score:
    agents = {name: replace(agent, speculate=False, attacca=False) for name, agent in score.agents.items()}
    return replace(score, agents=MappingProxyType(agents))


def run(score: Score, seed: int, time_scale: float) -> dict[str, float]:
    program = compile_score(score)
    provider = SimulatedProvider(seed, time_scale=time_scale)
    performer = Performer(
        program,
        Hands(
            lambda spec: provider, judge_provider=provider, gates=Gatekeeper(tiers=program.tiers, simulate_seed=seed)
        ),
        inputs={name: spec.default for name, spec in score.inputs.items()},
    )
    result = asyncio.run(performer.run())
    assert result.status == "completed", result.status
    return {
        "makespan_s": result.makespan_s,
        "cost_usd": result.cost_usd,
        "squashes": result.squashes,
        "squashed_cost_usd": result.squashed_cost_usd,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    score = load_score(SCORE)
    variants = {"with": score, "without": without_speculation(score)}
    runs = {name: [run(s, seed, args.time_scale) for seed in range(args.seeds)] for name, s in variants.items()}
    report = {
        name: {
            "median_makespan_s": round(statistics.median(r["makespan_s"] for r in rows), 4),
            "total_cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
            "squashes": sum(int(r["squashes"]) for r in rows),
            "squashed_cost_usd": round(sum(r["squashed_cost_usd"] for r in rows), 6),
        }
        for name, rows in runs.items()
    }
    ratios = [b["makespan_s"] / a["makespan_s"] for a, b in zip(runs["with"], runs["without"], strict=True)]
    report["without/with (median of per-seed ratios)"] = round(statistics.median(ratios), 4)  # type: ignore[assignment]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
