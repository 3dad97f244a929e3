"""The outcome of a run, as ``hct perform --json`` prints it and ``hct_cli.perform`` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.models import model_info

__all__ = ["STATUSES", "AgentRecord", "RunResult"]

_NO_CALL = Broadcast("", 0, False)  # the figures of an agent that has not been called

STATUSES = ("completed", "failed", "caesura", "budget_exhausted", "interrupted")


@dataclass(slots=True)
class AgentRecord:
    """One agent's part in a run. Call figures come from the committed broadcast itself."""

    # waiting, running, held, speculative, parked, done, tacet, failed, skipped, squashed, and
    # needs_attention: it stopped at a write call that may have happened (see engine.tooling)
    status: str = "waiting"
    route_model: str | None = None
    tier: str | None = None
    version: int = 0
    worst_case_usd: float = 0.0
    frontier_cost_usd: float = 0.0  # the same tokens on the frontier tier
    started_s: float | None = None
    finished_s: float | None = None
    error: str | None = None
    result: Broadcast | None = None
    captured: dict[str, Broadcast] = field(default_factory=dict)  # cue -> the broadcast its operand came from
    earlier: list[Broadcast] = field(default_factory=list)  # calls before the last: replays, vamp passes
    checks: list[Broadcast] = field(default_factory=list)  # judge calls of its gates
    squashed: list[Broadcast] = field(default_factory=list)  # results thrown away (speculation, caesura)
    paged: list[dict[str, Any]] = field(default_factory=list)  # what L1 paged out of the last call's prompt
    warm_ups: list[Broadcast] = field(default_factory=list)  # one-token calls that wrote a prompt cache
    # Answers a resume took from the journal: their time was spent in an earlier segment.
    recalled: list[Broadcast] = field(default_factory=list)
    speculated: set[str] = field(default_factory=set)  # producers whose held result it fired on, committed
    # The tool loop's: model rounds that asked for tools, and its tool calls as --json shows them.
    # Tuples, empty by default: the agents of most runs call no tools, and pay no list for it.
    rounds: tuple[Broadcast, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    attention: dict[str, Any] | None = None  # the write call in doubt that stopped it (needs_attention)

    @property
    def operands(self) -> dict[str, int]:
        """Cue -> the version of its result this agent captured."""
        return {name: message.version for name, message in self.captured.items()}

    @property
    def _call(self) -> Broadcast:
        return self.result if self.result is not None else _NO_CALL

    @property
    def model(self) -> str | None:
        return self._call.result.model or self.route_model

    @property
    def calls(self) -> int:
        return len(self.all_calls())

    def all_calls(self) -> list[Broadcast]:
        """Every call of this agent: earlier passes, judges, squashed work, then the last result."""
        calls = [*self.warm_ups, *self.rounds, *self.earlier, *self.checks, *self.squashed]
        if self.result is not None:
            calls.append(self.result)
        return calls

    @property
    def cached_calls(self) -> int:
        return sum(1 for b in self.all_calls() if b.result.cached)

    # Tokens, cost and latency add up over every call of this agent (replays, vamp passes, retries,
    # judges, squashed work).
    @property
    def prompt_tokens(self) -> int:
        return sum(b.result.prompt_tokens for b in self.all_calls())

    @property
    def completion_tokens(self) -> int:
        return sum(b.result.completion_tokens for b in self.all_calls())

    @property
    def cost_usd(self) -> float:
        return sum(b.result.cost_usd for b in self.all_calls())

    @property
    def cached_tokens(self) -> int:
        return sum(b.result.cached_tokens for b in self.all_calls())

    @property
    def cache_write_tokens(self) -> int:
        return sum(b.result.cache_write_tokens for b in self.all_calls())

    @property
    def input_cost_usd(self) -> float:
        """What its prompts cost, cache reads and writes priced as the provider prices them."""
        total = 0.0
        for b in self.all_calls():
            info = model_info(b.result.model) if b.result.model else None
            if info is not None:
                total += info.cost(b.result.prompt_tokens, 0, b.result.cached_tokens, b.result.cache_write_tokens)
        return total

    @property
    def cache_saving_usd(self) -> float:
        """What the provider's prompt cache saved against the same prompts sent uncached."""
        total = 0.0
        for b in self.all_calls():
            info = (
                model_info(b.result.model)
                if b.result.model and (b.result.cached_tokens or b.result.cache_write_tokens)
                else None
            )
            if info is not None:
                total += info.cost(b.result.prompt_tokens, 0) - info.cost(
                    b.result.prompt_tokens, 0, b.result.cached_tokens, b.result.cache_write_tokens
                )
        return total

    @property
    def latency_s(self) -> float:
        """Its calls' own latencies, and the time its tool calls kept it waiting."""
        return sum(b.result.latency_s for b in self.all_calls()) + self.tool_time_s

    @property
    def tool_time_s(self) -> float:
        """The time its tool calls took on its own path: the calls of one round run at once, so
        each round counts its longest call (none for those answered by the journal or the cache)."""
        longest: dict[tuple[int, int], float] = {}
        for call in self.tool_calls:
            if call.get("restored") or call.get("cached") or call.get("refused"):
                continue
            key = (int(call.get("version", 0)), int(call.get("step", 0)))
            longest[key] = max(longest.get(key, 0.0), float(call.get("duration_s", 0.0)))
        return sum(longest.values())

    @property
    def output(self) -> Any:
        return self._call.result.output

    @property
    def worker(self) -> str | None:
        return self._call.result.worker

    def to_json(self) -> dict[str, Any]:
        shown = self._fields()
        if self.tool_calls:
            shown["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.attention is not None:
            shown["needs_attention"] = dict(self.attention)
        return shown

    def _fields(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model,
            "tier": self.tier,
            "version": self.version,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "worst_case_usd": round(self.worst_case_usd, 8),
            "frontier_cost_usd": round(self.frontier_cost_usd, 8),
            "started_s": None if self.started_s is None else round(self.started_s, 6),
            "finished_s": None if self.finished_s is None else round(self.finished_s, 6),
            "output": self.output,
            "worker": self.worker,
            "error": self.error,
            "operands": self.operands,
            "paged": self.paged,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_saving_usd": round(self.cache_saving_usd, 8),
        }


@dataclass(repr=False)
class RunResult:
    run_id: str
    status: str
    dispatch: str
    makespan_s: float
    critical_path_s: float
    cost_usd: float
    frontier_cost_usd: float
    stale_reads: int
    agents: dict[str, AgentRecord]
    state: dict[str, Any]
    replays: int = 0
    holds: int = 0
    hold_s: float = 0.0
    coherence: str = "replay"
    speculated: int = 0  # dependents that fired on a held result which then committed
    squashes: int = 0  # dependents squashed because the result they took did not commit
    squashed_cost_usd: float = 0.0
    caesura: dict[str, Any] | None = None  # who stopped the run, the checkpoint restored, what was squashed
    # From the journal once the segment's end is journaled (None for a run that was not journaled):
    # how its calls ended over every segment (store.journal.call_counts), and this segment's number.
    call_counts: dict[str, int] | None = None
    segment: int | None = None

    def __repr__(self) -> str:  # the full record of a large run would be megabytes long
        return f"RunResult(run_id={self.run_id!r}, status={self.status!r}, agents={len(self.agents)})"

    @property
    def input_cost_usd(self) -> float:
        return sum(r.input_cost_usd for r in self.agents.values())

    @property
    def savings(self) -> float:
        """What routing saved against the all-frontier counterfactual of the paid calls (docs/figures.md)."""
        if self.frontier_cost_usd <= 0:
            return 0.0
        return 1.0 - self.cost_usd / self.frontier_cost_usd

    def to_json(self) -> dict[str, Any]:
        data = {
            "run_id": self.run_id,
            "status": self.status,
            "dispatch": self.dispatch,
            "makespan_s": round(self.makespan_s, 6),
            "critical_path_s": round(self.critical_path_s, 6),
            "cost_usd": round(self.cost_usd, 8),
            "frontier_cost_usd": round(self.frontier_cost_usd, 8),
            "savings": round(self.savings, 6),
            "stale_reads": self.stale_reads,
            "coherence": self.coherence,
            "replays": self.replays,
            "holds": self.holds,
            "hold_s": round(self.hold_s, 6),
            "speculated": self.speculated,
            "squashes": self.squashes,
            "squashed_cost_usd": round(self.squashed_cost_usd, 8),
            "cached_calls": sum(r.cached_calls for r in self.agents.values()),
            "cached_tokens": sum(r.cached_tokens for r in self.agents.values()),
            "cache_write_tokens": sum(r.cache_write_tokens for r in self.agents.values()),
            "input_cost_usd": round(self.input_cost_usd, 8),
            "cache_saving_usd": round(sum(r.cache_saving_usd for r in self.agents.values()), 8),
            "caesura": self.caesura,
            "agents": {name: record.to_json() for name, record in self.agents.items()},
            "state": self.state,
        }
        if self.call_counts is not None:
            data.update(self.call_counts)
        if self.segment is not None:
            data["segment"] = self.segment
        return data
