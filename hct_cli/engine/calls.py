"""A call's assembly and execution: from an issued station to its result on the bus.

:class:`Calls` renders a station's request from the operands it captured (fitted to its model's
window, its shared material laid out as a prefix), runs it on the station's provider as a task
of its own, listening for a prefix another call is writing to the prompt cache, and publishes
what came back (or why it failed) on the bus. On a resume, a call the journal holds is answered
from it in the order it first arrived; judge calls of gates are made, priced and journaled here
too. What the result does once it lands is :mod:`hct_cli.engine.lifecycle`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hct_cli.bus.base import Broadcast, Bus
from hct_cli.call_result import CallResult
from hct_cli.engine.context import ContextFitter, composer
from hct_cli.engine.governor import worst_case_usd
from hct_cli.engine.listening import Listening, Ticket
from hct_cli.engine.options import Hands
from hct_cli.engine.paging import Cut, Layout
from hct_cli.engine.run_state import RunState
from hct_cli.engine.station import Station
from hct_cli.engine.tooling import ToolLoop
from hct_cli.errors import AccessError, AgentError, BusError, HctError
from hct_cli.jsonio import non_finite, writable_text
from hct_cli.program.routing import Route, fallbacks_of
from hct_cli.providers.base import CallRequest, Provider, ProviderError, broadcast_of
from hct_cli.score.template import render_compiled, shown

if TYPE_CHECKING:
    from hct_cli.store.runs import RecalledCall, ToolJournal

__all__ = ["WARM_UP_PROMPT", "Calls", "digest", "said"]

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})

#: What a warm-up call asks: one token, after the prefix it writes to the cache.
WARM_UP_PROMPT = "Reply with the single word OK."


def said(exc: HctError) -> str:
    """An agent's error as its record and events show it: what went wrong, and what to do."""
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


def digest(request: CallRequest) -> str:
    """The identity of a call's request, journaled so that a resume can tell it is the same call."""
    text = f"{request.model}\x1f{request.system}\x1e{request.user_text}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _refuse_non_finite(agent: str, output: Any) -> None:
    where = non_finite(output)
    if where is not None:
        raise AgentError(
            f"agent {agent!r} answered a number that is not finite (NaN or infinity) at {where}",
            hint="A result is JSON data, which has no NaN or infinity: answer a finite number, null or text.",
        )


class Calls:
    """Makes the calls of one run: renders, executes, answers from the journal, publishes."""

    __slots__ = ("_fallbacks", "_hands", "bus", "context", "digests", "listening", "recall", "state", "tools")

    def __init__(
        self,
        state: RunState,
        hands: Hands,
        bus: Bus,
        recall: Mapping[tuple[str, int, str], RecalledCall] | None,
        digests: bool,
        listening: bool,
        tool_journal: ToolJournal | None = None,
    ) -> None:
        self.state = state
        self._hands = hands
        self.bus = bus
        self.recall = recall
        self.digests = digests
        program = state.program
        self.context = ContextFitter(state.frame, program.tiers, state.stations, hands.tokenizer)
        self._fallbacks = {tier: fallbacks_of(program.tiers, tier) for tier in program.tiers}
        self.listening = Listening(state.emit_if_observed(), self.warm_up, enabled=listening)
        self.tools = ToolLoop(state, hands.tools, recall, tool_journal)

    def start(self, station: Station) -> int:
        """A new execution of ``station``: the next tag version."""
        state = self.state
        now = time.perf_counter()
        if state.t0 is None:
            state.t0 = now
        station.version += 1
        record = station.record
        record.status = "running"
        record.version = station.version
        record.started_s = now - state.t0
        return station.version

    def issue(self, station: Station) -> None:
        version = self.start(station)
        state = self.state
        try:
            request = self.request(station, version)
        except HctError as exc:  # the prompt cannot fit its model's window: the station fails
            error = said(exc)
            station.task = state.loop.create_task(self.publish(Broadcast(station.name, version, False, error=error)))
            return
        except Exception as exc:  # a prompt that cannot be rendered fails its station, not the run
            error = f"the prompt could not be rendered: {type(exc).__name__}: {exc}"
            station.task = state.loop.create_task(self.publish(Broadcast(station.name, version, False, error=error)))
            return
        if request.paged or station.record.paged:
            station.record.paged = [cut.to_data() for cut in request.paged]
        if state.observers:
            if request.paged:
                state.emit("page", station.name, version, model=request.model, cuts=station.record.paged)
            if self.digests:
                state.emit(
                    "issue", station.name, version, model=request.model, tier=request.tier, digest=digest(request)
                )
            else:
                state.emit("issue", station.name, version, model=request.model, tier=request.tier)
        ticket = self.listening.issue(station, request) if request.shared else None
        replay = state.replay
        delay = replay.delay() if replay.active else 0.0
        station.task = state.loop.create_task(self._execute(station, request, ticket, delay))

    def restore(self, station: Station, found: RecalledCall) -> bool:
        """Answer the next call of ``station`` from the journal if it is the same request; else False."""
        saved = station.route
        if found.model is not None:
            station.route = Route(found.tier, found.model, "journaled")
        try:
            request = self.request(station, station.version + 1)
        except Exception:
            request = None
        if request is None or (found.digest is not None and digest(request) != found.digest):
            station.route = saved
            return False
        version = self.start(station)
        station.unit.in_flight += 1
        station.restored = True
        answer = found.result.result
        if request.shared and (answer.cache_write_tokens or answer.cached_tokens):
            # Its prefix is in the provider's cache: the journaled call wrote or read it.
            self.listening.recalled(request)
            recalled = getattr(station.provider, "recalled", None)
            if recalled is not None:
                recalled(request)
        state = self.state
        if state.observers:
            state.emit("issue", station.name, version, model=request.model, tier=request.tier, restored=True)
        station.task = state.loop.create_task(self._publish_recalled(station.name, version, found.result))
        return True

    async def _publish_recalled(self, name: str, version: int, message: Broadcast) -> None:
        """A journaled result, published in its turn (the order it first arrived in)."""
        turn = self.state.replay.turn((name, version, "call"))
        if turn is not None:
            await turn
        await self.publish(message)

    def request(self, station: Station, version: int) -> CallRequest:
        state = self.state
        agent = station.agent
        template = station.template
        # Snapshot the reads (under hold, also own the writes) before rendering from them.
        shared_state = state.shared.read(station) if station.shared else None
        context: Mapping[str, Any] = _NO_CONTEXT
        if template is not None or agent.reads or agent.kind != "llm":
            cues = {name: message.result.output for name, message in station.operands.items()}
            context = (
                {"cues": cues, "inputs": state.inputs, "state": shared_state}
                if agent.reads
                else {"cues": cues, "inputs": state.inputs}
            )
            if agent.kind == "python":
                context = {"state": {}, **context, "reference_frame": state.program.score.reference_frame}
        feedback = station.feedback
        previous: str | None = None
        if agent.vamp is not None and station.iteration > 1 and station.record.earlier:
            previous = shown(station.record.earlier[-1].result.output)

        fitter = self.context
        hoisted = fitter.hoisted(station, context) if template is not None and agent.kind == "llm" else ()

        compose = None
        if hoisted or feedback is not None or previous is not None:
            compose = composer(station, context, hoisted, feedback, previous)
            shared, prompt = compose(_NO_CONTEXT)
        else:  # the common case, spelled out: no layout to build
            shared, prompt = "", render_compiled(template, context) if template is not None else agent.prompt or ""
        cuts: tuple[Cut, ...] = ()
        frame = state.frame
        if (
            agent.kind == "llm"
            and 4 * (len(frame) + len(shared) + len(prompt)) + 64 > fitter.floor
            and not fitter.fits_surely(station, shared, prompt)
        ):
            compose = compose or composer(station, context, hoisted, feedback, previous)
            fitted = fitter.fit(station, context, compose, Layout(shared, prompt))
            if fitted is not None:
                (shared, prompt), cuts = fitted.layout, fitted.cuts
        route = station.route
        fallbacks = self._fallbacks.get(route.tier, ()) if route.tier is not None else ()
        if fallbacks and state.governor.active:
            # Under a budget a fallback may not cost more than the worst case reserved for the call.
            tokens = state.prompt_tokens(station)
            fallbacks = tuple(
                f for f in fallbacks if worst_case_usd(f.model, tokens, agent.max_tokens) <= station.reserved
            )
        # Each execution of a station is one attempt: a retry, a replay or a vamp pass draws anew.
        request = CallRequest(
            agent,
            route.model,
            route.tier,
            prompt,
            frame,
            version,
            version - 1,
            context,
            fallbacks,
            self._report,
            "call",
            None,
            cuts,
            shared,
        )
        if agent.attacca:  # in distributed mode the hand-off goes to the worker that produced the cue
            request.affinity = next(
                (m.result.worker for m in station.operands.values() if m.result.worker is not None), None
            )
        return request

    def _report(self, agent: str, version: int, kind: str, data: dict[str, Any]) -> None:
        """A provider's word about a call in flight (a retry, a fallback): an event."""
        if self.state.observers:
            self.state.emit(kind, agent, version, **data)

    async def _execute(
        self, station: Station, request: CallRequest, ticket: Ticket | None = None, delay: float = 0.0
    ) -> None:
        try:
            if delay > 0:  # a resume keeps the spacing of calls made anew (see ReplayOrder.delay)
                await asyncio.sleep(delay)
            if station.tooled:
                result = await self.tools.run(station, request, lambda first: self._first(station, first, ticket))
            elif request.shared:
                result = await self._listened(station, request, ticket)
            else:
                result = await station.provider.call(request)
            if isinstance(result.output, str):
                if not result.output.isascii():  # a prompt, digest or journal must be able to encode it
                    result.output = writable_text(result.output)
            else:  # data (a python agent's, say): JSON's numbers only
                _refuse_non_finite(station.name, result.output)
            message = broadcast_of(station.name, request, result)
        except asyncio.CancelledError:
            raise
        except BusError as exc:  # the calls' transport is gone: no station is at fault
            self.state.interrupt(exc.message)
            return
        except AccessError as exc:  # it reached beyond what it declared: refused, and it fails
            self.refused(station, request.version, exc)
            message = Broadcast(station.name, request.version, False, error=said(exc))
        except HctError as exc:  # a provider's failure fails the station, not the engine
            message = Broadcast(station.name, request.version, False, error=said(exc))
        except Exception as exc:
            message = Broadcast(station.name, request.version, False, error=f"{type(exc).__name__}: {exc}")
        try:
            await self.bus.publish(message)
        except Exception as exc:  # a fault while committing ends the run with it instead of hanging it
            self.state.fault(exc)

    async def _first(self, station: Station, request: CallRequest, ticket: Ticket | None) -> CallResult:
        """A tool loop's first round: listened for when it has a shared prefix, as any call is."""
        if request.shared:
            return await self._listened(station, request, ticket)
        return await station.provider.call(request)

    async def _listened(self, station: Station, request: CallRequest, ticket: Ticket | None) -> CallResult:
        """A call with a shared prefix: it waits for the prefix's cache as its tempo allows, and
        as it ends, lets go of the calls that waited for its own."""
        try:
            if ticket is not None:
                await self.listening.wait(ticket, station, request)
            return await station.provider.call(request)
        finally:
            self.listening.settled(station)

    async def warm_up(self, station: Station, request: CallRequest) -> None:
        """A one-token call that writes the prompt cache of ``request``'s prefix (listening)."""
        warm = CallRequest(
            replace(request.agent, max_tokens=1),
            request.model,
            request.tier,
            WARM_UP_PROMPT,
            request.system,
            request.version,
            request.attempt,
            purpose="warm_up",
            shared=request.shared,
        )
        message = broadcast_of(station.name, warm, await station.provider.call(warm))
        station.record.warm_ups.append(message)
        state = self.state
        state.governor.settle(0.0, message.result.cost_usd)
        state.spent_usd += message.result.cost_usd
        if state.observers:
            self.emit_result(message, "warm_up")

    def refused(self, station: Station, version: int, exc: AccessError) -> None:
        if self.state.observers:
            self.state.emit("refused", station.name, version, reason=said(exc))

    async def publish(self, message: Broadcast) -> None:
        try:
            await self.bus.publish(message)
        except Exception as exc:
            self.state.fault(exc)

    def emit_result(self, message: Broadcast, purpose: str) -> None:
        """Journal a call's result (what a resume answers from, what ``hct show`` lists)."""
        data = message.to_data()
        if purpose != "call":
            data["purpose"] = purpose
        self.state.emit("result", message.station, message.version, **data)

    def cancel(self, station: Station) -> None:
        """Cancel ``station``'s call in flight, if any: its unit is free and its reservation gone."""
        if station.task is None:
            return
        station.task.cancel()
        station.task = None
        self.listening.settled(station)  # a call cancelled before it ran never reached its own finally
        station.unit.in_flight -= 1
        self.state.governor.settle(station.reserved, 0.0)
        station.reserved = 0.0
        station.restored = False

    async def judge(self, station: Station, request: CallRequest) -> Broadcast:
        """One judge call for a gate of ``station``: answered from the journal on a resume, priced, journaled."""
        state = self.state
        replay = state.replay
        found = self.recall.get((station.name, request.version, "judge")) if self.recall is not None else None
        if found is not None:
            turn = replay.turn((station.name, request.version, "judge"))
            if turn is not None:
                await turn
            message = found.result
            station.record.recalled.append(message)
            state.restored_usd += message.result.cost_usd
        else:
            provider = self._hands.judge_provider or self._first_model_provider()
            delay = replay.delay() if replay.active else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            message = broadcast_of(station.name, request, await provider.call(request))
            held = replay.wait()
            if held is not None:
                await held
            state.spent_usd += message.result.cost_usd
            if state.observers:
                self.emit_result(message, "judge")
        station.record.checks.append(message)
        state.governor.settle(0.0, message.result.cost_usd)
        return message

    def _first_model_provider(self) -> Provider:
        for spec in self.state.program.stations.values():
            if spec.agent.kind == "llm":
                return self._hands.provider_for(spec)
        raise ProviderError("no model provider is available for the judge", hint="Pass judge_provider.")
