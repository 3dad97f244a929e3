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

On a resume, calls whose results the journal holds (``ResumeState.recall``) are answered from it, never
paid again; everything else runs as it would have.

:class:`Performer` assembles a run and drives its loop; the concerns live apart and share one
:class:`~hct_cli.engine.run_state.RunState`: :class:`~hct_cli.engine.dispatch.Dispatcher` (what
issues next, on which unit), :class:`~hct_cli.engine.calls.Calls` (a call's request, execution
and result on the bus) and :class:`~hct_cli.engine.lifecycle.Lifecycle` (what a result does once
it lands).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from hct_cli.bus.base import Bus
from hct_cli.bus.memory import MemoryBus
from hct_cli.engine.accounting import critical_path, frontier_cost, price_worst_cases
from hct_cli.engine.calls import Calls
from hct_cli.engine.dispatch import Dispatcher, DispatchPolicy, TierUnits
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.governor import Governor
from hct_cli.engine.lifecycle import Lifecycle
from hct_cli.engine.listening import Listening
from hct_cli.engine.options import EngineOptions, Hands, ResumeState
from hct_cli.engine.replay import ReplayOrder
from hct_cli.engine.result import AgentRecord, RunResult
from hct_cli.engine.run_state import RunState
from hct_cli.engine.shared import SharedState
from hct_cli.engine.speculation import Speculation
from hct_cli.engine.station import Station
from hct_cli.events import Observer
from hct_cli.models import model_info
from hct_cli.program.checks import SchemaRefs
from hct_cli.program.compile import Program
from hct_cli.program.window import frame_text
from hct_cli.redact import Redactor
from hct_cli.score.template import compile_template
from hct_cli.store.cache import Predictors

__all__ = ["Performer", "perform"]

_DEFAULTS = EngineOptions()


class Performer:
    """Runs one program once. Create a new one for every run."""

    def __init__(
        self,
        program: Program,
        hands: Hands,
        *,
        inputs: Mapping[str, Any] | None = None,
        options: EngineOptions = _DEFAULTS,
        resume: ResumeState | None = None,
        bus: Bus | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.program = program
        self.dispatch = options.dispatch
        self.bus: Bus = bus if bus is not None else MemoryBus()
        self.run_id = options.run_id or uuid.uuid4().hex[:12]
        specs = program.stations
        records = {
            name: AgentRecord(route_model=spec.route.model, tier=spec.route.tier) for name, spec in specs.items()
        }
        units = TierUnits(program.tiers)
        stations = {
            name: Station(spec, records[name], units.of_station(spec), hands.provider_for(spec))
            for name, spec in specs.items()
        }
        for station in stations.values():
            station.dependents = tuple(stations[d] for d in station.spec.dependents)
            # Templates compile before the run, so the makespan measures scheduling, not Jinja.
            prompt = station.agent.prompt
            if prompt is not None and "{{" in prompt:
                station.template = compile_template(prompt)
        recall = dict(resume.recall) if resume is not None and resume.recall else None
        state = self.state = RunState(
            program,
            stations,
            inputs or {},
            frame_text(program.score.reference_frame),
            observers,
            hands.redactor if hands.redactor is not None else Redactor.from_environ(),
            resume.spent_before_usd if resume is not None else 0.0,
        )
        calls = self._calls = Calls(
            state,
            hands,
            self.bus,
            recall,
            options.digests or recall is not None,
            options.listening,
            resume.tools if resume is not None else None,
        )
        self.context = calls.context
        for name, version in (resume.start_versions if resume is not None else {}).items():
            if name in stations:  # a resume after a caesura: squashed versions are not reused
                stations[name].version = version
        gates = hands.gates
        if gates is None:
            score_dir = program.score.base_dir if program.score.path is not None else None
            gates = Gatekeeper(tiers=program.tiers, refs=SchemaRefs(score_dir))
        self.gates = gates
        gates.fit = calls.context.fit_request
        gates.prepare(spec.agent for spec in specs.values())  # before the run's clock starts
        predictors = hands.predictors if hands.predictors is not None else Predictors()
        self.speculation = Speculation(program.score.name, predictors)
        # A recall's order is the order its results first arrived in: a resume delivers them so.
        arrivals = [(key, found.arrived_s) for key, found in (recall or {}).items() if key[2] in ("call", "judge")]
        emit = state.emit_if_observed()
        state.replay = ReplayOrder(arrivals, state.only_replay_moves, state.now, emit, state.replay_ended)
        self.coherence = options.coherence or program.score.coherence
        state.shared = SharedState(
            {k: spec.initial for k, spec in program.score.state.items()},
            frozenset(program.score.reference_frame),
            self.coherence,
            options.max_replays,
            emit,
            stations,
            {k: spec.schema for k, spec in program.score.state.items() if spec.schema is not None},
        )
        # Before the run a station has no operands yet: the estimate counts its prompt, inputs and state.
        state.governor = Governor(program, options.budget_usd, lambda spec: state.prompt_tokens(stations[spec.name]))
        if not state.replay.active:
            state.replay_ended()  # nothing to deliver again: the governor starts from the journal's spend
        self._dispatcher = Dispatcher(state, calls, units, options.dispatch)
        self._lifecycle = Lifecycle(state, calls, self._dispatcher, gates, self.speculation)
        self._dispatcher.lifecycle = self._lifecycle
        # Prices load before the run (the price map is read once, on first use).
        for spec in specs.values():
            model_info(spec.route.model)

    # -- what the run shows of itself ---------------------------------------------------------

    @property
    def observers(self) -> list[Observer]:
        return self.state.observers

    @observers.setter
    def observers(self, observers: Sequence[Observer]) -> None:
        self.state.observers = list(observers)

    @property
    def inputs(self) -> dict[str, Any]:
        return self.state.inputs

    @property
    def records(self) -> dict[str, AgentRecord]:
        return self.state.records

    @property
    def shared(self) -> SharedState:
        return self.state.shared

    @property
    def governor(self) -> Governor:
        return self.state.governor

    @property
    def listening(self) -> Listening:
        return self._calls.listening

    @property
    def policy(self) -> DispatchPolicy:
        return self._dispatcher.policy

    @property
    def spent_usd(self) -> float:
        return self.state.spent_usd

    @property
    def interruption(self) -> str | None:
        """Why the run ended interrupted, when it was not asked to."""
        return self.state.interruption

    # -- the conductor's hands (the TUI's keys) ----------------------------------------------

    @property
    def paused(self) -> bool:
        return self.state.paused

    def pause(self) -> None:
        """Stop issuing: calls in flight finish and commit, stations released meanwhile wait for
        :meth:`resume` (nothing is evaluated for them, not even a ``tacet_if`` judge). Before the
        run starts, it starts paused."""
        state = self.state
        if state.paused or state.stop_issuing or (state.done is not None and state.done.done()):
            return
        state.paused = True
        if state.observers:
            state.emit("pause")

    def resume(self) -> None:
        """Issue again, queued stations first (highest priority first)."""
        state = self.state
        if not state.paused:
            return
        state.paused = False
        if state.observers:
            state.emit("resume")
        self._dispatcher.release_held_back()
        state.replay.poke()

    def caesura(self, reason: str = "called by the conductor") -> bool:
        """Stop the run now, as a gate's ``on_fail: caesura`` would; False once the run has ended."""
        if self.state.done is None or self.state.done.done():
            return False
        self._lifecycle.stop(None, reason)
        return True

    def fail(self, exc: Exception) -> None:
        """End the run with ``exc`` raised from :meth:`run`: an observer cannot go on (the journal
        cannot write), so going on would pay for calls nothing records."""
        self.state.fault(exc)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        state = self.state
        loop = state.loop = asyncio.get_running_loop()
        done = state.done = loop.create_future()
        self.bus.subscribe(self._lifecycle.on_broadcast)
        if state.observers:
            state.emit("run_start", None, agents=state.n, dispatch=self.dispatch, run_id=self.run_id)
        stations = self.program.stations
        policy = self._dispatcher.policy
        # Everything built so far (program, stations, records) lives for the whole run: move it
        # out of the collector's reach so full collections stay proportional to the garbage.
        gc.freeze()
        self._calls.tools.prefetch()  # start the servers agents will call while the first calls run
        try:
            # Even with free units, issue order matters: the event loop runs one task at a time,
            # so the station with the longest remaining path goes first (list scheduling).
            for name in sorted(self.program.roots, key=lambda n: stations[n].priority):
                if state.observers:
                    state.emit("ready", name)
                if stations[name].agent.downbeat:
                    self._lifecycle.downbeat(state.stations[name])
                policy.ready(name)
            policy.start()
            if state.n == 0:
                done.set_result(None)
            await done
        except asyncio.CancelledError:
            state.status = "interrupted"
            state.last_settle = state.now()
            raise
        finally:
            for station in state.stations.values():
                for task in (station.task, station.gate_task):
                    if task is not None and not task.done():
                        task.cancel()
            self._calls.tools.settle()
            gc.unfreeze()
            if state.timer is not None:
                state.timer.cancel()
        result = self.result()
        if state.observers:
            state.emit(
                "run_end",
                None,
                status=result.status,
                cost_usd=result.cost_usd,
                frontier_cost_usd=result.frontier_cost_usd,
            )
        return result

    def interrupted(self) -> RunResult:
        """The run as it stood when it was interrupted: everything committed so far."""
        state = self.state
        if state.status != "interrupted":  # the run did not see it stop (a conductor's quit): now
            state.status = "interrupted"
            state.last_settle = state.now()
        return self.result()

    def result(self) -> RunResult:
        """The run as it stands (after an interruption too: the status says so)."""
        state = self.state
        stations = state.stations.values()
        price_worst_cases(stations, state.prompt_tokens)
        shared = state.shared
        return RunResult(
            run_id=self.run_id,
            status=state.status,
            dispatch=self.dispatch,
            makespan_s=state.last_settle,
            critical_path_s=critical_path(self.program, state.records),
            cost_usd=state.spent_usd,
            frontier_cost_usd=frontier_cost(self.program, stations),
            stale_reads=shared.stale_reads,
            replays=shared.replays,
            holds=shared.holds,
            hold_s=shared.hold_s,
            coherence=self.coherence,
            speculated=self.speculation.hits,
            squashes=self.speculation.squashes,
            squashed_cost_usd=self.speculation.squashed_cost,
            caesura=state.caesura,
            agents=state.records,
            state=shared.state(),
        )


async def perform(
    program: Program,
    hands: Hands,
    *,
    inputs: Mapping[str, Any] | None = None,
    options: EngineOptions = _DEFAULTS,
    resume: ResumeState | None = None,
    bus: Bus | None = None,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Run ``program`` once; see :class:`Performer` for the options."""
    performer = Performer(program, hands, inputs=inputs, options=options, resume=resume, bus=bus, observers=observers)
    return await performer.run()
