"""``hct route``: the tempo x dynamics table and where each agent's calls go, with the reason."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hct_cli.jsonio import dumps
from hct_cli.models import model_info
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score
from hct_cli.program.routing import DEFAULT_TABLE, routing_table
from hct_cli.score.model import DYNAMICS
from hct_cli.score.tempo import TEMPOS

__all__ = ["route"]


def _report(program: Program) -> dict[str, Any]:
    score = program.score
    table = routing_table(score)
    agents = {}
    for name, spec in program.stations.items():
        price = model_info(spec.route.model) if spec.agent.kind == "llm" else None
        agents[name] = {
            "kind": spec.agent.kind,
            "tempo": spec.agent.tempo,
            "dynamics": spec.agent.dynamics,
            "tier": spec.route.tier if spec.agent.kind == "llm" else None,
            "model": spec.route.model if spec.agent.kind == "llm" else None,
            "reason": spec.route.reason if spec.agent.kind == "llm" else f"{spec.agent.kind} agents call no model",
            "usd_per_mtok_in_out": [
                round(price.input_cost_per_token * 1e6, 4),
                round(price.output_cost_per_token * 1e6, 4),
            ]
            if price is not None
            else None,
        }
    return {
        "tiers": {
            name: {"model": tier.model, "concurrency": tier.concurrency, "rpm": tier.rpm, "tpm": tier.tpm}
            for name, tier in program.tiers.items()
        },
        "table": {tempo: {dyn: table[(tempo, dyn)] for dyn in DYNAMICS} for tempo in TEMPOS},
        "overrides": sorted(f"{t} x {d}" for (t, d), tier in table.items() if DEFAULT_TABLE.get((t, d)) != tier),
        "budget_usd": score.routing.budget_usd,
        "agents": agents,
    }


def route(path: Path, *, as_json: bool) -> int:
    report = _report(compile_score(load_score(path)))
    if as_json:
        sys.stdout.write(dumps(report, indent=2) + "\n")
        return 0
    from rich.table import Table

    from hct_cli.cli.console import table_console

    console = table_console()
    tiers = Table(title="Tiers", title_justify="left")
    for column in ("tier", "model", "concurrency", "rpm", "tpm"):
        tiers.add_column(column, overflow="fold")
    for name, tier in report["tiers"].items():
        tiers.add_row(name, tier["model"], *(str(tier[k] or "-") for k in ("concurrency", "rpm", "tpm")))
    console.print(tiers)
    grid = Table(title="Tempo x dynamics -> tier (* = set by the score)", title_justify="left")
    grid.add_column("tempo")
    for dynamics in DYNAMICS:
        grid.add_column(dynamics)
    overridden = set(report["overrides"])
    for tempo, row in report["table"].items():
        grid.add_row(tempo, *(tier + ("*" if f"{tempo} x {dyn}" in overridden else "") for dyn, tier in row.items()))
    console.print(grid)
    agents = Table(title="Agents", title_justify="left")
    for column in ("agent", "tier", "model", "reason"):
        agents.add_column(column, overflow="fold")
    for name, agent in report["agents"].items():
        agents.add_row(name, agent["tier"] or "-", agent["model"] or "-", agent["reason"])
    console.print(agents)
    if report["budget_usd"] is not None:
        console.print(f"budget: ${report['budget_usd']:.4f} (the governor steps work down as spend nears it)")
    return 0
