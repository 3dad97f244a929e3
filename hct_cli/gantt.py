"""Draw runs as Gantt charts in SVG, one panel per run, so a person sees where batch waits."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from hct_cli.engine.result import RunResult

__all__ = ["gantt_svg"]

_ROW = 14
_WIDTH = 900
_LEFT = 140


def gantt_svg(runs: Sequence[tuple[str, RunResult]], *, max_rows: int = 60) -> str:
    """One panel per (title, run), on a shared time axis; at most ``max_rows`` agents drawn."""
    horizon = max((r.makespan_s for _, r in runs), default=1.0) or 1.0
    scale = (_WIDTH - _LEFT - 20) / horizon
    parts: list[str] = []
    y = 10
    for title, run in runs:
        parts.append(
            f'<text x="4" y="{y + 12}" font-weight="bold">{escape(title)}: {run.makespan_s:.3f} s '
            f"(critical path {run.critical_path_s:.3f} s)</text>"
        )
        y += 22
        rows = sorted(run.agents.items(), key=lambda kv: kv[1].started_s or 0.0)[:max_rows]
        for name, record in rows:
            if record.started_s is None or record.finished_s is None:
                continue
            x = _LEFT + record.started_s * scale
            width = max(1.0, (record.finished_s - record.started_s) * scale)
            parts.append(f'<text x="4" y="{y + 10}" font-size="10">{escape(name)}</text>')
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_ROW - 3}" fill="#4a7ab5">'
                f"<title>{escape(name)}: {record.started_s:.3f}-{record.finished_s:.3f} s</title></rect>"
            )
            y += _ROW
        y += 16
    height = y + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">\n' + "\n".join(parts) + "\n</svg>\n"
    )
