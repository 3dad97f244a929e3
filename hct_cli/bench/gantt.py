"""Draw runs as Gantt charts in SVG, one panel per run, so a person sees where a policy waits.

Every panel shares one time axis (so a slower policy's bars reach further right), the same
rows in the same order, bars coloured by the tier that served the agent, and the agents on the
run's critical path outlined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

from hct_cli.engine.accounting import critical_chain
from hct_cli.engine.result import RunResult
from hct_cli.program.compile import Program
from hct_cli.program.routing import TIER_ORDER

__all__ = ["CRITICAL_STROKE", "NO_TIER", "TIER_COLOURS", "gantt_svg", "time_ticks"]

#: Okabe-Ito colours, told apart with the common colour-vision deficiencies too.
TIER_COLOURS: Mapping[str, str] = {"local": "#009E73", "mid": "#E69F00", "frontier": "#0072B2"}
NO_TIER = "#999999"  # an agent whose model is pinned, not routed to a tier
CRITICAL_STROKE = "#000000"

_WIDTH = 960
_LEFT = 180  # the agents' names
_RIGHT = 30
_ROW = 16
_BAR = 11
_PLOT = _WIDTH - _LEFT - _RIGHT


def time_ticks(horizon: float, *, target: int = 8) -> tuple[list[float], int]:
    """Ticks at 1, 2 or 5 times a power of ten from 0 past ``horizon``, and the decimals they need."""
    horizon = horizon if horizon > 0 and math.isfinite(horizon) else 1.0
    raw = horizon / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    count = math.ceil(horizon / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [round(i * step, decimals + 1) for i in range(count + 1)], decimals


def _rows(program: Program, runs: Sequence[tuple[str, RunResult]], chains: list[list[str]], limit: int) -> list[str]:
    """The agents drawn, in the first run's order of start.

    Past ``limit`` agents, the critical paths' come first and the rest is an even sample of the
    others over that order, so the rows show the whole run and not only its first instant.
    """
    first = runs[0][1].agents
    index = {name: i for i, name in enumerate(program.order)}

    def started(name: str) -> tuple[float, int]:
        record = first.get(name)
        at = record.started_s if record is not None and record.started_s is not None else math.inf
        return at, index.get(name, len(index))

    order = sorted(first, key=started)
    if len(order) <= limit:
        return order
    chosen = set(list(dict.fromkeys(name for chain in chains for name in chain))[:limit])
    rest = [name for name in order if name not in chosen]
    room = limit - len(chosen)
    if room > 0:
        spacing = (len(rest) - 1) / max(1, room - 1)
        chosen.update(rest[round(i * spacing)] for i in range(room))
    return [name for name in order if name in chosen]


def gantt_svg(program: Program, runs: Sequence[tuple[str, RunResult]], *, max_rows: int = 60) -> str:
    """One panel per (title, run) of ``program``, on a shared time axis; at most ``max_rows`` agents."""
    if not runs:
        raise ValueError("gantt_svg needs at least one run")
    chains = [critical_chain(program, run.agents) for _, run in runs]
    rows = _rows(program, runs, chains, max_rows)
    horizon = max(run.makespan_s for _, run in runs)
    ticks, decimals = time_ticks(horizon)
    scale = _PLOT / (ticks[-1] or 1.0)

    def x_of(seconds: float) -> float:
        return _LEFT + seconds * scale

    tiers = {record.tier for _, run in runs for record in run.agents.values()}
    parts: list[str] = []
    y = _legend(parts, program, len(runs[0][1].agents), len(rows), None in tiers)
    for (title, run), chain in zip(runs, chains, strict=True):
        on_path = set(chain)
        parts.append(f'<g class="panel" data-policy="{escape(title)}">')
        parts.append(
            f'<text class="panel-title" x="4" y="{y + 14}" font-weight="bold" font-size="13">'
            f"{escape(title)}: makespan {run.makespan_s:.3f} s "
            f'<tspan font-weight="normal">(critical path {run.critical_path_s:.3f} s, outlined)</tspan></text>'
        )
        y += 24
        top = y
        bottom = top + len(rows) * _ROW
        for tick in ticks:  # grid first, so the bars lie on it
            parts.append(
                f'<line x1="{x_of(tick):.1f}" y1="{top - 2}" x2="{x_of(tick):.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
            )
        for i, name in enumerate(rows):
            row_y = top + i * _ROW
            critical = name in on_path
            weight = ' font-weight="bold"' if critical else ""
            parts.append(
                f'<text class="agent" x="{_LEFT - 6}" y="{row_y + _BAR - 1}" text-anchor="end" '
                f'font-size="11"{weight}>{escape(name)}</text>'
            )
            record = run.agents.get(name)
            if record is None or record.started_s is None or record.finished_s is None:
                continue
            width = max(1.0, (record.finished_s - record.started_s) * scale)
            fill = TIER_COLOURS.get(record.tier or "", NO_TIER)
            stroke = f' stroke="{CRITICAL_STROKE}" stroke-width="2"' if critical else ""
            parts.append(
                f'<rect class="bar{" critical" if critical else ""}" data-agent="{escape(name)}" '
                f'data-tier="{escape(record.tier or "")}" x="{x_of(record.started_s):.1f}" y="{row_y}" '
                f'width="{width:.1f}" height="{_BAR}" fill="{fill}"{stroke}>'
                f"<title>{escape(name)} ({escape(record.tier or 'no tier')}): "
                f"{record.started_s:.3f}-{record.finished_s:.3f} s</title></rect>"
            )
        end = x_of(run.makespan_s)
        parts.append(
            f'<line class="makespan" x1="{end:.1f}" y1="{top - 2}" x2="{end:.1f}" y2="{bottom}" '
            'stroke="#C0392B" stroke-dasharray="4 3"/>'
        )
        y = _axis(parts, ticks, decimals, x_of, bottom)
        parts.append("</g>")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{y + 10}" '
        f'viewBox="0 0 {_WIDTH} {y + 10}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="#ffffff"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )


def _legend(parts: list[str], program: Program, agents: int, drawn: int, untiered: bool) -> int:
    """The score's name, what is drawn, and the key to colours and outline; returns the next y."""
    shown = (
        f"{agents} agents"
        if drawn == agents
        else f"{drawn} of {agents} agents: the critical path's and an even sample of the rest"
    )
    parts.append(
        f'<text x="4" y="18" font-size="14" font-weight="bold">{escape(program.score.name)}</text>'
        f'<text x="4" y="36" fill="#555555">{shown}; bars coloured by tier</text>'
    )
    x = 4
    keys = [(tier, TIER_COLOURS[tier], "") for tier in TIER_ORDER]
    if untiered:
        keys.append(("no tier", NO_TIER, ""))
    keys.append(("critical path", "#ffffff", f' stroke="{CRITICAL_STROKE}" stroke-width="2"'))
    keys.append(("makespan", "", ""))
    parts.append('<g class="legend">')
    for label, fill, stroke in keys:
        if label == "makespan":
            parts.append(f'<line x1="{x + 7}" y1="42" x2="{x + 7}" y2="56" stroke="#C0392B" stroke-dasharray="4 3"/>')
        else:
            parts.append(
                f'<rect class="key" data-key="{escape(label)}" x="{x}" y="44" width="14" height="{_BAR}" '
                f'fill="{fill}"{stroke}/>'
            )
        parts.append(f'<text x="{x + 20}" y="54">{escape(label)}</text>')
        x += 28 + 7 * len(label)
    parts.append("</g>")
    return 66


def _axis(parts: list[str], ticks: list[float], decimals: int, x_of: Callable[[float], float], y: int) -> int:
    """The time axis under a panel: a line, and a tick labelled in seconds at each of ``ticks``."""
    parts.append(
        f'<line class="axis" x1="{_LEFT}" y1="{y + 2}" x2="{x_of(ticks[-1]):.1f}" y2="{y + 2}" stroke="#333333"/>'
    )
    for tick in ticks:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{y + 7}" stroke="#333333"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{y + 19}" text-anchor="middle" font-size="10">{tick:.{decimals}f} s</text>'
        )
    return y + 40
