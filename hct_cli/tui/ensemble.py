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
from typing import Any

from hct_cli.engine.accounting import frontier_price
from hct_cli.events import Event
from hct_cli.program.compile import Program

__all__ = ["AgentRow", "Ensemble", "Signal", "Span"]

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

    # -- the signals log ------------------------------------------------------------------

    def _log(self, event: Event) -> None:
        where = f"{event.station}@{event.version}" if event.station else ""
        self.log.append(Signal(event.time_s, event.kind, where, describe(event)))
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


def describe(event: Event) -> str:
    """A signal in a few words, as the log shows it."""
    data: dict[str, Any] = dict(event.data)
    kind = event.kind
    if kind == "cue":
        keys = data.get("keys") or {}
        shared = f" → {', '.join(keys)}" if keys else ""
        return f"${float(data.get('cost_usd') or 0.0):.4f}{shared}"
    if kind == "fermata":
        hold = data.get("hold")
        return "waits for a person (a approves, r rejects)" if hold == "approval" else f"held for its {hold} gate"
    if kind in ("gate", "tacet", "vamp", "caesura"):
        passed = data.get("passed")
        verdict = "" if passed is None else "passed: " if passed else "failed: "
        extra = f" (back to checkpoint {data.get('checkpoint')})" if kind == "caesura" else ""
        return f"{verdict}{data.get('reason', '')}{extra}".strip()
    if kind == "squash":
        return (
            f"fired on {data.get('on')}, which did not commit (${float(data.get('cost_usd') or 0.0):.4f} thrown away)"
        )
    if kind == "speculate":
        return f"fires on {data.get('on')} before it commits"
    if kind == "downbeat":
        return f"checkpoint {data.get('checkpoint')}"
    if kind in ("fail", "skip"):
        return str(data.get("error") or data.get("reason") or "")
    if kind in ("step_down", "boost", "fallback"):
        return f"→ {data.get('tier')} {data.get('model')}: {data.get('reason', '')}"
    if kind in ("retry", "fallback_skipped"):
        return ", ".join(f"{k}={v}" for k, v in data.items())
    if kind in ("stale_read", "replay"):
        keys = ", ".join(data.get("keys") or [])
        if kind == "stale_read":
            return f"read {keys}, which changed while it ran; committed anyway (coherence: off)"
        turns = "; replays did not converge, it takes turns from now on" if data.get("hold") else ""
        return (
            f"read {keys}, which changed while it ran: runs again on fresh values (replay {data.get('replay')}){turns}"
        )
    if kind == "hold":
        keys = ", ".join(data.get("keys") or [])
        return f"{keys} behind {data['behind']}" if data.get("behind") else keys
    if kind == "run_end":
        return f"{data.get('status')} · ${float(data.get('cost_usd') or 0.0):.4f}"
    if kind in ("pause", "resume"):
        return "issuing paused" if kind == "pause" else "issuing again"
    if kind == "reclaim":
        return f"{data.get('by')} took it over from silent worker {data.get('from')}"
    if kind == "hand_back":
        return f"{data.get('by')} stopped and handed it back"
    if kind == "interrupt":
        return str(data.get("reason", ""))
    if kind == "warm_up_failed":
        return f"the warm-up call failed ({data.get('reason')}); the calls go without a warm cache"
    if kind == "listen":
        tokens = int(data.get("prefix_tokens") or 0)
        wait = data.get("wait")
        if wait == "never":
            return f"presto: goes without waiting for {data.get('leader')}'s cache of {tokens:,} tokens"
        bound = " (for a bounded time)" if wait == "bounded" else ""
        return (
            f"waits{bound} for {data.get('leader')} to cache the {tokens:,}-token prefix "
            f"(saves ~${float(data.get('expected_saving_usd') or 0.0):.4f})"
        )
    if kind == "page":
        cuts = data.get("cuts") or []
        what = ", ".join(f"{c.get('ref')} {int(c.get('tokens') or 0):,}/{int(c.get('of') or 0):,}" for c in cuts)
        return f"paged out to fit {data.get('model')}: {what} tokens"
    if kind == "refused":
        return str(data.get("reason", ""))
    return ", ".join(f"{k}={v}" for k, v in data.items())
