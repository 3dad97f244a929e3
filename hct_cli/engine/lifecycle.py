"""What happens when a result lands: its gate, its commit, and how a station's run ends.

A result that comes off the bus goes through its agent's fermata, if it has one (a check that
takes time holds it, maybe with dependents speculating past it), then commits: shared state is
written back, a vamp runs its next pass, or the result is cued to every dependent and those now
ready are released. A station can also rest (``tacet``), fail, be skipped (its dependents with
it) or be squashed, by a failed gate under speculation or by a caesura that stops the run and
rolls shared state back to the last ``downbeat``. :class:`Lifecycle` does all of it;
:class:`Verdicts` decides the checks (fermata, ``vamp.until``, ``tacet_if``) that take time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.engine.calls import Calls, said
from hct_cli.engine.checks import Verdict, typed_output, valid
from hct_cli.engine.coherence import Checkpoint
from hct_cli.engine.dispatch import Dispatcher
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.run_state import RunState
from hct_cli.engine.speculation import Speculation
from hct_cli.engine.station import Station, by_priority
from hct_cli.errors import AccessError
from hct_cli.score.model import Check, Fermata

__all__ = ["Lifecycle", "Verdicts"]

#: What a write that breaks a state key's schema leads to, for an agent with no ``output:``.
_STATE_GATE = Fermata(Check())

#: Passes of a vamp that gives no ``max`` (lint warns about it).
_VAMP_CAP = 16


class Verdicts:
    """Gates a landed result through its fermata, and decides checks that take time in tasks of
    their own (a python predicate, an LLM judge, a person)."""

    __slots__ = ("_calls", "_life", "gates", "state")

    def __init__(self, life: Lifecycle, gates: Gatekeeper) -> None:
        self._life = life
        self.state = life.state
        self._calls = life.calls
        self.gates = gates

    def land(self, station: Station, message: Broadcast) -> None:
        """A result whose inputs are all committed: through its fermata, then commit."""
        record = station.record
        state = self.state
        record.finished_s = state.last_settle = time.perf_counter() - state.t0  # type: ignore[operator]
        record.result = message
        if message.result.tier is not None:
            record.tier = message.result.tier  # a fallback may have moved the call
        if message.ok and not self._typed(station, message):
            return
        fermata = station.agent.fermata
        if fermata is not None:
            verdict = self.gates.quick(station.agent, fermata.check, message.result.output, message.version, fermata)
            if verdict is None:  # the gate takes time: hold the result, maybe speculate past it
                record.status = "held"
                if state.observers:
                    state.emit("fermata", station.name, message.version, hold=fermata.hold)
                self.decide_later(
                    station,
                    fermata.check,
                    message.result.output,
                    message.version,
                    lambda verdict: self._gate_resolved(station, message, fermata, verdict),
                    fermata,
                )
                self._life.speculate(station, message)
                return
            if not self._gated(station, message, fermata, verdict):
                return
        self._life.commit(station, message)

    def decide_later(
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
        station.gate_task = self.state.loop.create_task(
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
                station.agent, check, value, version, lambda request: self._calls.judge(station, request), fermata
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a check that breaks fails, it does not end the run
            verdict = Verdict(False, f"the check failed: {type(exc).__name__}: {exc}")
        station.gate_task = None
        self.state.replay.poke()
        if (station.record.status, station.version) != expected:
            return  # squashed by a caesura meanwhile
        on_verdict(verdict)
        dispatcher = self._life.dispatcher
        if dispatcher.queued:
            dispatcher.drain()

    def _gate_resolved(self, station: Station, message: Broadcast, fermata: Fermata, verdict: Verdict) -> None:
        if not verdict.passed:
            self._life.squash_speculation(station)
        if self._gated(station, message, fermata, verdict):
            self._life.commit(station, message)

    def _typed(self, station: Station, message: Broadcast) -> bool:
        """A result against its schemas: the agent's ``output:`` (valid JSON, then kept as data)
        and those of the state keys it writes or appends to. False when it failed one (the
        station runs again with the error, fails or stops the run, as its gate says)."""
        agent = station.agent
        typed = agent.output
        gate = typed.fermata if typed is not None else _STATE_GATE
        refs = self.gates.refs
        if typed is not None:
            verdict, data = typed_output(refs, typed.schema, message.result.output)
            if not verdict.passed:
                return self._gated(station, message, gate, verdict, "output")
            message.result.output = data
            station.feedback = None
        shared = self.state.shared
        for key, value in shared.proposed(agent, message.result.output).items():
            verdict = valid(refs, shared.schemas[key], value)
            if not verdict.passed:
                return self._gated(
                    station, message, gate, Verdict(False, f"state key {key!r}: {verdict.reason}"), "state"
                )
        return True

    def _gated(
        self, station: Station, message: Broadcast, fermata: Fermata, verdict: Verdict, what: str = "fermata"
    ) -> bool:
        """The fermata's verdict: True lets the result commit. On a failed check the station runs
        again (retry, or escalate one tier up), fails once its retries are spent, or stops the
        run (caesura)."""
        life = self._life
        if self.state.observers:
            shown = {"check": what} if what != "fermata" else {}
            self.state.emit(
                "gate", station.name, message.version, passed=verdict.passed, reason=verdict.reason, **shown
            )
        life.speculation.verdict(station, verdict.passed)
        if verdict.passed:
            station.feedback = None
            return True
        station.gate_failures += 1
        station.feedback = verdict.reason
        if fermata.on_fail == "caesura":
            life.stop(station, f"{what} failed: {verdict.reason}")
            return False
        if station.gate_failures > fermata.retries:
            life.fail(station, f"{what} failed {station.gate_failures} times: {verdict.reason}")
            return False
        life.let_go(station)
        if fermata.on_fail == "escalate":
            self.state.governor.boost(station.name)  # the next call goes one tier up
        life.again(station)
        return False

    def tacet_holds(self, station: Station) -> bool:
        """Check ``tacet_if`` once, when the station is first released: True when it does not run now."""
        tacet = station.agent.tacet_if
        assert tacet is not None
        station.tacet_checked = True
        cue = station.operands.get(tacet.cue)
        value = cue.result.output if cue is not None else None
        verdict = self.gates.quick(station.agent, tacet.check, value, station.version + 1)
        life = self._life
        if verdict is None:
            self.decide_later(
                station,
                tacet.check,
                value,
                station.version + 1,
                lambda verdict: (
                    life.tacet(station, verdict.reason) if verdict.passed else life.dispatcher.release(station.name)
                ),
            )
            return True
        if verdict.passed:
            life.tacet(station, verdict.reason)
            return True
        return False


class Lifecycle:
    """Handles results as they land and ends stations: commit, cue, again, fail, skip, squash, stop."""

    __slots__ = ("_checkpoint", "calls", "dispatcher", "speculation", "state", "verdicts")

    def __init__(
        self, state: RunState, calls: Calls, dispatcher: Dispatcher, gates: Gatekeeper, speculation: Speculation
    ) -> None:
        self.state = state
        self.calls = calls
        self.dispatcher = dispatcher
        self.speculation = speculation
        self.verdicts = Verdicts(self, gates)
        # Until a downbeat checkpoints, a caesura rolls back to the initial state.
        self._checkpoint: tuple[int, int, Checkpoint] = (0, 0, state.shared.directory.checkpoint())

    def on_broadcast(self, message: Broadcast) -> None:
        state = self.state
        station = state.stations.get(message.station)
        if station is None or message.version != station.version or station.record.status != "running":
            return  # a duplicate or a superseded version: commits are idempotent per tag
        replay = state.replay
        if replay.active and not station.restored and replay.hold(lambda: self.on_broadcast(message)):
            return  # a new result on a resume: it first arrived after every journaled one
        station.task = None
        station.unit.in_flight -= 1
        if state.redacting:
            message.result.output = state.redactor.data(message.result.output)
            message.error = None if message.error is None else state.redactor.text(message.error)
        governor = state.governor
        if station.agent.kind == "llm" and (governor.active or station.reserved):
            governor.settle(station.reserved, message.result.cost_usd)
            station.reserved = 0.0
        if station.restored:
            station.restored = False
            station.record.recalled.append(message)
            state.restored_usd += message.result.cost_usd
        else:
            state.spent_usd += message.result.cost_usd
            if state.observers:
                self.calls.emit_result(message, "call")
        if station.unconfirmed:
            # It fired on results not yet committed: keep its own (even a failure) until they are.
            station.buffered = message
            station.record.status = "speculative"
        elif not message.ok:
            self.fail(station, message.error or "failed")
        else:
            self.verdicts.land(station, message)
        dispatcher = self.dispatcher
        if dispatcher.queued:
            dispatcher.drain()

    # -- commit ----------------------------------------------------------------------------

    def commit(self, station: Station, message: Broadcast) -> None:
        """Commit a gated result: shared state, then the vamp's next pass or the cue."""
        cued: dict[str, list[str]] | None = None
        if station.shared:
            written = self._commit_state(station, message)
            if written is None:
                return
            cued = written
        vamp = station.agent.vamp
        if vamp is not None and station.iteration < (vamp.max or _VAMP_CAP):
            verdicts = self.verdicts
            verdict = verdicts.gates.quick(station.agent, vamp.until, message.result.output, message.version)
            if verdict is None:
                station.record.status = "held"
                verdicts.decide_later(
                    station,
                    vamp.until,
                    message.result.output,
                    message.version,
                    lambda verdict: (
                        self.cue(station, message, cued)
                        if verdict.passed
                        else self._vamp_again(station, message, verdict.reason, cued)
                    ),
                )
                return
            if not verdict.passed:
                self._vamp_again(station, message, verdict.reason, cued)
                return
        self.cue(station, message, cued)

    def _vamp_again(self, station: Station, message: Broadcast, reason: str, cued: dict[str, list[str]] | None) -> None:
        if self.state.observers:
            self.state.emit(
                "vamp",
                station.name,
                message.version,
                iteration=station.iteration,
                cost_usd=message.result.cost_usd,
                reason=reason,
                keys=cued or {},
            )
        station.iteration += 1
        self.again(station)

    def cue(
        self, station: Station, message: Broadcast, cued: dict[str, list[str]] | None, status: str = "done"
    ) -> None:
        """The result commits: broadcast it to every dependent and release those now ready."""
        state = self.state
        record = station.record
        record.status = status
        state.last_settle = state.now()  # a gate may have held it since it landed
        observed = bool(state.observers)
        if observed:
            state.emit("cue", station.name, message.version, cost_usd=message.result.cost_usd, keys=cued or {})
        state.settled += 1
        state.commits += 1
        station.commit_seq = state.commits
        name = station.name
        confirmed = station.spec_out
        ready: list[Station] = []
        for dependent in station.dependents:
            if confirmed and self.speculation.confirm(dependent, name):
                waiter = dependent.confirmation
                if not dependent.unconfirmed and waiter is not None and not waiter.done():
                    waiter.set_result(None)  # its tool loop may write now
                continue  # it fired on this very result: a hit
            dependent.operands[name] = message
            dependent.waiting -= 1
            if dependent.waiting == 0:
                ready.append(dependent)
        if len(ready) > 1:
            ready.sort(key=by_priority)
        policy = self.dispatcher.policy
        ready_now = policy.ready
        for dependent in ready:
            if observed:
                state.emit("ready", dependent.name)
            if dependent.agent.downbeat:
                self.downbeat(dependent)
            ready_now(dependent.name)
        if confirmed:
            station.spec_out = []
            for dependent in confirmed:
                buffered = dependent.buffered
                if buffered is not None and not dependent.unconfirmed:
                    dependent.buffered = None
                    dependent.record.status = "running"
                    if buffered.ok:
                        self.verdicts.land(dependent, buffered)
                    else:
                        self.fail(dependent, buffered.error or "failed")
        policy.done(name)
        if state.settled >= state.n:
            state.check_done()

    def again(self, station: Station) -> None:
        """Run ``station`` once more under a new tag version (a retry, a replay or a vamp pass)."""
        if station.spec_out:
            self.squash_speculation(station)
        record = station.record
        if record.result is not None:
            record.earlier.append(record.result)
            record.result = None
        record.status = "waiting"
        self.dispatcher.release(station.name)

    def _commit_state(self, station: Station, message: Broadcast) -> dict[str, list[str]] | None:
        """Check the station's reads, then write back; the cue map, or None when it does not commit now."""
        shared = self.state.shared
        check = shared.check(station, message)
        if check.action == "replay":
            self.let_go(station)
            self.again(station)
            return None
        if check.action == "park":
            station.record.status = "parked"
            return None
        try:
            written = shared.write_back(station, message)
        except AccessError as exc:  # nothing of the result reaches shared state
            self.let_go(station)
            self.calls.refused(station, message.version, exc)
            self.fail(station, said(exc))
            return None
        if isinstance(written, str):
            self.fail(station, written)
            return None
        self.let_go(station)
        return written

    def let_go(self, station: Station) -> None:
        """``station`` is done with shared state for now; resume whoever waited for its locks."""
        state = self.state
        shared = state.shared
        released = shared.let_go(station)
        for name in released.granted:
            granted = state.stations[name]
            granted.locked = True
            shared.end_wait(granted)
            self.dispatcher.release(name)
        for waiter, message in released.parked:
            waiter.record.status = "running"
            shared.end_wait(waiter)
            self.commit(waiter, message)

    # -- signals ---------------------------------------------------------------------------

    def tacet(self, station: Station, reason: str) -> None:
        """``tacet``: the agent rests; its tag resolves to null and dependents proceed."""
        state = self.state
        state.governor.forget(station.name)
        version = self.calls.start(station)
        if state.observers:
            state.emit("tacet", station.name, version, reason=reason)
        station.record.finished_s = state.now()
        self.cue(station, Broadcast(station.name, version, True), None, "tacet")

    def downbeat(self, station: Station) -> None:
        """Every agent declared before ``station`` has committed: checkpoint shared state."""
        state = self.state
        number = self._checkpoint[1] + 1
        checkpoint = state.shared.directory.checkpoint()
        self._checkpoint = (state.commits, number, checkpoint)
        state.writes_checkpointed = len(state.writes)
        if state.observers:
            state.emit("downbeat", station.name, station.version + 1, checkpoint=number, state=checkpoint.values())

    def stop(self, culprit: Station | None, reason: str) -> None:
        """``caesura``: stop issuing, squash work in flight and work committed after the last
        checkpoint, restore that checkpoint; the run ends ``caesura``. ``culprit`` is the agent
        whose gate called it, or None when the conductor (a person) did."""
        state = self.state
        state.status = "caesura"
        state.stop_issuing = True
        state.paused = False
        state.last_settle = state.now()
        after, number, checkpoint = self._checkpoint
        squashed: dict[str, int] = {}
        for station in state.stations.values():
            record = station.record
            self.calls.cancel(station)
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
        state.shared.directory.restore(checkpoint)
        who = culprit.name if culprit is not None else None
        state.caesura = {"agent": who, "reason": reason, "checkpoint": number, "squashed": squashed}
        writes = state.writes[state.writes_checkpointed :]
        if writes:  # made outside hct after the checkpoint: a rollback cannot undo them
            state.caesura["writes"] = writes
        if state.observers:
            version = culprit.version if culprit is not None else 0
            extra = {"writes": writes} if writes else {}
            state.emit("caesura", who, version, reason=reason, checkpoint=number, squashed=squashed, **extra)
        if state.done is not None and not state.done.done():
            state.done.set_result(None)

    def fail(self, station: Station, error: str) -> None:
        if station.spec_out:
            self.squash_speculation(station)
        state = self.state
        record = station.record
        record.status = "failed" if record.attention is None else "needs_attention"
        record.error = error
        record.finished_s = state.last_settle = state.now()
        state.status = "failed" if state.status == "completed" else state.status
        if state.observers:
            if record.attention is None:
                state.emit("fail", station.name, record.version, error=error)
            else:
                state.emit("fail", station.name, record.version, error=error, needs_attention=record.attention)
        state.settled += 1
        self.let_go(station)
        self.skip_dependents(station)
        self.dispatcher.policy.done(station.name)
        state.check_done()

    def skip(self, name: str, reason: str) -> None:
        state = self.state
        station = state.stations[name]
        record = station.record
        if record.status in ("done", "failed", "skipped", "tacet"):
            return
        record.status = "skipped"
        record.error = reason
        state.governor.forget(name)
        if state.observers:
            state.emit("skip", name, reason=reason)
        state.settled += 1
        self.dispatcher.policy.done(name)
        self.let_go(station)  # a skipped holder must not keep others waiting for its locks
        self.skip_dependents(station)
        state.check_done()

    def skip_dependents(self, origin: Station) -> None:
        state = self.state
        frontier = [origin]
        while frontier:
            for dependent in frontier.pop().dependents:
                record = dependent.record
                if record.status == "waiting":
                    record.status = "skipped"
                    record.error = f"upstream {origin.name!r} did not complete"
                    state.governor.forget(dependent.name)
                    state.settled += 1
                    if state.observers:
                        state.emit("skip", dependent.name, reason=record.error)
                    frontier.append(dependent)

    # -- speculation -----------------------------------------------------------------------

    def speculate(self, producer: Station, message: Broadcast) -> None:
        """Release dependents on a held result (``speculate``, or their ``attacca`` edge)."""
        state = self.state
        captured, ready = self.speculation.capture(producer, message)
        if state.observers:
            for dependent in captured:
                state.emit("speculate", dependent.name, dependent.version + 1, on=message.tag)
        for dependent in ready:
            if state.observers:
                state.emit("ready", dependent.name)
            self.dispatcher.policy.ready(dependent.name)

    def squash_speculation(self, producer: Station) -> None:
        """``producer``'s held result will not commit: squash what fired on it."""
        state = self.state
        on = f"{producer.name}@{producer.version}"
        # Dependents whose call of this version is thrown away (in flight, or answered and
        # buffered): the journal counts that call squashed, not lost.
        called = {d.name for d in producer.spec_out if d.task is not None or d.buffered is not None}
        for dependent, cost in self.speculation.squash(producer):
            self.calls.cancel(dependent)
            dependent.queued = False
            self.let_go(dependent)
            self.dispatcher.policy.withdraw(dependent.name)
            dependent.record.status = "waiting"
            if state.observers:
                state.emit(
                    "squash", dependent.name, dependent.version, on=on, cost_usd=cost, call=dependent.name in called
                )
