"""What the conductor shows, kept up to date from the engine's events.

An :class:`Ensemble` is an observer: the performer (or a replay of the journal) calls it with
every event, and it updates plain rows in a few dictionary lookups; it never draws. The
conductor's screen reads it a few dozen times a second at most, so a run of ten thousand agents
is not slowed by drawing. Nothing here imports Textual: the model is tested on its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hct_cli.engine.accounting import frontier_price
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.tui.tools import ToolRun
from hct_cli.tui.words import describe

__all__ = ["AgentRow", "Ensemble", "Signal", "Span", "describe"]

_OVER = frozenset({"done", "failed", "skipped", "squashed", "tacet"})

#: Events that go to the signals log, and how each reads there.
_LOGGED = frozenset(
    {
        "cue",
        "fermata",
        "gate",
        "vamp",
        "tacet",
        "downbeat",
        "caesura",
        "speculate",
        "squash",
        "fail",
        "skip",
        "stale_read",
        "replay",
        "hold",
        "step_down",
        "boost",
        "budget_stop",
        "retry",
        "fallback",
        "fallback_skipped",
        "pause",
        "resume",
        "reclaim",
        "hand_back",
        "interrupt",
        "run_end",
        "tool_hold",
        "refused",
    }
)

#: The signals log keeps this many entries (the journal keeps them all).
LOG_LIMIT = 20_000


@dataclass(slots=True)
class Span:
    """One execution of an agent on the timeline: from its issue to its commit (or its end)."""

    start: float
    end: float | None = None
    state: str = "running"


@dataclass(slots=True)
class AgentRow:
    """One agent as the conductor shows it."""

    name: str
    tempo: str
    dynamics: str
    kind: str
    tier: str | None
    model: str
    cues: tuple[str, ...]
    missing: dict[str, None]  # cues not yet arrived, in declaration order (a dict: O(1) removal)
    state: str = "waiting"
    version: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started: float | None = None
    finished: float | None = None
    hold: str = ""  # what a held agent waits for: a gate's check, a person, a lock
    restored: bool = False  # its call is answered from the journal (a resume): no result event comes
    spans: list[Span] = field(default_factory=list)
    tools: list[ToolRun] = field(default_factory=list)  # every tool call, in the order sent (the timeline's lane)

    def end_span(self, at: float, state: str) -> None:
        """End the open bar, if any; a call's bar takes ``state``, a wait at a gate stays one."""
        if self.spans and self.spans[-1].end is None:
            span = self.spans[-1]
            span.end = at
            if span.state == "running":
                span.state = state

    def elapsed(self, now: float) -> float | None:
        """Seconds since its first issue, to its end or to ``now``."""
        if self.started is None:
            return None
        return (self.finished if self.finished is not None and self.state in _OVER else now) - self.started

    def waits_for(self) -> str:
        """What a waiting or held agent still lacks, in words."""
        if self.state == "waiting" and self.missing:
            more = len(self.missing) - 1
            return next(iter(self.missing)) + (f" +{more}" if more else "")
        if self.state in ("held", "parked"):
            return self.hold
        return ""

    def step_tools(self, limit: int) -> tuple[list[ToolRun], int]:
        """The calls of its latest step while it works (the latest ``limit``), and how many more."""
        if not self.tools or self.state in _OVER or self.state in ("waiting", "ready"):
            return [], 0
        last = self.tools[-1]
        if last.version != self.version:
            return [], 0  # an earlier pass's calls: this one has made none yet
        step = [run for run in self.tools if run.version == last.version and run.step == last.step]
        return step[-limit:], max(0, len(step) - limit)


@dataclass(frozen=True, slots=True)
class Signal:
    """One line of the signals log."""

    at: float
    kind: str
    where: str
    text: str

    def matches(self, needle: str) -> bool:
        return not needle or needle in f"{self.kind} {self.where} {self.text}".lower()


class Ensemble:
    """The run as the conductor shows it: agents, coherence, signals, cost, timeline."""

    def __init__(self, program: Program, *, budget_usd: float | None = None, run_id: str = "") -> None:
        self.program = program
        self.score_name = program.score.name
        self.run_id = run_id
        self.budget_usd = budget_usd
        self.agents: dict[str, AgentRow] = {}
        for name in program.order:
            spec = program.stations[name]
            agent = spec.agent
            self.agents[name] = AgentRow(
                name,
                agent.tempo,
                agent.dynamics,
                agent.kind,
                spec.route.tier,
                spec.route.model if agent.kind == "llm" else agent.kind,
                spec.tags,
                dict.fromkeys(spec.tags),
            )
        self.dependents = {name: program.stations[name].dependents for name in program.order}
        for name in program.roots:
            self.agents[name].state = "ready"
        self.keys = list(program.score.state)
        self.key_versions = dict.fromkeys(self.keys, 0)
        self.sharers: dict[str, None] = {}  # agents that touched shared state, in the order they did
        self.sharer_list: list[str] = []  # the same, indexable (the coherence panel draws by row)
        self.cells: dict[tuple[str, str], tuple[str, int]] = {}  # (key, agent) -> (M/E/S/I, version)
        self.log: deque[Signal] = deque(maxlen=LOG_LIMIT)
        self.logged = 0  # signals ever logged (the log's index of its newest entry, plus one)
        self.pending: dict[str, int] = {}  # agent -> version waiting for a person, oldest first
        self.spend_usd = 0.0
        self._frontier = frontier_price(program)
        self.frontier_usd = 0.0
        self.status = "running"
        self.paused = False
        self.done = 0
        self.revision = 0  # bumped by every event: the screen redraws when it moved
        self.faults = 0  # events the view could not take (a bug; the run goes on)
        self.tool_calls = 0  # tool calls sent (and refused) so far: the agents panel's rows follow it
        self._segments = 0
        self.end_time: float | None = None
        self.last_time = 0.0
        self._wall0: float | None = None
        self.clock: Callable[[], float] = self._wall_clock
        self._on: dict[str, Callable[[Event], None]] = {
            "run_start": self._run_start,
            "run_end": self._run_end,
            "issue": self._issue,
            "result": self._result,
            "cue": self._cue,
            "fermata": self._fermata,
            "gate": self._gate,
            "fail": self._over,
            "skip": self._over,
            "tacet": self._over,
            "squash": self._squash,
            "caesura": self._caesura,
            "speculate": self._speculate,
            "hold": self._hold,
            "mesi": self._mesi,
            "step_down": self._route,
            "boost": self._route,
            "fallback": self._route,
            "pause": self._pause,
            "vamp": self._again_later,
            "replay": self._again_later,
            "resume": self._pause,
            "tool_call": self._tool_call,
            "tool_hold": self._tool_hold,
            "tool_result": self._tool_result,
            "refused": self._refused,
        }

    # -- the clock ------------------------------------------------------------------------

    def _wall_clock(self) -> float:
        """Seconds into the run: the wall clock while it plays, frozen when it ends."""
        if self.end_time is not None:
            return self.end_time
        if self._wall0 is None:
            return self.last_time
        return max(self.last_time, time.perf_counter() - self._wall0)

    def now(self) -> float:
        return self.clock()

    # -- events ---------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        self.revision += 1
        if event.time_s > self.last_time:
            self.last_time = event.time_s
        try:
            handler = self._on.get(event.kind)
            if handler is not None:
                handler(event)
            if event.kind in _LOGGED and not (event.kind == "fermata" and "key" in event.data):
                self._log(event)
            elif event.kind == "tool_result" and not event.data.get("ok", True):
                self._log(event, "tool_error")  # a tool's error is news; its success is on the agent's row
        except Exception as exc:  # a fault in the view must never end the run it shows
            self.faults += 1
            if self.faults == 1:
                self.log.append(Signal(event.time_s, "conductor", "", f"cannot show {event.kind}: {exc!r}"))
                self.logged += 1

    def _run_start(self, event: Event) -> None:
        self._segments += 1
        if self._segments > 1:
            self._again(event.time_s)
        self.run_id = str(event.data.get("run_id", self.run_id))
        if self._wall0 is None:
            self._wall0 = time.perf_counter() - event.time_s
        self.status = "running"
        self.end_time = None

    def _again(self, at: float) -> None:
        """A resume performs the score again (journaled calls answered at once): start over,
        keeping each agent's bars."""
        self.done = 0
        self.spend_usd = self.frontier_usd = 0.0
        self.pending.clear()
        for row in self.agents.values():
            row.end_span(at, "done")
            row.state = "waiting" if row.cues else "ready"
            row.missing = dict.fromkeys(row.cues)
            row.tokens, row.cost_usd, row.hold, row.restored = 0, 0.0, "", False
            row.started = row.finished = None

    def _run_end(self, event: Event) -> None:
        self.status = str(event.data.get("status", "completed"))
        self.end_time = event.time_s
        self.paused = False
        if "cost_usd" in event.data:
            self.spend_usd = float(event.data["cost_usd"])
        if "frontier_cost_usd" in event.data:
            self.frontier_usd = float(event.data["frontier_cost_usd"])

    def _row(self, event: Event) -> AgentRow | None:
        return self.agents.get(event.station) if event.station is not None else None

    def _issue(self, event: Event) -> None:
        row = self._row(event)
        if row is None:
            return
        row.end_span(event.time_s, "done")  # an earlier pass (a retry, a replay, a vamp)
        row.state = "running"
        row.version = event.version
        row.hold = ""
        data = event.data
        row.model = str(data.get("model") or row.model)
        row.tier = data.get("tier") or row.tier
        row.restored = bool(data.get("restored"))
        if row.started is None:
            row.started = event.time_s
        row.finished = None
        row.spans.append(Span(event.time_s))

    def _result(self, event: Event) -> None:
        row = self._row(event)
        data = event.data
        cost = float(data.get("cost_usd") or 0.0)
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        self.spend_usd += cost
        if row is None:
            return
        row.tokens += prompt + completion
        row.cost_usd += cost
        # Judges too, cache hits not: the run's own figure prices every call of an LLM agent it paid for.
        if row.kind == "llm" and not data.get("cached"):
            self.frontier_usd += self._frontier.cost(prompt, completion) if self._frontier is not None else cost

    def _close(self, row: AgentRow, at: float, state: str) -> None:
        row.state = state
        row.finished = at
        row.hold = ""
        row.end_span(at, state)
        self.pending.pop(row.name, None)
        for key in self.keys:
            cell = self.cells.get((key, row.name))
            if cell is not None and cell[0] != "I":
                self.cells[(key, row.name)] = ("I", cell[1])

    def _settled(self, event: Event) -> AgentRow | None:
        """The event's agent, counted done (once) as it settles: committed, failed, skipped, tacet."""
        row = self._row(event)
        if row is not None and row.state not in _OVER:
            self.done += 1
        return row

    def _cue(self, event: Event) -> None:
        row = self._settled(event)
        if row is None:
            return
        if row.restored:  # a journaled result: its cost counts in the resumed run's spend
            row.restored = False
            cost = float(event.data.get("cost_usd") or 0.0)
            row.cost_usd += cost
            self.spend_usd += cost
        self._close(row, event.time_s, "tacet" if row.state == "tacet" else "done")  # a tacet's null is cued
        self._written(event)
        name = row.name
        for dependent in self.dependents.get(name, ()):
            waiting = self.agents[dependent]
            if waiting.missing.pop(name, 0) is None and not waiting.missing and waiting.state == "waiting":
                waiting.state = "ready"

    def _written(self, event: Event) -> None:
        """A commit wrote shared keys (a cue, or a vamp's pass): new versions, former sharers stale."""
        for key, former in (event.data.get("keys") or {}).items():
            self.key_versions[key] = self.key_versions.get(key, 0) + 1
            for agent in former:
                cell = self.cells.get((key, agent))
                if cell is not None:
                    self.cells[(key, agent)] = ("I", cell[1])

    def _again_later(self, event: Event) -> None:
        """A vamp pass, a stale read's replay: the agent is released again for another call."""
        row = self._row(event)
        if event.kind == "vamp":
            self._written(event)
        if row is not None and row.state not in _OVER:
            self._reissue(row, event.time_s)

    def _reissue(self, row: AgentRow, at: float) -> None:
        row.state = "ready"
        row.hold = ""
        row.end_span(at, "done")

    def _over(self, event: Event) -> None:
        row = self._settled(event)
        if row is None:
            return
        state = {"fail": "failed", "skip": "skipped", "tacet": "tacet"}[event.kind]
        self._close(row, event.time_s, state)

    def _fermata(self, event: Event) -> None:
        row = self._row(event)
        if row is None or "key" in event.data:
            if row is not None:  # a read for ownership: the writer holds E on the key
                self._cell(str(event.data["key"]), row.name, "E", int(event.data.get("key_version", 0)))
            return
        hold = str(event.data.get("hold", "gate"))
        row.state = "held"
        row.hold = "a person: a / r" if hold == "approval" else "its gate"
        row.end_span(event.time_s, "done")
        row.spans.append(Span(event.time_s, state="held"))
        if hold == "approval":
            self.pending[row.name] = event.version

    def _gate(self, event: Event) -> None:
        row = self._row(event)
        if row is None:
            return
        self.pending.pop(row.name, None)
        if not event.data.get("passed", True):  # released again: a retry, one tier up
            self._reissue(row, event.time_s)

    def _squash(self, event: Event) -> None:
        row = self._row(event)
        if row is not None:
            self._close(row, event.time_s, "squashed")
            row.state = "waiting"  # it runs again on the committed result

    def _caesura(self, event: Event) -> None:
        squashed = event.data.get("squashed") or {}
        for name, row in self.agents.items():
            if name in squashed:
                if row.state in _OVER and row.state != "squashed":
                    self.done -= 1
                self._close(row, event.time_s, "squashed")
            elif row.state not in _OVER:  # never ran, or waited for a lock: settled, as a skip is
                self.done += 1
                self._close(row, event.time_s, "skipped")
        for (key, agent), (_, version) in list(self.cells.items()):
            self.cells[(key, agent)] = ("I", version)
        self.pending.clear()

    def _speculate(self, event: Event) -> None:
        row = self._row(event)
        if row is not None:
            row.hold = f"on {event.data.get('on', '')}"

    def _hold(self, event: Event) -> None:
        row = self._row(event)
        if row is not None and event.data.get("waiting"):
            row.state = "parked"
            row.hold = f"lock: {', '.join(event.data.get('keys') or [])}"

    def _mesi(self, event: Event) -> None:
        if event.station is not None:
            data = event.data
            self._cell(str(data.get("key")), event.station, str(data.get("to", "I")), int(data.get("key_version", 0)))

    def _cell(self, key: str, agent: str, state: str, version: int) -> None:
        if key not in self.key_versions:
            self.keys.append(key)
            self.key_versions[key] = version
        if agent not in self.sharers:
            self.sharers[agent] = None
            self.sharer_list.append(agent)
        self.cells[(key, agent)] = (state, version)

    def _route(self, event: Event) -> None:
        row = self._row(event)
        data = event.data
        if row is not None and data.get("tier"):
            row.tier = str(data["tier"])
            row.model = str(data.get("model") or row.model)

    def _pause(self, event: Event) -> None:
        self.paused = event.kind == "pause"

    # -- tool calls -----------------------------------------------------------------------

    def _tool(self, row: AgentRow, event: Event) -> ToolRun | None:
        """The agent's call this event speaks of (the latest with its step and index)."""
        step, index = event.data.get("step"), event.data.get("index")
        for run in reversed(row.tools):
            if run.version == event.version and run.step == step and run.index == index:
                return run
        return None

    def _tool_call(self, event: Event) -> None:
        row = self._row(event)
        if row is None:
            return
        data = event.data
        step, index = int(data.get("step") or 0), int(data.get("index") or 0)
        row.tools.append(
            ToolRun(event.version, step, index, str(data.get("tool", "?")), str(data.get("effects", "")), event.time_s)
        )
        self.tool_calls += 1

    def _tool_hold(self, event: Event) -> None:
        row = self._row(event)
        run = self._tool(row, event) if row is not None else None
        if run is not None:
            run.state = "held"

    def _tool_result(self, event: Event) -> None:
        row = self._row(event)
        run = self._tool(row, event) if row is not None else None
        if run is None:
            return
        data = event.data
        run.end = event.time_s
        run.state = "done" if data.get("ok", True) else "error"
        run.size = int(data.get("size") or 0)
        run.error = str(data.get("error") or "")
        run.cached, run.restored = bool(data.get("cached")), bool(data.get("restored"))
        if data.get("duration_s") is not None and not run.restored:
            run.start = min(run.start, event.time_s - float(data["duration_s"]))

    def _refused(self, event: Event) -> None:
        row = self._row(event)
        data = event.data
        if row is None or "tool" not in data:
            return  # a refusal of something else (a provider's): the signals log has it
        step, index = int(data.get("step") or 0), int(data.get("index") or 0)
        run = ToolRun(event.version, step, index, str(data["tool"]), "", event.time_s, event.time_s, "refused")
        run.error = str(data.get("reason") or "not in its tools list")
        row.tools.append(run)
        self.tool_calls += 1

    # -- the signals log ------------------------------------------------------------------

    def _log(self, event: Event, kind: str = "") -> None:
        where = f"{event.station}@{event.version}" if event.station else ""
        self.log.append(Signal(event.time_s, kind or event.kind, where, describe(event)))
        self.logged += 1

    def signals(self, needle: str = "") -> Iterable[Signal]:
        """The log's entries that mention ``needle`` (case-insensitive), oldest first."""
        needle = needle.lower()
        return (signal for signal in self.log if signal.matches(needle))

    # -- figures --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.end_time is not None

    @property
    def running(self) -> int:
        return sum(1 for row in self.agents.values() if row.state == "running")

    @property
    def saving_usd(self) -> float:
        return self.frontier_usd - self.spend_usd
