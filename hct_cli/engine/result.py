"""The outcome of a run, as ``hct perform --json`` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["STATUSES", "AgentRecord", "RunResult"]

STATUSES = ("completed", "failed", "caesura", "budget_exhausted", "interrupted")


@dataclass
class AgentRecord:
    status: str = "waiting"  # waiting, running, done, failed, skipped
    model: str | None = None
    tier: str | None = None
    version: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    worst_case_usd: float = 0.0
    started_s: float | None = None
    finished_s: float | None = None
    latency_s: float = 0.0
    output: Any = None
    error: str | None = None
    worker: str | None = None
    operands: dict[str, int] = field(default_factory=dict)  # cue -> version captured

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model,
            "tier": self.tier,
            "version": self.version,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "worst_case_usd": round(self.worst_case_usd, 8),
            "started_s": None if self.started_s is None else round(self.started_s, 6),
            "finished_s": None if self.finished_s is None else round(self.finished_s, 6),
            "output": self.output,
            "worker": self.worker,
            "error": self.error,
            "operands": self.operands,
        }


@dataclass
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

    @property
    def savings(self) -> float:
        if self.frontier_cost_usd <= 0:
            return 0.0
        return 1.0 - self.cost_usd / self.frontier_cost_usd

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dispatch": self.dispatch,
            "makespan_s": round(self.makespan_s, 6),
            "critical_path_s": round(self.critical_path_s, 6),
            "cost_usd": round(self.cost_usd, 8),
            "frontier_cost_usd": round(self.frontier_cost_usd, 8),
            "savings": round(self.savings, 6),
            "stale_reads": self.stale_reads,
            "agents": {name: record.to_json() for name, record in self.agents.items()},
            "state": self.state,
        }
