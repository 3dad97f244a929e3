"""``hct graph``: draw a score's cue graph as Mermaid or Graphviz DOT."""

from __future__ import annotations

import sys
from pathlib import Path

from hct_cli.errors import UsageError
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score

__all__ = ["FORMATS", "graph", "render_graph"]

FORMATS = ("mermaid", "dot")


def _label(program: Program, name: str) -> str:
    spec = program.stations[name]
    agent = spec.agent
    route = spec.route.tier or spec.route.model
    return f"{name}<br/>{agent.tempo} {agent.dynamics} → {route}"


def render_graph(program: Program, fmt: str) -> str:
    edges = [(tag, name) for name in program.order for tag in program.stations[name].tags]
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [f'  {name}["{_label(program, name)}"]' for name in program.order]
        lines += [f"  {a} --> {b}" for a, b in edges]
        return "\n".join(lines)
    lines = [f'digraph "{program.score.name}" {{', "  rankdir=LR;", "  node [shape=box];"]
    for name in program.order:
        label = _label(program, name).replace("<br/>", "\\n")
        lines.append(f'  "{name}" [label="{label}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in edges]
    lines.append("}")
    return "\n".join(lines)


def graph(path: Path, fmt: str) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint=f"Use --format {' or '.join(FORMATS)}.")
    sys.stdout.write(render_graph(compile_score(load_score(path)), fmt) + "\n")
    return 0
