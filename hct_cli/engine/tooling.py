"""The tool loop: an agent's model rounds and the tool calls between them.

A model's tool calls are instructions, and they are issued as Tomasulo issues them: each call's
arguments are already present when the model names it, so every call of one round is issued at
once, each on its server's functional unit (``concurrency``), and the answers go back to the
model in the next round, until it answers or runs out of ``max_steps``.

What no peer does, this module does:

* **Journaled before sent.** Every call is journaled as ``tool_call``, with a digest of (agent,
  version, step, tool, arguments), before it is sent (the journal commits once per loop turn, so
  the call waits one turn), and as ``tool_result`` when it returns. A resume answers journaled
  calls from the journal and never sends them again; a *write* call that was sent but whose
  result never reached the journal is not sent again either (it may have happened): the agent
  stops as ``needs_attention`` with the call shown, unless its tool is declared ``idempotent``.
* **No side effect for speculative work.** An agent running on results not yet committed
  (speculation past a held gate, an ``attacca`` edge) may read, but its first write waits until
  its speculation is confirmed; a squash cancels its task, so its reads in flight are cancelled
  and the write is never sent.
* **Reads answered once.** A repeated read call of the same run (same tool, same arguments) is
  answered from memory; a write is never cached.
* **Every round paid once.** Each round that asked for tools is its own call (a ``result`` with
  purpose ``round``): priced, journaled, counted in the agent's cost and the frontier
  counterfactual, and answered from the journal on a resume. The governor keeps one round's
  worst case reserved while the loop runs.

A tool's answer is data: redacted like results before the model, the journal or a view sees it,
and never able to reach the reference frame or shared state (only the agent's final answer
commits, through the usual gate).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.engine.governor import worst_case_usd
from hct_cli.engine.run_state import RunState
from hct_cli.engine.station import Station
from hct_cli.errors import AgentError, InDoubtWriteError, ToolError
from hct_cli.models import model_info
from hct_cli.providers.base import CallRequest, broadcast_of, timeout_for
from hct_cli.score.tools import DEFAULT_MAX_STEPS
from hct_cli.tools.base import ToolBox, ToolSpec

if TYPE_CHECKING:
    from hct_cli.store.runs import RecalledCall, ToolJournal

__all__ = ["ToolLoop", "round_digest", "tool_digest"]

Call = Callable[[CallRequest], Awaitable[CallResult]]


def tool_digest(agent: str, version: int, step: int, tool: str, arguments: Mapping[str, Any]) -> str:
    """The identity of one tool call: what the journal keys it by, so a resume can tell it is the same."""
    text = json.dumps([agent, version, step, tool, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def round_digest(request: CallRequest) -> str:
    """The identity of one model round: its messages (the tools' answers included) and model."""
    turns = json.dumps(request.turns, sort_keys=True, separators=(",", ":"), default=str)
    text = f"{request.model}\x1f{request.system}\x1e{request.user_text}\x1d{request.step}\x1d{turns}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _assistant_turn(result: CallResult) -> dict[str, Any]:
    """The model's round as the next round's messages carry it (OpenAI's form)."""
    return {
        "role": "assistant",
        "content": result.output if isinstance(result.output, str) and result.output else None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.raw or json.dumps(dict(call.arguments))},
            }
            for call in result.tool_calls
        ],
    }


class ToolLoop:
    """Runs the model-tool rounds of the calls of one run."""

    __slots__ = ("_journal", "_reads", "_specs", "_starting", "box", "recall", "state")

    def __init__(
        self,
        state: RunState,
        box: ToolBox | None,
        recall: Mapping[tuple[str, int, str], RecalledCall] | None,
        journal: ToolJournal | None,
    ) -> None:
        self.state = state
        self.box = box
        self.recall = recall
        self._journal = journal
        self._specs: dict[str, tuple[ToolSpec, ...]] = {}
        self._starting: dict[str, asyncio.Task[tuple[ToolSpec, ...]]] = {}  # prefetch, by agent
        self._reads: dict[str, str] = {}  # a read call's key -> the text it answered (this run)

    async def run(self, station: Station, request: CallRequest, first: Call) -> CallResult:
        """The rounds of ``request``: ``first`` makes the first model call, the station's provider the rest."""
        agent = station.agent
        specs = await self._tools_for(station)
        named: dict[str, ToolSpec] = {}
        for spec in specs:
            named[spec.function] = spec
            named[spec.qualified] = spec
        request.tools = tuple(spec.definition() for spec in specs)
        limit = agent.max_steps or DEFAULT_MAX_STEPS
        turns: list[Mapping[str, Any]] = []
        call = first
        step = 0
        while True:
            request.step = step
            request.turns = tuple(turns)
            result = await self._round(station, request, call)
            if not result.tool_calls:
                return result
            if step >= limit:
                raise AgentError(
                    f"agent {station.name!r} still asked for tools after {limit} rounds (max_steps: {limit})",
                    hint="Raise the agent's max_steps, or tell it in its prompt when to answer.",
                )
            turns.append(_assistant_turn(result))
            answers = await self._issue(station, request.version, step, result.tool_calls, named, timeout_for(request))
            turns.extend(
                {"role": "tool", "tool_call_id": call_.id, "content": text}
                for call_, text in zip(result.tool_calls, answers, strict=True)
            )
            step += 1
            call = station.provider.call
            request.step = step
            request.turns = tuple(turns)
            self._reserve_next(station, request)

    # -- model rounds ------------------------------------------------------------------------

    async def _round(self, station: Station, request: CallRequest, call: Call) -> CallResult:
        """One model round: answered from the journal on a resume, else called; booked if it asked for tools."""
        state = self.state
        found = self.recall.get((station.name, request.version, f"round:{request.step}")) if self.recall else None
        digest = round_digest(request)
        if found is not None and (found.digest is None or found.digest == digest):
            message = found.result
            station.record.rounds += (message,)
            station.record.recalled.append(message)
            state.restored_usd += message.result.cost_usd
            return message.result
        result = await call(request)
        if result.tool_calls:  # a round of its own; the final answer lands as the call's result
            message = broadcast_of(station.name, request, result)
            station.record.rounds += (message,)
            # What the round cost leaves its reservation for spend: spent + reserved stays what it
            # was (within the cap) while its tools run, and the rest still holds the loop's place.
            held = min(station.reserved, result.cost_usd)
            state.governor.settle(held, result.cost_usd)
            station.reserved -= held
            state.spent_usd += result.cost_usd
            if state.observers:
                data = message.to_data()
                data["purpose"] = "round"
                data["step"] = request.step
                data["digest"] = digest
                data["tool_calls"] = [call_.to_data() for call_ in result.tool_calls]
                state.emit("result", station.name, request.version, **data)
        return result

    def _reserve_next(self, station: Station, request: CallRequest) -> None:
        """Hold the next round's worst case (its prompt has grown by the tools' answers)."""
        state = self.state
        tokens = (len(request.system) + len(request.user_text) + len(json.dumps(request.turns, default=str))) // 4
        info = model_info(request.model)
        window = info.max_input_tokens if info is not None else None
        if window and tokens > window:
            raise AgentError(
                f"agent {station.name!r}: the tools' answers grew its prompt to about {tokens:,} tokens, "
                f"over {request.model}'s window of {window:,}",
                hint="Ask the tools for less (a head, a range, a filter), or route the agent to a model "
                "with a larger window.",
            )
        worst = worst_case_usd(request.model, tokens, station.agent.max_tokens)
        governor = state.governor
        budget = governor.budget_usd
        if budget is not None and governor.spent + governor.reserved - station.reserved + worst > budget:
            raise AgentError(
                f"agent {station.name!r} cannot afford another model round within the budget",
                hint="Raise budget_usd, or lower the agent's max_steps or max_tokens.",
            )
        governor.reserved += worst - station.reserved
        station.reserved = worst

    # -- tool calls --------------------------------------------------------------------------

    def prefetch(self) -> None:
        """Start every server a tool-using agent reaches, in the background, as the run starts.

        A server's start (a process, a handshake, its tool list) is neither a model's latency nor
        a tool's: left to the first call, it would sit on the critical path. Started with the
        run, it overlaps the calls that come before the first tool call; a failure to start is
        the failure of the agent that uses it, when it does (never of the run)."""
        box = self.box
        if box is None:
            return
        tooled = [(name, station) for name, station in self.state.stations.items() if station.tooled]
        if tooled:
            box.load()  # before the run's clock starts: an import mid-run would stall every call
        for name, station in tooled:
            task = self.state.loop.create_task(box.tools_for(station.agent, station.route.tier))
            task.add_done_callback(_retrieved)
            self._starting[name] = task

    def settle(self) -> None:
        """The run is over: a start still going is of no use to anyone."""
        for task in self._starting.values():
            task.cancel()

    async def _tools_for(self, station: Station) -> tuple[ToolSpec, ...]:
        name = station.name
        specs = self._specs.get(name)
        if specs is None:
            if self.box is None:
                raise ToolError(
                    f"agent {name!r} declares tools but this run has no tool servers",
                    hint="Declare the servers in the score's tools: section.",
                )
            starting = self._starting.pop(name, None)
            tier = station.route.tier
            specs = await starting if starting is not None else await self.box.tools_for(station.agent, tier)
            self._specs[name] = specs
        return specs

    async def _issue(
        self,
        station: Station,
        version: int,
        step: int,
        calls: tuple[ToolCall, ...],
        named: Mapping[str, ToolSpec],
        timeout_s: float,
    ) -> list[str]:
        """Every call of one round at once; the first that cannot be served fails the agent and cancels the rest."""
        loop = self.state.loop
        tasks = [
            loop.create_task(self._one(station, version, step, index, call, named, timeout_s))
            for index, call in enumerate(calls)
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()

    async def _one(
        self,
        station: Station,
        version: int,
        step: int,
        index: int,
        call: ToolCall,
        named: Mapping[str, ToolSpec],
        timeout_s: float,
    ) -> str:
        state = self.state
        name = station.name
        spec = named.get(call.name) or _bare(call.name, named)
        where = {"step": step, "index": index}
        listed = {"version": version, **where}  # the record's entry: which execution, too
        if spec is None:
            reason = f"tool {call.name!r} is not allowed for agent {name!r}"
            state.emit("refused", name, version, reason=reason, tool=call.name, **where)
            station.record.tool_calls += ({**listed, "tool": call.name, "refused": True, "ok": False},)
            allowed = sorted({spec.qualified for spec in named.values()})
            return f"error: {reason}; it may call only: {', '.join(allowed) or 'none'}"
        tool = spec.qualified
        entry: dict[str, Any] = {**listed, "tool": tool, "effects": spec.effects}
        station.record.tool_calls += (entry,)  # filled in below, as the call goes
        if call.raw is not None:
            entry.update(ok=False, error="arguments are not a JSON object")
            return f"error: the arguments of {tool} must be a JSON object, not {call.raw[:200]!r}"
        arguments = dict(call.arguments)
        digest = tool_digest(name, version, step, tool, arguments)
        entry["digest"] = digest
        said = _Said(state, name, version, step, index, call.id, tool, spec.effects, digest, arguments)
        journal = self._journal
        if journal is not None:
            answered = journal.results.get(digest)
            if answered is not None:
                text = str(answered.get("text", ""))
                entry.update(ok=bool(answered.get("ok", True)), restored=True, size=len(text.encode()))
                said.answered(text, ok=entry["ok"], error=answered.get("error"), restored=True)
                return text
            if spec.effects == "write" and digest in journal.sent and not spec.idempotent:
                entry.update(ok=False, in_doubt=True)
                station.record.attention = {"tool": tool, "digest": digest, "arguments": arguments, "step": step}
                shown = json.dumps(arguments, sort_keys=True)[:300]
                raise InDoubtWriteError(
                    f"write call {tool}({shown}) of agent {name!r} was sent before the run stopped, "
                    "but its result never reached the journal: it may have happened",
                    hint=f"Check whether {tool} did it. If it did not, resume with `hct perform --resume RUN "
                    "--resend-writes`; a tool that is safe to send twice can say idempotent: true in the score.",
                )
        key = f"{tool}\x1f{json.dumps(arguments, sort_keys=True, default=str)}"
        if spec.effects == "read":
            remembered = self._reads.get(key)
            if remembered is not None:
                entry.update(ok=True, cached=True, size=len(remembered.encode()))
                said.sent(bool(station.unconfirmed))
                said.answered(remembered, cached=True)
                return remembered
        elif station.unconfirmed:  # speculative work writes nothing until it is confirmed
            if state.observers:
                state.emit("tool_hold", name, version, step=step, index=index, tool=tool, digest=digest)
            await _confirmed(station)
        if state.observers:
            said.sent(bool(station.unconfirmed))
            await asyncio.sleep(0)  # the journal commits this turn: the call is on disk before it is sent
        started = time.perf_counter()
        assert self.box is not None  # specs came from it
        try:
            server = state.program.score.tools.get(spec.server)
            own = server.timeout_s if server is not None else None
            reply = await self.box.call(spec, arguments, own or timeout_s)
        except ToolError as exc:
            if isinstance(exc, InDoubtWriteError):  # its worker lost it mid-call (a server on: worker)
                entry["in_doubt"] = True
                station.record.attention = {"tool": tool, "digest": digest, "arguments": arguments, "step": step}
            entry.update(ok=False, error=exc.message, duration_s=time.perf_counter() - started)
            said.answered("", ok=False, duration_s=entry["duration_s"], error=exc.message)
            raise
        text = state.redactor.text(reply.text) if state.redacting else reply.text
        duration = time.perf_counter() - started
        error = text[:500] if reply.is_error else None
        entry.update(ok=not reply.is_error, duration_s=duration, size=reply.size, error=error)
        if reply.worker is not None:
            entry["worker"] = reply.worker
        if spec.effects == "write":
            state.writes.append(
                {"agent": name, "version": version, "tool": tool, "digest": digest, "arguments": arguments}
            )
        elif not reply.is_error:
            self._reads[key] = text
        said.answered(
            text, ok=not reply.is_error, duration_s=duration, size=reply.size, error=error, worker=reply.worker
        )
        return text


@dataclass(frozen=True, slots=True)
class _Said:
    """One tool call as its events name it: ``tool_call`` when it is sent, ``tool_result`` when
    it is answered (by its server, the journal or the run's read cache)."""

    state: RunState
    agent: str
    version: int
    step: int
    index: int
    id: str
    tool: str
    effects: str
    digest: str
    arguments: Mapping[str, Any]

    def sent(self, speculative: bool) -> None:
        if self.state.observers:
            self.state.emit(
                "tool_call",
                self.agent,
                self.version,
                step=self.step,
                index=self.index,
                id=self.id,
                tool=self.tool,
                effects=self.effects,
                arguments=self.arguments,
                digest=self.digest,
                speculative=speculative,
            )

    def answered(
        self,
        text: str,
        *,
        ok: bool = True,
        duration_s: float = 0.0,
        size: int | None = None,
        error: str | None = None,
        cached: bool = False,
        restored: bool = False,
        worker: str | None = None,
    ) -> None:
        if self.state.observers:
            where = {"worker": worker} if worker is not None else {}
            self.state.emit(
                "tool_result",
                self.agent,
                self.version,
                step=self.step,
                index=self.index,
                tool=self.tool,
                digest=self.digest,
                effects=self.effects,
                ok=ok,
                duration_s=duration_s,
                size=len(text.encode()) if size is None else size,
                error=error,
                text=text,
                cached=cached,
                restored=restored,
                **where,
            )


def _bare(name: str, named: Mapping[str, ToolSpec]) -> ToolSpec | None:
    """A tool the model named without its server (a scripted call, say), when only one server offers it."""
    found = {spec.qualified: spec for spec in named.values() if spec.name == name}
    return next(iter(found.values())) if len(found) == 1 else None


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A prefetch's outcome is its agent's to see; retrieved here so an unused one is never logged."""
    if not task.cancelled():
        task.exception()


async def _confirmed(station: Station) -> None:
    """Wait until every producer ``station`` speculated on has committed (a squash cancels the wait)."""
    while station.unconfirmed:
        if station.confirmation is None or station.confirmation.done():
            station.confirmation = asyncio.get_running_loop().create_future()
        await station.confirmation
