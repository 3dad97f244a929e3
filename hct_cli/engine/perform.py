"""The perform loop: reservation stations, functional units and the common data bus.

Each station waits for the tags it needs. When a station is released by the dispatch policy and
a functional unit of its tier is free, it is issued: its prompt is rendered from the operands it
captured, and its provider runs as an asyncio task. The task's result goes onto the bus under a
versioned tag ``station@version``; the scheduler, subscribed to the bus, commits it (shared state
through :mod:`hct_cli.engine.shared`, operand capture by dependents) and releases whatever became
ready. Nothing here knows which policy, bus or provider it is driving.

Between a result and its commit stands the agent's fermata, if it has one. A gate that takes
time (a python predicate, an LLM judge, a person) holds the result; with ``speculate`` (or on an
``attacca`` edge) dependents fire on it anyway, their own results buffered until it commits, and
are squashed if it does not. A ``downbeat`` checkpoints shared state once every agent declared
before it has committed; a ``caesura`` stops the run and rolls back to the last checkpoint.

On a resume, calls whose results the journal holds (``recall``) are answered from it, never
paid again; everything else runs as it would have.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import heapq
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hct_cli.bus.base import Broadcast, Bus
from hct_cli.bus.memory import MemoryBus
from hct_cli.engine.accounting import critical_path, frontier_cost, price_worst_cases
from hct_cli.engine.checks import Verdict
from hct_cli.engine.coherence import Checkpoint
from hct_cli.engine.context import ContextFitter, Tokenizer, composer
from hct_cli.engine.dispatch import DispatchPolicy, make_policy
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.governor import Decision, Governor, worst_case_usd
from hct_cli.engine.listening import Listening, Ticket
from hct_cli.engine.paging import Cut, Layout
from hct_cli.engine.replay import ReplayOrder
from hct_cli.engine.result import AgentRecord, RunResult
from hct_cli.engine.shared import SharedState
from hct_cli.engine.speculation import Speculation
from hct_cli.engine.station import Station, by_priority
from hct_cli.engine.units import Unit
from hct_cli.errors import AccessError, AgentError, BusError, HctError
from hct_cli.events import Event, Observer
from hct_cli.jsonio import non_finite, writable_text
from hct_cli.models import model_info
from hct_cli.program.checks import SchemaRefs
from hct_cli.program.compile import Program, StationSpec
from hct_cli.program.routing import Route, fallbacks_of
from hct_cli.program.window import frame_text
from hct_cli.providers.base import CallRequest, CallResult, Provider, ProviderError, broadcast_of
from hct_cli.redact import Redactor
from hct_cli.score.model import Check, Fermata
from hct_cli.score.template import compile_template, render_compiled, shown
from hct_cli.store.cache import Predictors

if TYPE_CHECKING:
    from hct_cli.store.runs import RecalledCall

__all__ = ["Performer", "perform"]

ProviderFor = Callable[[StationSpec], Provider]
_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})


#: What a warm-up call asks: one token, after the prefix it writes to the cache.
WARM_UP_PROMPT = "Reply with the single word OK."
#: Passes of a vamp that gives no ``max`` (lint warns about it).
_VAMP_CAP = 16


def _said(exc: HctError) -> str:
    """An agent's error as its record and events show it: what went wrong, and what to do."""
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


def _digest(request: CallRequest) -> str:
    """The identity of a call's request, journaled so that a resume can tell it is the same call."""
    text = f"{request.model}\x1f{request.system}\x1e{request.user_text}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Performer:
    """Runs one program once. Create a new one for every run."""

    def __init__(
        self,
        program: Program,
        provider_for: ProviderFor,
        *,
        inputs: Mapping[str, Any] | None = None,
        dispatch: str = "reactive",
        bus: Bus | None = None,
        observers: Sequence[Observer] = (),
        budget_usd: float | None = None,
        run_id: str | None = None,
        coherence: str | None = None,
        max_replays: int = 3,
        gates: Gatekeeper | None = None,
        judge_provider: Provider | None = None,
        predictors: Predictors | None = None,
        recall: Mapping[tuple[str, int, str], RecalledCall] | None = None,
        start_versions: Mapping[str, int] | None = None,
        digests: bool = False,
        tokenizer: Tokenizer | None = None,
        redactor: Redactor | None = None,
        listening: bool = True,
        spent_before_usd: float = 0.0,
    ) -> None:
        self.program = program
        self.inputs = dict(inputs or {})
        self.dispatch = dispatch
        self.bus: Bus = bus if bus is not None else MemoryBus()
        self.observers = list(observers)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._frame = frame_text(program.score.reference_frame)
        # Secrets of the environment never reach a result or an event, so no observer sees them.
        self.redactor = redactor if redactor is not None else Redactor.from_environ()
        self._redacting = bool(self.redactor)
        specs = program.stations
        self._n = len(specs)
        self.records = {
            name: AgentRecord(route_model=spec.route.model, tier=spec.route.tier) for name, spec in specs.items()
        }
        self._units = {tier: Unit(spec.concurrency, spec.rpm, spec.tpm) for tier, spec in program.tiers.items()}
        self._free_unit = Unit(None, None, None)  # models pinned outside any tier, python, shell
        self._stations = {
            name: Station(spec, self.records[name], self._unit(spec), provider_for(spec))
            for name, spec in specs.items()
        }
        for station in self._stations.values():
            station.dependents = tuple(self._stations[d] for d in station.spec.dependents)
            # Templates compile before the run, so the makespan measures scheduling, not Jinja.
            prompt = station.agent.prompt
            if prompt is not None and "{{" in prompt:
                station.template = compile_template(prompt)
        self.context = ContextFitter(self._frame, program.tiers, self._stations, tokenizer)
        for name, version in (start_versions or {}).items():
            if name in self._stations:  # a resume after a caesura: squashed versions are not reused
                self._stations[name].version = version
        self._fallbacks = {tier: fallbacks_of(program.tiers, tier) for tier in program.tiers}
        if gates is None:
            score_dir = program.score.base_dir if program.score.path is not None else None
            gates = Gatekeeper(tiers=program.tiers, refs=SchemaRefs(score_dir))
        self.gates = gates
        self.gates.fit = self.context.fit_request
        self.listening = Listening(self._emit if self.observers else None, self._warm_up, enabled=listening)
        self._judge_provider = judge_provider
        self._provider_for = provider_for
        self.speculation = Speculation(program.score.name, predictors if predictors is not None else Predictors())
        self._recall = dict(recall) if recall else None
        # What the run cost: every result paid for, in this segment and (journaled) the earlier ones.
        self._spent_before = spent_before_usd
        self.spent_usd = spent_before_usd
        self._restored_usd = 0.0  # of it, what journaled results delivered again in this segment cost
        self._digests = digests or self._recall is not None
        # A recall's order is the order its results first arrived in: a resume delivers them so.
        arrivals = [
            (key, found.arrived_s) for key, found in (self._recall or {}).items() if key[2] in ("call", "judge")
        ]
        self._replay = ReplayOrder(
            arrivals, self._only_replay_moves, self._now, self._emit if self.observers else None, self._replay_ended
        )
        self._commits = 0
        self._caesura: dict[str, Any] | None = None
        self.coherence = coherence or program.score.coherence
        self.shared = SharedState(
            {k: spec.initial for k, spec in program.score.state.items()},
            frozenset(program.score.reference_frame),
            self.coherence,
            max_replays,
            self._emit if self.observers else None,
            self._stations,
        )
        # Before the run a station has no operands yet: the estimate counts its prompt, inputs and state.
        self.governor = Governor(program, budget_usd, lambda spec: self._prompt_tokens(self._stations[spec.name]))
        if not self._replay.active:
            self._replay_ended()  # nothing to deliver again: the governor starts from the journal's spend
        # Until a downbeat checkpoints, a caesura rolls back to the initial state.
        self._checkpoint: tuple[int, int, Checkpoint] = (0, 0, self.shared.directory.checkpoint())
        self._queue: list[tuple[tuple[int, float, int], str]] = []
        self._settled = 0
        self._status = "completed"
        self._stop_issuing = False
        self.interruption: str | None = None  # why the run ended interrupted, when it was not asked to
        self._paused = False
        self._held_back: list[str] = []  # released while paused, in release order
        self._t0: float | None = None
        self._last_settle = 0.0  # when the last result committed or failed, or the run stopped: the makespan
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        order = {name: i for i, name in enumerate(program.order)}
        self.policy: DispatchPolicy = make_policy(dispatch, self._release, order)
        # Prices load before the run (the price map is read once, on first use).
        for spec in specs.values():
            model_info(spec.route.model)

    # -- events ----------------------------------------------------------------------------

    def _now(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def _emit(self, kind: str, station: str | None = None, version: int = 0, **data: Any) -> None:
        if self._redacting:
            data = self.redactor.data(data)
        event = Event(kind, self._now(), station, version, data)
        for observer in self.observers:
            observer(event)

    # -- issue -----------------------------------------------------------------------------

    def _unit(self, spec: StationSpec) -> Unit:
        if spec.agent.kind in ("python", "shell"):
            return self._free_unit
        return self._unit_of_tier(spec.route.tier)

    def _unit_of_tier(self, tier: str | None) -> Unit:
        return self._units.get(tier, self._free_unit) if tier is not None else self._free_unit

    def _release(self, name: str) -> None:
        """The policy lets ``name`` go: issue it now if a unit is free, else queue it."""
        station = self._stations[name]
        if self._stop_issuing:
            self._skip(name, "the run stopped issuing")
            return
        if self._paused:  # released in full (tacet check, locks) when the run resumes
            self._held_back.append(name)
            return
        if station.agent.tacet_if is not None and not station.tacet_checked and self._tacet_holds(station):
            return
        if station.hold and not self.shared.lock(station):
            return  # granted later, in FIFO order, when a holder commits
        if not self._queue and self._try_issue(station):
            return
        station.queued = True
        heapq.heappush(self._queue, (station.spec.priority, name))

    def _drain(self) -> None:
        """Issue queued stations, highest priority first, while units allow."""
        if self._paused:
            return
        blocked: list[tuple[tuple[int, float, int], str]] = []
        while self._queue:
            item = heapq.heappop(self._queue)
            station = self._stations[item[1]]
            if not station.queued:
                continue  # withdrawn while it waited (squashed)
            if self._stop_issuing:
                station.queued = False
                self._skip(item[1], "the run stopped issuing")
                continue
            if self._try_issue(station):
                station.queued = False
            else:
                blocked.append(item)
        for item in blocked:
            heapq.heappush(self._queue, item)

    def _try_issue(self, station: Station) -> bool:
        """Issue ``station`` if its unit allows; False leaves it queued."""
        if self._recall is not None:
            found = self._recall.get((station.name, station.version + 1, "call"))
            if found is not None and self._restore(station, found):
                return True
        unit = station.unit
        decision: Decision | None = None
        if station.agent.kind == "llm" and self.governor.steers(station.name):
            decision = self.governor.decide(station.spec, self._prompt_tokens(station))
            if decision.stop is not None:
                if self.governor.reserved > 1e-12:
                    return False  # calls in flight may cost less than reserved: decide again when they settle
                self._budget_stop(station, decision.stop)
                return True
            if decision.route.tier != station.route.tier:
                unit = self._unit_of_tier(decision.route.tier)
        if unit.limit is not None and unit.in_flight >= unit.limit:
            return False
        if unit.rpm is not None or unit.tpm is not None:
            now = time.perf_counter()
            wait = unit.wait_s(now, station.agent.max_tokens)
            if wait > 0:
                self._wake_in(wait)
                return False
            unit.take(now, station.agent.max_tokens)
        unit.in_flight += 1
        station.unit = unit
        if decision is not None:
            self._apply(station, decision)
        self._issue(station)
        return True

    def _apply(self, station: Station, decision: Decision) -> None:
        """Route the call as the governor decided and hold its worst case against the budget."""
        for kind, data in decision.events:
            self._emit(kind, station.name, station.version + 1, **data)
        station.route = decision.route
        station.reserved = decision.worst_case_usd
        station.record.worst_case_usd = decision.worst_case_usd
        station.record.tier = decision.route.tier
        station.record.route_model = decision.route.model
        self.governor.reserve(decision)

    def _budget_stop(self, station: Station, reason: str) -> None:
        """Nothing cheaper fits: stop issuing, keep every result so far."""
        self._status = "budget_exhausted"
        self._stop_issuing = True
        self._emit("budget_stop", station.name, station.version + 1, reason=reason)
        self._skip(station.name, reason)

    def _prompt_tokens(self, station: Station) -> int:
        """Prompt tokens expected of the next call, operands included (about four characters a token)."""
        figures = station.agent.simulate
        if figures.prompt_tokens is not None:
            return figures.prompt_tokens
        prompt = station.agent.prompt or ""
        size = len(self._frame) + len(prompt)
        if station.template is not None:
            size += sum(len(str(message.output)) for message in station.operands.values())
            size += sum(len(str(value)) for name, value in self.inputs.items() if f"inputs.{name}" in prompt)
            size += sum(len(str(self.shared.value(key))) for key in station.agent.reads)
        return max(1, size // 4)

    def _wake_in(self, delay: float) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()

            def wake() -> None:
                self._timer = None
                self._drain()
                self._replay.poke()

            self._timer = loop.call_later(delay, wake)

    def _start(self, station: Station) -> int:
        """A new execution of ``station``: the next tag version."""
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        station.version += 1
        record = station.record
        record.status = "running"
        record.version = station.version
        record.started_s = now - self._t0
        return station.version

    def _issue(self, station: Station) -> None:
        version = self._start(station)
        try:
            request = self._request(station, version)
        except HctError as exc:  # the prompt cannot fit its model's window: the station fails
            error = _said(exc)
            station.task = self._loop.create_task(self._publish(Broadcast(station.name, version, False, error=error)))
            return
        except Exception as exc:  # a prompt that cannot be rendered fails its station, not the run
            error = f"the prompt could not be rendered: {type(exc).__name__}: {exc}"
            station.task = self._loop.create_task(self._publish(Broadcast(station.name, version, False, error=error)))
            return
        if request.paged or station.record.paged:
            station.record.paged = [cut.to_data() for cut in request.paged]
        if self.observers:
            if request.paged:
                self._emit("page", station.name, version, model=request.model, cuts=station.record.paged)
            if self._digests:
                self._emit(
                    "issue", station.name, version, model=request.model, tier=request.tier, digest=_digest(request)
                )
            else:
                self._emit("issue", station.name, version, model=request.model, tier=request.tier)
        ticket = self.listening.issue(station, request) if request.shared else None
        delay = self._replay.delay() if self._replay.active else 0.0
        station.task = self._loop.create_task(self._execute(station, request, ticket, delay))

    def _restore(self, station: Station, found: RecalledCall) -> bool:
        """Answer the next call of ``station`` from the journal if it is the same request; else False."""
        saved = station.route
        if found.model is not None:
            station.route = Route(found.tier, found.model, "journaled")
        try:
            request = self._request(station, station.version + 1)
        except Exception:
            request = None
        if request is None or (found.digest is not None and _digest(request) != found.digest):
            station.route = saved
            return False
        version = self._start(station)
        station.unit.in_flight += 1
        station.restored = True
        result = found.result
        if request.shared and (result.cache_write_tokens or result.cached_tokens):
            # Its prefix is in the provider's cache: the journaled call wrote or read it.
            self.listening.recalled(request)
            recalled = getattr(station.provider, "recalled", None)
            if recalled is not None:
                recalled(request)
        if self.observers:
            self._emit("issue", station.name, version, model=request.model, tier=request.tier, restored=True)
        station.task = self._loop.create_task(self._publish_recalled(station.name, version, found.result))
        return True

    async def _publish_recalled(self, name: str, version: int, message: Broadcast) -> None:
        """A journaled result, published in its turn (the order it first arrived in)."""
        turn = self._replay.turn((name, version, "call"))
        if turn is not None:
            await turn
        await self._publish(message)

    def _replay_ended(self) -> None:
        """Earlier segments paid for results this one does not deliver again (squashed by a
        caesura, warm-ups, a path that went another way): the governor counts them from now on."""
        self.governor.spent += max(0.0, self._spent_before - self._restored_usd)

    def _only_replay_moves(self) -> bool:
        """Whether nothing but the replay order can move the run: every call, check and timer is
        done or waits for its turn (then a journaled result that is never asked for ends the order)."""
        if self._paused or self._timer is not None:
            return False
        live = 0
        for station in self._stations.values():
            for task in (station.task, station.gate_task):
                if task is not None and not task.done():
                    live += 1
        return live <= self._replay.waiting

    def _request(self, station: Station, version: int) -> CallRequest:
        agent = station.agent
        template = station.template
        # Snapshot the reads (under hold, also own the writes) before rendering from them.
        state = self.shared.read(station) if station.shared else None
        context: Mapping[str, Any] = _NO_CONTEXT
        if template is not None or agent.reads or agent.kind != "llm":
            cues = {name: message.output for name, message in station.operands.items()}
            context = (
                {"cues": cues, "inputs": self.inputs, "state": state}
                if agent.reads
                else {"cues": cues, "inputs": self.inputs}
            )
            if agent.kind == "python":
                context = {"state": {}, **context, "reference_frame": self.program.score.reference_frame}
        feedback = station.feedback
        previous: str | None = None
        if agent.vamp is not None and station.iteration > 1 and station.record.earlier:
            previous = shown(station.record.earlier[-1].output)

        hoisted = self.context.hoisted(station, context) if template is not None and agent.kind == "llm" else ()

        compose = None
        if hoisted or feedback is not None or previous is not None:
            compose = composer(station, context, hoisted, feedback, previous)
            shared, prompt = compose(_NO_CONTEXT)
        else:  # the common case, spelled out: no layout to build
            shared, prompt = "", render_compiled(template, context) if template is not None else agent.prompt or ""
        cuts: tuple[Cut, ...] = ()
        if (
            agent.kind == "llm"
            and 4 * (len(self._frame) + len(shared) + len(prompt)) + 64 > self.context.floor
            and not self.context.fits_surely(station, shared, prompt)
        ):
            compose = compose or composer(station, context, hoisted, feedback, previous)
            fitted = self.context.fit(station, context, compose, Layout(shared, prompt))
            if fitted is not None:
                (shared, prompt), cuts = fitted.layout, fitted.cuts
        route = station.route
        fallbacks = self._fallbacks.get(route.tier, ()) if route.tier is not None else ()
        if fallbacks and self.governor.active:
            # Under a budget a fallback may not cost more than the worst case reserved for the call.
            tokens = self._prompt_tokens(station)
            fallbacks = tuple(
                f for f in fallbacks if worst_case_usd(f.model, tokens, agent.max_tokens) <= station.reserved
            )
        # Each execution of a station is one attempt: a retry, a replay or a vamp pass draws anew.
        request = CallRequest(
            agent,
            route.model,
            route.tier,
            prompt,
            self._frame,
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
            request.affinity = next((m.worker for m in station.operands.values() if m.worker is not None), None)
        return request

    def _report(self, agent: str, version: int, kind: str, data: dict[str, Any]) -> None:
        """A provider's word about a call in flight (a retry, a fallback): an event."""
        if self.observers:
            self._emit(kind, agent, version, **data)

    async def _execute(
        self, station: Station, request: CallRequest, ticket: Ticket | None = None, delay: float = 0.0
    ) -> None:
        try:
            if delay > 0:  # a resume keeps the spacing of calls made anew (see ReplayOrder.delay)
                await asyncio.sleep(delay)
            if request.shared:
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
            self._interrupt(exc.message)
            return
        except AccessError as exc:  # it reached beyond what it declared: refused, and it fails
            self._refused(station, request.version, exc)
            message = Broadcast(station.name, request.version, False, error=_said(exc))
        except HctError as exc:  # a provider's failure fails the station, not the engine
            message = Broadcast(station.name, request.version, False, error=_said(exc))
        except Exception as exc:
            message = Broadcast(station.name, request.version, False, error=f"{type(exc).__name__}: {exc}")
        try:
            await self.bus.publish(message)
        except Exception as exc:  # a fault while committing ends the run with it instead of hanging it
            self._fault(exc)

    async def _listened(self, station: Station, request: CallRequest, ticket: Ticket | None) -> CallResult:
        """A call with a shared prefix: it waits for the prefix's cache as its tempo allows, and
        as it ends, lets go of the calls that waited for its own."""
        try:
            if ticket is not None:
                await self.listening.wait(ticket, station, request)
            return await station.provider.call(request)
        finally:
            self.listening.settled(station)

    async def _warm_up(self, station: Station, request: CallRequest) -> None:
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
        self.governor.settle(0.0, message.cost_usd)
        self.spent_usd += message.cost_usd
        if self.observers:
            self._emit_result(message, "warm_up")

    def _refused(self, station: Station, version: int, exc: AccessError) -> None:
        if self.observers:
            self._emit("refused", station.name, version, reason=_said(exc))

    async def _publish(self, message: Broadcast) -> None:
        try:
            await self.bus.publish(message)
        except Exception as exc:
            self._fault(exc)

    def _interrupt(self, reason: str) -> None:
        """Stop issuing and end the run ``interrupted``: what committed is journaled, what was in
        flight is lost, and ``--resume`` continues from there."""
        if self._done is None or self._done.done():
            return
        self._status = "interrupted"
        self._stop_issuing = True
        self._last_settle = self._now()
        self.interruption = reason
        if self.observers:
            self._emit("interrupt", reason=reason)
        self._done.set_result(None)

    def _fault(self, exc: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def fail(self, exc: Exception) -> None:
        """End the run with ``exc`` raised from :meth:`run`: an observer cannot go on (the journal
        cannot write), so going on would pay for calls nothing records."""
        self._fault(exc)

    # -- commit ----------------------------------------------------------------------------

    def _on_broadcast(self, message: Broadcast) -> None:
        station = self._stations.get(message.station)
        if station is None or message.version != station.version or station.record.status != "running":
            return  # a duplicate or a superseded version: commits are idempotent per tag
        if self._replay.active and not station.restored and self._replay.hold(lambda: self._on_broadcast(message)):
            return  # a new result on a resume: it first arrived after every journaled one
        station.task = None
        station.unit.in_flight -= 1
        if self._redacting:
            message.output = self.redactor.data(message.output)
            message.error = None if message.error is None else self.redactor.text(message.error)
        if station.agent.kind == "llm" and (self.governor.active or station.reserved):
            self.governor.settle(station.reserved, message.cost_usd)
            station.reserved = 0.0
        if station.restored:
            station.restored = False
            station.record.recalled.append(message)
            self._restored_usd += message.cost_usd
        else:
            self.spent_usd += message.cost_usd
            if self.observers:
                self._emit_result(message, "call")
        if station.unconfirmed:
            # It fired on results not yet committed: keep its own (even a failure) until they are.
            station.buffered = message
            station.record.status = "speculative"
        elif not message.ok:
            self._fail(station, message.error or "failed")
        else:
            self._land(station, message)
        if self._queue:
            self._drain()

    def _emit_result(self, message: Broadcast, purpose: str) -> None:
        """Journal a call's result (what a resume answers from, what ``hct show`` lists)."""
        data = message.to_data()
        if purpose != "call":
            data["purpose"] = purpose
        self._emit("result", message.station, message.version, **data)

    def _land(self, station: Station, message: Broadcast) -> None:
        """A result whose inputs are all committed: through its fermata, then commit."""
        record = station.record
        record.finished_s = self._last_settle = time.perf_counter() - self._t0  # type: ignore[operator]
        record.result = message
        if message.tier is not None:
            record.tier = message.tier  # a fallback may have moved the call
        fermata = station.agent.fermata
        if fermata is not None:
            verdict = self.gates.quick(station.agent, fermata.check, message.output, message.version, fermata)
            if verdict is None:  # the gate takes time: hold the result, maybe speculate past it
                record.status = "held"
                if self.observers:
                    self._emit("fermata", station.name, message.version, hold=fermata.hold)
                self._decide_later(
                    station,
                    fermata.check,
                    message.output,
                    message.version,
                    lambda verdict: self._gate_resolved(station, message, fermata, verdict),
                    fermata,
                )
                self._speculate(station, message)
                return
            if not self._gated(station, message, fermata, verdict):
                return
        self._commit(station, message)

    def _decide_later(
        self,
        station: Station,
        check: Check,
        value: Any,
        version: int,
        on_verdict: Callable[[Verdict], None],
        fermata: Fermata | None = None,
    ) -> None:
        """Decide a check that takes time in a task of its own; ``on_verdict`` runs with the
        verdict unless a caesura moved the station on meanwhile."""
        expected = (station.record.status, station.version)
        station.gate_task = self._loop.create_task(
            self._decide(station, check, value, version, expected, on_verdict, fermata)
        )

    async def _decide(
        self,
        station: Station,
        check: Check,
        value: Any,
        version: int,
        expected: tuple[str, int],
        on_verdict: Callable[[Verdict], None],
        fermata: Fermata | None,
    ) -> None:
        try:
            verdict = await self.gates.decide(
                station.agent, check, value, version, lambda request: self._judge_call(station, request), fermata
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a check that breaks fails, it does not end the run
            verdict = Verdict(False, f"the check failed: {type(exc).__name__}: {exc}")
        station.gate_task = None
        self._replay.poke()
        if (station.record.status, station.version) != expected:
            return  # squashed by a caesura meanwhile
        on_verdict(verdict)
        if self._queue:
            self._drain()

    def _gate_resolved(self, station: Station, message: Broadcast, fermata: Fermata, verdict: Verdict) -> None:
        if not verdict.passed:
            self._squash_speculation(station)
        if self._gated(station, message, fermata, verdict):
            self._commit(station, message)

    async def _judge_call(self, station: Station, request: CallRequest) -> Broadcast:
        """One judge call for a gate of ``station``: answered from the journal on a resume, priced, journaled."""
        found = self._recall.get((station.name, request.version, "judge")) if self._recall is not None else None
        if found is not None:
            turn = self._replay.turn((station.name, request.version, "judge"))
            if turn is not None:
                await turn
            message = found.result
            station.record.recalled.append(message)
            self._restored_usd += message.cost_usd
        else:
            provider = self._judge_provider or self._first_model_provider()
            delay = self._replay.delay() if self._replay.active else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            message = broadcast_of(station.name, request, await provider.call(request))
            held = self._replay.wait()
            if held is not None:
                await held
            self.spent_usd += message.cost_usd
            if self.observers:
                self._emit_result(message, "judge")
        station.record.checks.append(message)
        self.governor.settle(0.0, message.cost_usd)
        return message

    def _first_model_provider(self) -> Provider:
        for spec in self.program.stations.values():
            if spec.agent.kind == "llm":
                return self._provider_for(spec)
        raise ProviderError("no model provider is available for the judge", hint="Pass judge_provider.")

    def _gated(self, station: Station, message: Broadcast, fermata: Fermata, verdict: Verdict) -> bool:
        """The fermata's verdict: True lets the result commit. On a failed check the station runs
        again (retry, or escalate one tier up), fails once its retries are spent, or stops the
        run (caesura)."""
        if self.observers:
            self._emit("gate", station.name, message.version, passed=verdict.passed, reason=verdict.reason)
        self.speculation.verdict(station, verdict.passed)
        if verdict.passed:
            station.feedback = None
            return True
        station.gate_failures += 1
        station.feedback = verdict.reason
        if fermata.on_fail == "caesura":
            self._stop(station, f"fermata failed: {verdict.reason}")
            return False
        if station.gate_failures > fermata.retries:
            self._fail(station, f"fermata failed {station.gate_failures} times: {verdict.reason}")
            return False
        self._let_go(station)
        if fermata.on_fail == "escalate":
            self.governor.boost(station.name)  # the next call goes one tier up
        self._again(station)
        return False

    # -- speculation -----------------------------------------------------------------------

    def _speculate(self, producer: Station, message: Broadcast) -> None:
        """Release dependents on a held result (``speculate``, or their ``attacca`` edge)."""
        captured, ready = self.speculation.capture(producer, message)
        if self.observers:
            for dependent in captured:
                self._emit("speculate", dependent.name, dependent.version + 1, on=message.tag)
        for dependent in ready:
            if self.observers:
                self._emit("ready", dependent.name)
            self.policy.ready(dependent.name)

    def _cancel_call(self, station: Station) -> None:
        """Cancel ``station``'s call in flight, if any: its unit is free and its reservation gone."""
        if station.task is None:
            return
        station.task.cancel()
        station.task = None
        self.listening.settled(station)  # a call cancelled before it ran never reached its own finally
        station.unit.in_flight -= 1
        self.governor.settle(station.reserved, 0.0)
        station.reserved = 0.0
        station.restored = False

    def _squash_speculation(self, producer: Station) -> None:
        """``producer``'s held result will not commit: squash what fired on it."""
        on = f"{producer.name}@{producer.version}"
        # Dependents whose call of this version is thrown away (in flight, or answered and
        # buffered): the journal counts that call squashed, not lost.
        called = {d.name for d in producer.spec_out if d.task is not None or d.buffered is not None}
        for dependent, cost in self.speculation.squash(producer):
            self._cancel_call(dependent)
            dependent.queued = False
            self._let_go(dependent)
            self.policy.withdraw(dependent.name)
            dependent.record.status = "waiting"
            if self.observers:
                self._emit(
                    "squash", dependent.name, dependent.version, on=on, cost_usd=cost, call=dependent.name in called
                )

    # -- commit ----------------------------------------------------------------------------

    def _commit(self, station: Station, message: Broadcast) -> None:
        """Commit a gated result: shared state, then the vamp's next pass or the cue."""
        cued: dict[str, list[str]] | None = None
        if station.shared:
            written = self._commit_state(station, message)
            if written is None:
                return
            cued = written
        vamp = station.agent.vamp
        if vamp is not None and station.iteration < (vamp.max or _VAMP_CAP):
            verdict = self.gates.quick(station.agent, vamp.until, message.output, message.version)
            if verdict is None:
                station.record.status = "held"
                self._decide_later(
                    station,
                    vamp.until,
                    message.output,
                    message.version,
                    lambda verdict: (
                        self._cue(station, message, cued)
                        if verdict.passed
                        else self._vamp_again(station, message, verdict.reason, cued)
                    ),
                )
                return
            if not verdict.passed:
                self._vamp_again(station, message, verdict.reason, cued)
                return
        self._cue(station, message, cued)

    def _vamp_again(self, station: Station, message: Broadcast, reason: str, cued: dict[str, list[str]] | None) -> None:
        if self.observers:
            self._emit(
                "vamp",
                station.name,
                message.version,
                iteration=station.iteration,
                cost_usd=message.cost_usd,
                reason=reason,
                keys=cued or {},
            )
        station.iteration += 1
        self._again(station)

    def _cue(
        self, station: Station, message: Broadcast, cued: dict[str, list[str]] | None, status: str = "done"
    ) -> None:
        """The result commits: broadcast it to every dependent and release those now ready."""
        record = station.record
        record.status = status
        self._last_settle = self._now()  # a gate may have held it since it landed
        observed = bool(self.observers)
        if observed:
            self._emit("cue", station.name, message.version, cost_usd=message.cost_usd, keys=cued or {})
        self._settled += 1
        self._commits += 1
        station.commit_seq = self._commits
        name = station.name
        confirmed = station.spec_out
        ready: list[Station] = []
        for dependent in station.dependents:
            if confirmed and self.speculation.confirm(dependent, name):
                continue  # it fired on this very result: a hit
            dependent.operands[name] = message
            dependent.waiting -= 1
            if dependent.waiting == 0:
                ready.append(dependent)
        if len(ready) > 1:
            ready.sort(key=by_priority)
        ready_now = self.policy.ready
        for dependent in ready:
            if observed:
                self._emit("ready", dependent.name)
            if dependent.agent.downbeat:
                self._downbeat(dependent)
            ready_now(dependent.name)
        if confirmed:
            station.spec_out = []
            for dependent in confirmed:
                buffered = dependent.buffered
                if buffered is not None and not dependent.unconfirmed:
                    dependent.buffered = None
                    dependent.record.status = "running"
                    if buffered.ok:
                        self._land(dependent, buffered)
                    else:
                        self._fail(dependent, buffered.error or "failed")
        self.policy.done(name)
        if self._settled >= self._n:
            self._check_done()

    def _again(self, station: Station) -> None:
        """Run ``station`` once more under a new tag version (a retry, a replay or a vamp pass)."""
        if station.spec_out:
            self._squash_speculation(station)
        record = station.record
        if record.result is not None:
            record.earlier.append(record.result)
            record.result = None
        record.status = "waiting"
        self._release(station.name)

    def _commit_state(self, station: Station, message: Broadcast) -> dict[str, list[str]] | None:
        """Check the station's reads, then write back; the cue map, or None when it does not commit now."""
        check = self.shared.check(station, message)
        if check.action == "replay":
            self._let_go(station)
            self._again(station)
            return None
        if check.action == "park":
            station.record.status = "parked"
            return None
        try:
            written = self.shared.write_back(station, message)
        except AccessError as exc:  # nothing of the result reaches shared state
            self._let_go(station)
            self._refused(station, message.version, exc)
            self._fail(station, _said(exc))
            return None
        if isinstance(written, str):
            self._fail(station, written)
            return None
        self._let_go(station)
        return written

    def _let_go(self, station: Station) -> None:
        """``station`` is done with shared state for now; resume whoever waited for its locks."""
        released = self.shared.let_go(station)
        for name in released.granted:
            granted = self._stations[name]
            granted.locked = True
            self.shared.end_wait(granted)
            self._release(name)
        for waiter, message in released.parked:
            waiter.record.status = "running"
            self.shared.end_wait(waiter)
            self._commit(waiter, message)

    # -- signals ---------------------------------------------------------------------------

    def _tacet_holds(self, station: Station) -> bool:
        """Check ``tacet_if`` once, when the station is first released: True when it does not run now."""
        tacet = station.agent.tacet_if
        assert tacet is not None
        station.tacet_checked = True
        cue = station.operands.get(tacet.cue)
        value = cue.output if cue is not None else None
        verdict = self.gates.quick(station.agent, tacet.check, value, station.version + 1)
        if verdict is None:
            self._decide_later(
                station,
                tacet.check,
                value,
                station.version + 1,
                lambda verdict: self._tacet(station, verdict.reason) if verdict.passed else self._release(station.name),
            )
            return True
        if verdict.passed:
            self._tacet(station, verdict.reason)
            return True
        return False

    def _tacet(self, station: Station, reason: str) -> None:
        """``tacet``: the agent rests; its tag resolves to null and dependents proceed."""
        self.governor.forget(station.name)
        version = self._start(station)
        if self.observers:
            self._emit("tacet", station.name, version, reason=reason)
        station.record.finished_s = self._now()
        self._cue(station, Broadcast(station.name, version, True, None), None, "tacet")

    def _downbeat(self, station: Station) -> None:
        """Every agent declared before ``station`` has committed: checkpoint shared state."""
        number = self._checkpoint[1] + 1
        checkpoint = self.shared.directory.checkpoint()
        self._checkpoint = (self._commits, number, checkpoint)
        if self.observers:
            self._emit("downbeat", station.name, station.version + 1, checkpoint=number, state=checkpoint.values())

    def _stop(self, culprit: Station | None, reason: str) -> None:
        """``caesura``: stop issuing, squash work in flight and work committed after the last
        checkpoint, restore that checkpoint; the run ends ``caesura``. ``culprit`` is the agent
        whose gate called it, or None when the conductor (a person) did."""
        self._status = "caesura"
        self._stop_issuing = True
        self._paused = False
        self._last_settle = self._now()
        after, number, checkpoint = self._checkpoint
        squashed: dict[str, int] = {}
        for station in self._stations.values():
            record = station.record
            self._cancel_call(station)
            if station.gate_task is not None and station.gate_task is not asyncio.current_task():
                station.gate_task.cancel()
            station.gate_task = None
            station.queued = False
            late = record.status in ("done", "tacet") and station.commit_seq > after
            if station is culprit or late or record.status in ("running", "held", "speculative", "parked"):
                squashed[station.name] = station.version
                for thrown in (record.result, station.buffered):
                    if thrown is not None:
                        record.squashed.append(thrown)
                record.result = station.buffered = None
                record.status = "squashed"
                record.error = reason if station is culprit else "squashed by the caesura"
            elif record.status == "waiting":
                record.status = "skipped"
                record.error = "the run stopped at a caesura"
        self.shared.directory.restore(checkpoint)
        who = culprit.name if culprit is not None else None
        self._caesura = {"agent": who, "reason": reason, "checkpoint": number, "squashed": squashed}
        if self.observers:
            version = culprit.version if culprit is not None else 0
            self._emit("caesura", who, version, reason=reason, checkpoint=number, squashed=squashed)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, station: Station, error: str) -> None:
        if station.spec_out:
            self._squash_speculation(station)
        record = station.record
        record.status = "failed"
        record.error = error
        record.finished_s = self._last_settle = self._now()
        self._status = "failed" if self._status == "completed" else self._status
        if self.observers:
            self._emit("fail", station.name, record.version, error=error)
        self._settled += 1
        self._let_go(station)
        self._skip_dependents(station)
        self.policy.done(station.name)
        self._check_done()

    def _skip(self, name: str, reason: str) -> None:
        station = self._stations[name]
        record = station.record
        if record.status in ("done", "failed", "skipped", "tacet"):
            return
        record.status = "skipped"
        record.error = reason
        self.governor.forget(name)
        if self.observers:
            self._emit("skip", name, reason=reason)
        self._settled += 1
        self.policy.done(name)
        self._let_go(station)  # a skipped holder must not keep others waiting for its locks
        self._skip_dependents(station)
        self._check_done()

    def _skip_dependents(self, origin: Station) -> None:
        frontier = [origin]
        while frontier:
            for dependent in frontier.pop().dependents:
                record = dependent.record
                if record.status == "waiting":
                    record.status = "skipped"
                    record.error = f"upstream {origin.name!r} did not complete"
                    self.governor.forget(dependent.name)
                    self._settled += 1
                    if self.observers:
                        self._emit("skip", dependent.name, reason=record.error)
                    frontier.append(dependent)

    def _check_done(self) -> None:
        if self._settled >= self._n and self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- the conductor's hands (the TUI's keys) ----------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop issuing: calls in flight finish and commit, stations released meanwhile wait for
        :meth:`resume` (nothing is evaluated for them, not even a ``tacet_if`` judge). Before the
        run starts, it starts paused."""
        if self._paused or self._stop_issuing or (self._done is not None and self._done.done()):
            return
        self._paused = True
        if self.observers:
            self._emit("pause")

    def resume(self) -> None:
        """Issue again, queued stations first (highest priority first)."""
        if not self._paused:
            return
        self._paused = False
        if self.observers:
            self._emit("resume")
        held, self._held_back = self._held_back, []
        for name in sorted(held, key=lambda n: self._stations[n].spec.priority):
            self._release(name)
        self._drain()
        self._replay.poke()

    def caesura(self, reason: str = "called by the conductor") -> bool:
        """Stop the run now, as a gate's ``on_fail: caesura`` would; False once the run has ended."""
        if self._done is None or self._done.done():
            return False
        self._stop(None, reason)
        return True

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.bus.subscribe(self._on_broadcast)
        if self.observers:
            self._emit("run_start", None, agents=self._n, dispatch=self.dispatch, run_id=self.run_id)
        stations = self.program.stations
        # Everything built so far (program, stations, records) lives for the whole run: move it
        # out of the collector's reach so full collections stay proportional to the garbage.
        gc.freeze()
        try:
            # Even with free units, issue order matters: the event loop runs one task at a time,
            # so the station with the longest remaining path goes first (list scheduling).
            for name in sorted(self.program.roots, key=lambda n: stations[n].priority):
                if self.observers:
                    self._emit("ready", name)
                if stations[name].agent.downbeat:
                    self._downbeat(self._stations[name])
                self.policy.ready(name)
            self.policy.start()
            if self._n == 0:
                self._done.set_result(None)
            await self._done
        except asyncio.CancelledError:
            self._status = "interrupted"
            self._last_settle = self._now()
            raise
        finally:
            for station in self._stations.values():
                for task in (station.task, station.gate_task):
                    if task is not None and not task.done():
                        task.cancel()
            gc.unfreeze()
            if self._timer is not None:
                self._timer.cancel()
        result = self.result()
        if self.observers:
            self._emit(
                "run_end",
                None,
                status=result.status,
                cost_usd=result.cost_usd,
                frontier_cost_usd=result.frontier_cost_usd,
            )
        return result

    def interrupted(self) -> RunResult:
        """The run as it stood when it was interrupted: everything committed so far."""
        if self._status != "interrupted":  # the run did not see it stop (a conductor's quit): now
            self._status = "interrupted"
            self._last_settle = self._now()
        return self.result()

    def result(self) -> RunResult:
        """The run as it stands (after an interruption too: the status says so)."""
        price_worst_cases(self._stations.values(), self._prompt_tokens)
        shared = self.shared
        return RunResult(
            run_id=self.run_id,
            status=self._status,
            dispatch=self.dispatch,
            makespan_s=self._last_settle,
            critical_path_s=critical_path(self.program, self.records),
            cost_usd=self.spent_usd,
            frontier_cost_usd=frontier_cost(self.program, self._stations.values()),
            stale_reads=shared.stale_reads,
            replays=shared.replays,
            holds=shared.holds,
            hold_s=shared.hold_s,
            coherence=self.coherence,
            speculated=self.speculation.hits,
            squashes=self.speculation.squashes,
            squashed_cost_usd=self.speculation.squashed_cost,
            caesura=self._caesura,
            agents=self.records,
            state=shared.state(),
        )


def _refuse_non_finite(agent: str, output: Any) -> None:
    where = non_finite(output)
    if where is not None:
        raise AgentError(
            f"agent {agent!r} answered a number that is not finite (NaN or infinity) at {where}",
            hint="A result is JSON data, which has no NaN or infinity: answer a finite number, null or text.",
        )


async def perform(program: Program, provider_for: ProviderFor, **options: Any) -> RunResult:
    """Run ``program`` once; see :class:`Performer` for the options."""
    return await Performer(program, provider_for, **options).run()
