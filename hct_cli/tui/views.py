"""The conductor's panels. Each draws only the lines on screen, from the :class:`Ensemble`,
when the app's frame timer asks it to (:meth:`Panel.sync`): never once per event."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from hct_cli.tui.ensemble import AgentRow, Ensemble, Signal
from hct_cli.tui.tools import ToolRun, size_text

if TYPE_CHECKING:
    from hct_cli.distributed.roster import WorkerStatus

__all__ = ["AgentsView", "CoherenceView", "CostView", "Panel", "SignalsView", "TimelineView", "money"]

#: Colours are the terminal's own (ANSI names), so they follow its theme; NO_COLOR drops them.
STATE_STYLES: dict[str, Style] = {
    "waiting": Style(dim=True),
    "ready": Style(color="cyan"),
    "running": Style(color="blue", bold=True),
    "held": Style(color="yellow", bold=True),
    "speculative": Style(color="magenta"),
    "parked": Style(color="yellow"),
    "done": Style(color="green"),
    "failed": Style(color="red", bold=True),
    "skipped": Style(dim=True),
    "squashed": Style(color="magenta", dim=True),
    "tacet": Style(dim=True, italic=True),
}
_PLAIN = Style()
_HEAD = Style(bold=True)
_DIM = Style(dim=True)
#: Timeline glyphs: a call running, done, held at a gate, failed, squashed.
_BARS: dict[str, tuple[str, Style]] = {
    "running": ("▓", STATE_STYLES["running"]),
    "done": ("█", STATE_STYLES["done"]),
    "tacet": ("█", STATE_STYLES["tacet"]),
    "held": ("░", STATE_STYLES["held"]),
    "failed": ("█", STATE_STYLES["failed"]),
    "skipped": ("·", _DIM),
    "squashed": ("▒", STATE_STYLES["squashed"]),
}
_SIGNAL_STYLES: dict[str, Style] = {
    "cue": STATE_STYLES["done"],
    "fermata": STATE_STYLES["held"],
    "gate": Style(color="yellow"),
    "squash": STATE_STYLES["squashed"],
    "caesura": Style(color="red", bold=True, reverse=True),
    "fail": STATE_STYLES["failed"],
    "budget_stop": STATE_STYLES["failed"],
    "boost": Style(color="cyan"),
    "step_down": Style(color="cyan"),
    "fallback": Style(color="cyan"),
    "stale_read": Style(color="magenta"),
    "downbeat": Style(bold=True),
    "tool_hold": STATE_STYLES["held"],
    "tool_error": STATE_STYLES["failed"],
    "refused": STATE_STYLES["failed"],
}
#: A tool call's state, on its row under the agent and on the agent's tool lane.
TOOL_STYLES: dict[str, Style] = {
    "running": STATE_STYLES["running"],
    "held": STATE_STYLES["held"],
    "done": Style(color="cyan"),
    "error": STATE_STYLES["failed"],
    "refused": Style(color="red", reverse=True),
}
_TOOL_GLYPHS = {"running": "▪", "held": "░", "done": "▪", "error": "▪", "refused": "✕"}
#: Tool rows under an agent: the calls of its latest step, this many at most (the latest).
TOOL_ROWS = 4
_CELL_STYLES: dict[str, Style] = {
    "M": Style(color="red", bold=True),
    "E": Style(color="yellow"),
    "S": Style(color="green"),
    "I": _DIM,
}


def money(usd: float) -> str:
    return f"${usd:.4f}"


def fit(text: str, width: int) -> str:
    """``text`` cut or padded to exactly ``width`` cells (an ellipsis marks a cut)."""
    if len(text) > width:
        return text[: max(0, width - 1)] + "…" if width > 0 else ""
    return text.ljust(width)


class Panel(ScrollView, can_focus=True):
    """A scrolling panel of one line per item, with a header line that stays put."""

    DEFAULT_CSS = """
    Panel { border: round $primary; scrollbar-size: 1 1; }
    Panel:focus { border: round $accent; }
    """

    def __init__(self, ensemble: Ensemble, *, title: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ensemble = ensemble
        self.border_title = title

    # What a panel shows: its item count, its header and one item's line.
    def count(self) -> int:
        raise NotImplementedError

    def head(self) -> list[Segment]:
        raise NotImplementedError

    def line(self, index: int) -> list[Segment]:
        raise NotImplementedError

    def content_width(self) -> int:
        return self.scrollable_content_region.width

    def sync(self) -> None:
        """Called by the frame timer: take the ensemble's changes, redraw what is on screen."""
        self.virtual_size = Size(self.content_width(), self.count() + 1)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        style = self.rich_style
        if y == 0:
            segments = self.head()
        else:
            index = scroll_y + y - 1
            if index >= self.count():
                return Strip.blank(width, style)
            segments = self.line(index)
        strip = Strip(Segment.apply_style(segments, style))
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def lines(self) -> list[str]:
        """The panel's text as on screen, header first (what tests and screen captures read)."""
        height = self.scrollable_content_region.height
        return [self.render_line(y).text.rstrip() for y in range(height)]


class AgentsView(Panel):
    """Every agent: state, tempo, dynamics, tier and model, version, tokens, cost, time, waits for."""

    def __init__(self, ensemble: Ensemble, id: str | None = "agents") -> None:
        super().__init__(ensemble, title="agents", id=id)
        self.rows = list(ensemble.agents.values())
        self.name_w = max([5, *(len(row.name) for row in self.rows)])
        self.name_w = min(self.name_w, 24)
        self.model_w = min(24, max([5, *(len(row.model) for row in self.rows)]))
        # Once an agent calls tools, a line per agent, each followed by its tool rows: an agent
        # row, a tool call, or a count of the step's earlier calls not shown.
        self.entries: list[tuple[AgentRow, ToolRun | int | None]] | None = None

    def count(self) -> int:
        return len(self.rows) if self.entries is None else len(self.entries)

    def sync(self) -> None:
        if self.ensemble.tool_calls:  # only a run whose agents call tools pays for the rows
            layout: list[tuple[AgentRow, ToolRun | int | None]] = []
            for row in self.rows:
                layout.append((row, None))
                runs, more = row.step_tools(TOOL_ROWS)
                if more:
                    layout.append((row, more))
                layout.extend((row, run) for run in runs)
            self.entries = layout
        super().sync()

    def _columns(self) -> list[tuple[str, int]]:
        return [
            ("agent", self.name_w),
            ("state", 11),
            ("tempo", 8),
            ("dyn", 3),
            ("tier", 8),
            ("model", self.model_w),
            ("v", 2),
            ("tokens", 6),
            ("cost", 7),
            ("time", 6),
        ]

    def content_width(self) -> int:
        return max(self.scrollable_content_region.width, sum(w + 1 for _, w in self._columns()) + 12)

    def head(self) -> list[Segment]:
        text = " ".join(
            fit(name, w) if name not in ("tokens", "cost", "time", "v") else name.rjust(w)
            for name, w in self._columns()
        )
        return [Segment(text + " waits for", _HEAD)]

    def line(self, index: int) -> list[Segment]:
        if self.entries is None:
            return self._agent(self.rows[index])
        row, tool = self.entries[index]
        if tool is None:
            return self._agent(row)
        if isinstance(tool, int):
            return [Segment(fit(f"  ⋯ {tool} earlier call(s) of this step", self.name_w + 40), _DIM)]
        return self._tool(tool)

    def _tool(self, run: ToolRun) -> list[Segment]:
        """A tool call under its agent: tool, state, effects, step and call, duration, size, error."""
        figures = f"{run.effects or '-':<5} step {run.step} #{run.index} {run.duration(self.ensemble.now()):6.2f}s"
        if run.state in ("done", "error"):
            figures += f" {size_text(run.size):>8}"
        notes = " ".join(note for note in (run.flags(), run.error) if note)
        return [
            Segment(fit(f"  └ {run.tool}", max(self.name_w, 24)) + " "),  # a tool's name is server.tool
            Segment(fit(run.state, 11) + " ", TOOL_STYLES.get(run.state, _PLAIN)),
            Segment(figures + " "),
            Segment(notes, STATE_STYLES["failed"] if run.error else _DIM),
        ]

    def _agent(self, row: AgentRow) -> list[Segment]:
        elapsed = row.elapsed(self.ensemble.now())
        before = f"{fit(row.name, self.name_w)} "
        state = f"{fit(row.state, 11)} "
        rest = " ".join(
            (
                fit(row.tempo, 8),
                fit(row.dynamics, 3),
                fit(row.tier or "-", 8),
                fit(row.model, self.model_w),
                str(row.version or "").rjust(2),
                (str(row.tokens) if row.tokens else "").rjust(6),
                money(row.cost_usd) if row.cost_usd or row.state == "done" else " " * 7,
                (f"{elapsed:.1f}s" if elapsed is not None else "").rjust(6),
            )
        )
        return [
            Segment(before),
            Segment(state, STATE_STYLES.get(row.state, _PLAIN)),
            Segment(rest + " "),
            Segment(row.waits_for(), _DIM),
        ]


class TimelineView(Panel):
    """A live Gantt: one bar per agent, each call from its issue to its commit."""

    def __init__(self, ensemble: Ensemble, id: str | None = "timeline") -> None:
        super().__init__(ensemble, title="timeline", id=id)
        self.rows = list(ensemble.agents.values())
        self.name_w = min(16, max([5, *(len(row.name) for row in self.rows)]))
        # Once tools are called: a lane per agent, and under each agent that called tools a lane
        # of its calls (True).
        self.entries: list[tuple[AgentRow, bool]] | None = None
        self._laid = 0  # the ensemble's tool call count the layout was made at

    def count(self) -> int:
        return len(self.rows) if self.entries is None else len(self.entries)

    def sync(self) -> None:
        if self.ensemble.tool_calls != self._laid:
            self._laid = self.ensemble.tool_calls
            layout: list[tuple[AgentRow, bool]] = []
            for row in self.rows:
                layout.append((row, False))
                if row.tools:
                    layout.append((row, True))
            self.entries = layout
        super().sync()

    def _bar_width(self) -> int:
        return max(8, self.scrollable_content_region.width - self.name_w - 1)

    def head(self) -> list[Segment]:
        width = self._bar_width()
        end = f"{self.ensemble.now():.1f}s"
        return [Segment(" " * (self.name_w + 1) + "0s".ljust(width - len(end)) + end, _DIM)]

    def line(self, index: int) -> list[Segment]:
        row, tools = (self.rows[index], False) if self.entries is None else self.entries[index]
        width = self._bar_width()
        now = self.ensemble.now()
        scale = width / now if now > 0 else 0.0
        cells: list[tuple[str, Style]] = [(" ", _PLAIN)] * width
        if tools:  # its tool calls, each from its send to its answer; parallel calls overlap
            for run in row.tools:
                end = run.end if run.end is not None else now
                first = min(width - 1, int(run.start * scale))
                last = max(first + 1, min(width, int(end * scale)))
                glyph = (_TOOL_GLYPHS.get(run.state, "▪"), TOOL_STYLES.get(run.state, _PLAIN))
                for column in range(first, last):
                    if cells[column][0] != "✕":  # a refusal stays visible under a call beside it
                        cells[column] = glyph
            return self._segments("└ tools", cells)
        for span in row.spans:
            end = span.end if span.end is not None else now
            first = min(width - 1, int(span.start * scale))
            last = max(first + 1, min(width, int(end * scale)))
            glyph = _BARS.get(span.state, _BARS["running"])
            for column in range(first, last):
                cells[column] = glyph
        return self._segments(row.name, cells)

    def _segments(self, name: str, cells: list[tuple[str, Style]]) -> list[Segment]:
        segments = [Segment(fit(name, self.name_w) + " ")]
        for style, run in groupby(cells, key=lambda cell: cell[1]):
            segments.append(Segment("".join(char for char, _ in run), style))
        return segments


class SignalsView(Panel):
    """The signals log, newest at the bottom; ``/`` filters it."""

    def __init__(self, ensemble: Ensemble, id: str | None = "signals") -> None:
        super().__init__(ensemble, title="signals", id=id)
        self.needle = ""
        self._shown: list[Signal] = []
        self._seen = 0  # ensemble.logged when last synced

    def count(self) -> int:
        return len(self._shown)

    def filter(self, needle: str) -> None:
        self.needle = needle.lower()
        self._shown = list(self.ensemble.signals(self.needle))
        self._seen = self.ensemble.logged
        self.border_title = f"signals · filter: {needle}" if needle else "signals"
        super().sync()
        self.scroll_y = self.max_scroll_y

    def _new(self) -> Iterator[Signal]:
        fresh = self.ensemble.logged - self._seen
        if fresh <= 0:
            return iter(())
        log = self.ensemble.log
        start = max(0, len(log) - fresh)
        return (log[i] for i in range(start, len(log)))

    def sync(self) -> None:
        at_end = self.scroll_y >= self.max_scroll_y
        needle = self.needle
        self._shown.extend(signal for signal in self._new() if signal.matches(needle))
        self._seen = self.ensemble.logged
        if len(self._shown) > self.ensemble.log.maxlen:  # type: ignore[operator]
            del self._shown[: len(self._shown) - self.ensemble.log.maxlen]  # type: ignore[operator]
        super().sync()
        if at_end:  # follow the newest signal unless the reader scrolled back
            self.scroll_y = self.max_scroll_y

    def head(self) -> list[Segment]:
        return [Segment(f"{'time':>7} {'signal':<11}{'where':<17}", _HEAD)]

    def line(self, index: int) -> list[Segment]:
        signal = self._shown[index]
        return [
            Segment(f"{signal.at:6.2f}s "),
            Segment(fit(signal.kind, 10) + " ", _SIGNAL_STYLES.get(signal.kind, _PLAIN)),
            Segment(fit(signal.where, 16) + " "),
            Segment(signal.text),
        ]

    def content_width(self) -> int:
        return self.scrollable_content_region.width


class CoherenceView(Panel):
    """The MESI directory: a row per agent that touched shared state, a column per key."""

    def __init__(self, ensemble: Ensemble, id: str | None = "coherence") -> None:
        super().__init__(ensemble, title="coherence", id=id)
        names = [
            spec.name
            for spec in ensemble.program.stations.values()
            if spec.agent.reads or spec.agent.writes or spec.agent.appends
        ]
        self.name_w = min(12, max([5, *(len(name) for name in names)]))

    def count(self) -> int:
        return len(self.ensemble.sharers)

    def _key_w(self, key: str) -> int:
        return max(len(key) + 4, 6)  # "findings@12", "M@3"

    def head(self) -> list[Segment]:
        ensemble = self.ensemble
        if not ensemble.keys:
            return [Segment("no shared state", _DIM)]
        cells = "".join(fit(f"{key}@{ensemble.key_versions[key]}", self._key_w(key)) for key in ensemble.keys)
        return [Segment(" " * (self.name_w + 1) + cells, _HEAD)]

    def line(self, index: int) -> list[Segment]:
        ensemble = self.ensemble
        agent = ensemble.sharer_list[index]
        segments = [Segment(fit(agent, self.name_w) + " ")]
        for key in ensemble.keys:
            cell = ensemble.cells.get((key, agent))
            text, style = (f"{cell[0]}@{cell[1]}", _CELL_STYLES[cell[0]]) if cell else ("·", _DIM)
            segments.append(Segment(fit(text, self._key_w(key)), style))
        return segments

    def content_width(self) -> int:
        keys = self.ensemble.keys
        return max(self.scrollable_content_region.width, self.name_w + 1 + sum(self._key_w(k) for k in keys))


class CostView(Static):
    """Spend against the budget, and the saving against the all-frontier counterfactual."""

    DEFAULT_CSS = "CostView { border: round $primary; padding: 0 1; }"

    def __init__(self, ensemble: Ensemble, id: str | None = "cost") -> None:
        super().__init__(id=id)
        self.ensemble = ensemble
        self.border_title = "cost"

    def text(self) -> str:
        ensemble = self.ensemble
        lines = [f"spend    {money(ensemble.spend_usd)}"]
        budget = ensemble.budget_usd
        if budget is not None:
            used = min(1.0, ensemble.spend_usd / budget) if budget > 0 else 1.0
            filled = round(used * 12)
            lines.append(f"budget   {money(budget)} {used:.0%}")
            lines.append(f"         {'█' * filled}{'░' * (12 - filled)}")
        else:
            lines.append("budget   none")
        lines.append(f"frontier {money(ensemble.frontier_usd)}")
        saving = ensemble.saving_usd
        share = f" {saving / ensemble.frontier_usd:.0%}" if ensemble.frontier_usd > 0 else ""
        lines.append(f"saving   {money(saving)}{share}")
        return "\n".join(lines)

    def sync(self) -> None:
        self.update(Text(self.text()))


class WorkersView(Static):
    """Distributed mode: every worker on the bus, alive or silent, with its calls in flight and done."""

    DEFAULT_CSS = "WorkersView { border: round $primary; padding: 0 1; width: 34; height: 100%; }"

    def __init__(self, roster: Callable[[], Sequence[WorkerStatus]], id: str | None = "workers") -> None:
        super().__init__(id=id)
        self.roster = roster
        self.border_title = "workers"

    def text(self) -> str:
        workers = self.roster()
        if not workers:
            return "none yet: start one with\nhct worker --bus URL"
        alive = sum(1 for w in workers if w.alive)
        lines = [f"{alive} alive of {len(workers)}"]
        for w in sorted(workers, key=lambda w: (not w.alive, w.worker)):
            mark = "●" if w.alive else "✕"
            state = f"{w.in_flight:>3} run {w.completed:>5} done" if w.alive else "silent"
            lines.append(f"{mark} {w.worker[:14]:<14} {state}")
        return "\n".join(lines)

    def sync(self) -> None:
        self.update(Text(self.text()))
