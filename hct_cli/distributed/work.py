"""The wire format of distributed mode: a work item (one model call).

A work item carries everything a worker needs to make the call as the conductor would have:
the rendered messages (with the tools offered and the earlier rounds' turns of a tool-using
agent, and the round's step), the route and its fallbacks, the agent's figures that providers read
(``max_tokens``, ``tempo``, ``timeout_s``, ``simulate``), the tag version and attempt (so a
redelivered call draws exactly what the first delivery would have) and the provider mode. A
worker therefore needs no flag but the bus. Keys never travel: a worker calling real models
uses its own environment's credentials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hct_cli.distributed.tool_work import TOOL_KIND, ToolWork, decode_tool_work
from hct_cli.jsonio import dumps
from hct_cli.program.routing import Route
from hct_cli.providers.base import CallRequest
from hct_cli.score.model import Agent, agent_from_data

__all__ = ["Mode", "Work", "decode_item", "decode_work", "encode_work"]


@dataclass(frozen=True)
class Mode:
    """Which provider answers a run's calls: ``simulated`` (seeded, no keys) or ``models``
    (real models through litellm; ``endpoints`` maps a model to its OpenAI-compatible server,
    ``local`` asks the worker to serve the local model itself)."""

    kind: str = "simulated"
    seed: int = 0
    time_scale: float = 1.0
    endpoints: Mapping[str, str] = field(default_factory=dict)
    local: bool = False

    def to_data(self) -> dict[str, Any]:
        if self.kind == "simulated":
            return {"kind": "simulated", "seed": self.seed, "time_scale": self.time_scale}
        return {"kind": self.kind, "endpoints": dict(self.endpoints), "local": self.local}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Mode:
        return cls(
            str(data.get("kind", "simulated")),
            int(data.get("seed", 0)),
            float(data.get("time_scale", 1.0)),
            dict(data.get("endpoints", {})),
            bool(data.get("local", False)),
        )

    @property
    def key(self) -> str:
        """Equal for modes that one provider instance can serve."""
        return dumps(self.to_data(), sort_keys=True)


@dataclass(slots=True)
class Work:
    """One call as a worker receives it."""

    run: str
    request: CallRequest
    mode: Mode

    @property
    def tag(self) -> str:
        return f"{self.request.agent.name}@{self.request.version}"


def _agent_data(agent: Agent) -> dict[str, Any]:
    sim = agent.simulate
    data: dict[str, Any] = {"name": agent.name, "max_tokens": agent.max_tokens, "tempo": agent.tempo}
    if agent.timeout_s is not None:
        data["timeout_s"] = agent.timeout_s
    if agent.writes:
        data["writes"] = list(agent.writes)
    if agent.output is not None:  # a typed result: the worker's model is asked for it (checked at home)
        data["output"] = {"schema": _plain(agent.output.schema)}
    figures = {
        "latency_ms": list(sim.latency_ms) if sim.latency_ms is not None else None,
        "prompt_tokens": sim.prompt_tokens,
        "output_tokens": sim.output_tokens,
        "pass_rate": sim.pass_rate,
        "output": sim.output,
    }
    figures = {k: v for k, v in figures.items() if v is not None}
    if sim.tool_calls:  # the scripted model's rounds: a worker's simulated model plays them too
        figures["tool_calls"] = [
            [{"tool": c.tool, "args": _plain(c.args)} for c in round_] for round_ in sim.tool_calls
        ]
    if figures:
        data["simulate"] = figures
    return data


def _plain(value: Any) -> Any:
    """``value`` with every mapping a dict and every tuple a list: JSON as the score wrote it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _agent(data: Mapping[str, Any]) -> Agent:
    """The agent a work item carries: only the figures providers read (see :func:`_agent_data`)."""
    return agent_from_data(str(data["name"]), 0, {**data, "max_tokens": int(data["max_tokens"])})


def encode_work(run: str, request: CallRequest, mode: Mode) -> str:
    """A model call as JSON text (its context stays home: the prompt is already rendered; a
    judge's call takes its threshold along)."""
    data = {
        "run": run,
        "agent": _agent_data(request.agent),
        "model": request.model,
        "tier": request.tier,
        "prompt": request.prompt,
        "system": request.system,
        "shared": request.shared,
        "version": request.version,
        "attempt": request.attempt,
        "fallbacks": [[r.tier, r.model, r.reason] for r in request.fallbacks],
        "mode": mode.to_data(),
    }
    if request.purpose != "call":  # a judge's call: how it is scored travels with it
        data["purpose"] = request.purpose
        data["context"] = {k: v for k, v in request.context.items() if k == "threshold"}
    if request.tools:  # only then: a call without tools travels as it always did
        data["tools"] = _plain(request.tools)
    if request.step:
        data["step"] = request.step
    if request.turns:
        data["turns"] = _plain(request.turns)
    return dumps(data, ensure_ascii=False, compact=True)


def decode_item(text: str) -> Work | ToolWork:
    """A model call's work item, or a tool's (:mod:`hct_cli.distributed.tool_work`); ``ValueError``
    for anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not a work item: {exc}") from exc
    if isinstance(data, dict) and data.get("kind") == TOOL_KIND:
        return decode_tool_work(data)
    return _decode(data)


def decode_work(text: str) -> Work:
    """The inverse of :func:`encode_work`; ``ValueError`` for anything that is not a work item."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not a work item: {exc}") from exc
    return _decode(data)


def _decode(data: Any) -> Work:
    try:
        request = CallRequest(
            _agent(data["agent"]),
            str(data["model"]),
            data.get("tier"),
            str(data["prompt"]),
            str(data.get("system", "")),
            int(data["version"]),
            int(data.get("attempt", 0)),
            dict(data.get("context") or {}),
            fallbacks=tuple(Route(tier, model, reason) for tier, model, reason in data.get("fallbacks", ())),
            purpose=str(data.get("purpose", "call")),
            shared=str(data.get("shared", "")),
            tools=tuple(dict(tool) for tool in data.get("tools") or ()),
            step=int(data.get("step", 0)),
            turns=tuple(dict(turn) for turn in data.get("turns") or ()),
        )
        return Work(str(data["run"]), request, Mode.from_data(data.get("mode", {})))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a work item: {type(exc).__name__}: {exc}") from exc
