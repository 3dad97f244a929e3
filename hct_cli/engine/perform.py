"""The perform loop: reservation stations, functional units and the common data bus.

Each station waits for the tags it needs. When a station is released by the dispatch policy and
a functional unit of its tier is free, it is issued: its prompt is rendered from the operands it
captured, and its provider runs as an asyncio task. The task's result goes onto the bus under a
versioned tag ``station@version``; the scheduler, subscribed to the bus, commits it (shared state
writes, operand capture by dependents) and releases whatever became ready. Nothing here knows
which policy, bus or provider it is driving.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from hct_cli.bus.base import Broadcast, Bus
from hct_cli.bus.memory import MemoryBus
from hct_cli.compile import Program, StationSpec
from hct_cli.engine.dispatch import DispatchPolicy, make_policy
from hct_cli.engine.events import Event, Observer
from hct_cli.engine.result import AgentRecord, RunResult
from hct_cli.models import model_info
from hct_cli.providers.base import CallRequest, CallResult, Provider
from hct_cli.routing import TIER_ORDER
from hct_cli.score.template import compile_template

__all__ = ["Performer", "perform"]

ProviderFor = Callable[[StationSpec], Provider]
_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})


class _Unit:
    """A tier's functional units: a concurrency limit and optional rpm/tpm windows."""

    __slots__ = ("in_flight", "limit", "requests", "rpm", "tokens", "tpm")

    def __init__(self, limit: int | None, rpm: int | None, tpm: int | None) -> None:
        self.limit = limit
        self.rpm = rpm
        self.tpm = tpm
        self.in_flight = 0
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()

    def wait_s(self, now: float, tokens: int) -> float:
        """0 when a call may start now, else how long until the rate limits allow it."""
        while self.requests and now - self.requests[0] >= 60.0:
            self.requests.popleft()
        while self.tokens and now - self.tokens[0][0] >= 60.0:
            self.tokens.popleft()
        wait = 0.0
        if self.rpm is not None and len(self.requests) >= self.rpm:
            wait = max(wait, self.requests[0] + 60.0 - now)
        if self.tpm is not None and self.tokens:
            used = sum(n for _, n in self.tokens)
            if used + tokens > self.tpm:
                wait = max(wait, self.tokens[0][0] + 60.0 - now)
        return wait

    def take(self, now: float, tokens: int) -> None:
        self.in_flight += 1
        if self.rpm is not None:
            self.requests.append(now)
        if self.tpm is not None:
            self.tokens.append((now, tokens))


def _frame_text(frame: Mapping[str, Any]) -> str:
    if not frame:
        return ""
    lines = ["Reference frame (immutable; applies to every answer):"]
    for key, value in frame.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"- {key}: {shown}")
    return "\n".join(lines)


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
    ) -> None:
        self.program = program
        self.inputs = dict(inputs or {})
        self.dispatch = dispatch
        self.bus: Bus = bus if bus is not None else MemoryBus()
        self.observers = list(observers)
        self.budget_usd = budget_usd
        self.run_id = run_id or uuid.uuid4().hex[:12]
        stations = program.stations
        self._n = len(stations)
        self._waiting = {name: len(spec.tags) for name, spec in stations.items()}
        self._operands: dict[str, dict[str, Any]] = {name: {} for name in stations}
        self.records = {
            name: AgentRecord(route_model=spec.route.model, tier=spec.route.tier) for name, spec in stations.items()
        }
        self._version = dict.fromkeys(stations, 0)
        self._units = {tier: _Unit(spec.concurrency, spec.rpm, spec.tpm) for tier, spec in program.tiers.items()}
        self._free_unit = _Unit(None, None, None)  # models pinned outside any tier, python, shell
        self._unit_of = {name: self._unit(spec) for name, spec in stations.items()}
        self._provider_of = {name: provider_for(spec) for name, spec in stations.items()}
        self._queue: list[tuple[tuple[int, float, int], str]] = []
        self._settled = 0
        self._status = "completed"
        self._stop_issuing = False
        self._spent = 0.0
        self._t0: float | None = None
        self._last_commit = 0.0
        self._done: asyncio.Future[None] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # in flight; dropped when their result arrives
        self._frame = _frame_text(program.score.reference_frame)
        self._state: dict[str, Any] = {k: spec.initial for k, spec in program.score.state.items()}
        self._state_version = dict.fromkeys(program.score.state, 0)
        self._appended: dict[str, list[tuple[int, int, Any]]] = {k: [] for k in program.score.state}
        self._read_versions: dict[str, dict[str, int]] = {}
        self.stale_reads = 0
        self._timer: asyncio.TimerHandle | None = None
        order = {name: i for i, name in enumerate(program.order)}
        self.policy: DispatchPolicy = make_policy(dispatch, self._release, order)
        # Prices load before the run (the price map is read once, on first use).
        for spec in stations.values():
            model_info(spec.route.model)
        # Templates compile before the run, so the makespan measures scheduling, not Jinja.
        self._templates = {
            name: compile_template(spec.agent.prompt)
            for name, spec in stations.items()
            if spec.agent.prompt is not None and "{{" in spec.agent.prompt
        }

    # -- events ----------------------------------------------------------------------------

    def _now(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def _emit(self, kind: str, station: str | None = None, version: int = 0, **data: Any) -> None:
        event = Event(kind, self._now(), station, version, data)
        for observer in self.observers:
            observer(event)

    # -- issue -----------------------------------------------------------------------------

    def _unit(self, spec: StationSpec) -> _Unit:
        tier = spec.route.tier
        if tier is None or spec.agent.kind in ("python", "shell"):
            return self._free_unit
        return self._units.get(tier, self._free_unit)

    def _release(self, name: str) -> None:
        """The policy lets ``name`` go: issue it now if a unit is free, else queue it."""
        spec = self.program.stations[name]
        if self._stop_issuing:
            self._skip(name, "the run stopped issuing")
            return
        if not self._queue and self._try_issue(spec):
            return
        heapq.heappush(self._queue, (spec.priority, name))

    def _drain(self) -> None:
        """Issue queued stations, highest priority first, while units allow."""
        blocked: list[tuple[tuple[int, float, int], str]] = []
        while self._queue:
            item = heapq.heappop(self._queue)
            if self._stop_issuing:
                self._skip(item[1], "the run stopped issuing")
                continue
            if not self._try_issue(self.program.stations[item[1]]):
                blocked.append(item)
        for item in blocked:
            heapq.heappush(self._queue, item)

    def _try_issue(self, spec: StationSpec) -> bool:
        unit = self._unit_of[spec.name]
        if unit.limit is not None and unit.in_flight >= unit.limit:
            return False
        if unit.rpm is not None or unit.tpm is not None:
            now = time.perf_counter()
            wait = unit.wait_s(now, spec.agent.max_tokens)
            if wait > 0:
                self._wake_in(wait)
                return False
            unit.take(now, spec.agent.max_tokens)
        else:
            unit.in_flight += 1
        self._issue(spec)
        return True

    def _wake_in(self, delay: float) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()

            def wake() -> None:
                self._timer = None
                self._drain()

            self._timer = loop.call_later(delay, wake)

    def _issue(self, spec: StationSpec) -> None:
        name = spec.name
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self._version[name] += 1
        version = self._version[name]
        record = self.records[name]
        record.status = "running"
        record.version = version
        record.started_s = time.perf_counter() - self._t0
        request = self._request(spec, version)
        if self.budget_usd is not None and spec.agent.kind == "llm":
            price = model_info(request.model)
            if price is not None:
                tokens = spec.agent.simulate.prompt_tokens or max(1, (len(request.prompt) + len(request.system)) // 4)
                record.worst_case_usd = price.cost(tokens, spec.agent.max_tokens)
            if self._spent + record.worst_case_usd > self.budget_usd:
                self._status = "budget_exhausted"
                self._stop_issuing = True
                self._unit_of[name].in_flight -= 1
                record.status = "waiting"
                record.started_s = None
                self._skip(name, f"budget of ${self.budget_usd:.4f} would be exceeded")
                return
            self._spent += record.worst_case_usd
        if self.observers:
            self._emit("issue", name, version, model=request.model, tier=spec.route.tier)
        self._tasks[name] = self._loop.create_task(self._execute(spec, request))

    def _request(self, spec: StationSpec, version: int) -> CallRequest:
        agent = spec.agent
        template = self._templates.get(spec.name)
        context: Mapping[str, Any] = _NO_CONTEXT
        if template is not None or agent.reads or agent.kind != "llm":
            context = {"cues": self._operands[spec.name], "inputs": self.inputs}
            if agent.reads:
                context["state"] = {key: self._read(key) for key in agent.reads}
                self._read_versions[spec.name] = {key: self._state_version[key] for key in agent.reads}
        prompt = template.render(**context) if template is not None else agent.prompt or ""
        return CallRequest(
            agent=agent,
            model=spec.route.model,
            tier=spec.route.tier,
            prompt=prompt,
            system=self._frame,
            version=version,
            context=context,
        )

    async def _execute(self, spec: StationSpec, request: CallRequest) -> None:
        try:
            result: CallResult = await self._provider_of[spec.name].call(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a provider's failure fails the station, not the engine
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            await self.bus.publish(Broadcast(spec.name, request.version, False, error=message))
            return
        await self.bus.publish(
            Broadcast(
                spec.name,
                request.version,
                True,
                output=result.output,
                model=result.model,
                tier=spec.route.tier,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost_usd=result.cost_usd,
                latency_s=result.latency_s,
            )
        )

    # -- commit ----------------------------------------------------------------------------

    def _on_broadcast(self, message: Broadcast) -> None:
        name = message.station
        record = self.records.get(name)
        if record is None or message.version != self._version[name] or record.status != "running":
            return  # a duplicate or a superseded version: commits are idempotent per tag
        self._tasks.pop(name, None)
        spec = self.program.stations[name]
        self._unit_of[name].in_flight -= 1
        if message.ok:
            self._commit(spec, message, record)
        else:
            self._fail(spec, message.error or "failed", record)
        self.policy.done(name)
        if self._queue:
            self._drain()

    def _commit(self, spec: StationSpec, message: Broadcast, record: AgentRecord) -> None:
        name = spec.name
        record.finished_s = self._last_commit = time.perf_counter() - self._t0  # type: ignore[operator]
        record.result = message
        if self.budget_usd is not None:
            self._spent += message.cost_usd - record.worst_case_usd
        agent = spec.agent
        error = self._write_state(spec, message) if agent.writes or agent.appends or agent.reads else None
        if error is not None:
            self._fail(spec, error, record)
            return
        record.status = "done"
        if self.observers:
            self._emit("cue", name, message.version, cost_usd=message.cost_usd)
        self._settled += 1
        output = message.output
        version = message.version
        ready: list[str] = []
        for dependent in spec.dependents:
            self._operands[dependent][name] = output
            self.records[dependent].operands[name] = version
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0:
                ready.append(dependent)
        if len(ready) > 1:
            stations = self.program.stations
            ready.sort(key=lambda n: stations[n].priority)
        for dependent in ready:
            if self.observers:
                self._emit("ready", dependent)
            self.policy.ready(dependent)
        self._check_done()

    def _write_state(self, spec: StationSpec, message: Broadcast) -> str | None:
        agent = spec.agent
        read = self._read_versions.pop(spec.name, None)
        if read and any(self._state_version[k] != v for k, v in read.items()):
            self.stale_reads += 1
        if not agent.writes and not agent.appends:
            return None
        output = message.output
        if len(agent.writes) > 1:
            try:
                data = json.loads(output) if isinstance(output, str) else output
            except ValueError:
                data = None
            if not isinstance(data, dict) or not set(agent.writes) <= set(data):
                return f"output must be a JSON object with keys {list(agent.writes)}"
            values = {key: data[key] for key in agent.writes}
        else:
            values = dict.fromkeys(agent.writes, output)
        for key, value in values.items():
            self._state[key] = value
            self._state_version[key] += 1
        for key in agent.appends:
            self._appended[key].append((agent.index, message.version, output))
            self._state_version[key] += 1
        return None

    def _read(self, key: str) -> Any:
        items = self._appended.get(key)
        if not items:
            return self._state.get(key)
        base = self._state.get(key)
        initial = list(base) if isinstance(base, list) else []
        return initial + [item for _, _, item in sorted(items, key=lambda x: (x[0], x[1]))]

    def _fail(self, spec: StationSpec, error: str, record: AgentRecord) -> None:
        record.status = "failed"
        record.error = error
        record.finished_s = self._now()
        self._status = "failed" if self._status == "completed" else self._status
        if self.observers:
            self._emit("fail", spec.name, record.version, error=error)
        self._settled += 1
        self._skip_dependents(spec.name)
        self._check_done()

    def _skip(self, name: str, reason: str) -> None:
        record = self.records[name]
        if record.status in ("done", "failed", "skipped"):
            return
        record.status = "skipped"
        record.error = reason
        if self.observers:
            self._emit("skip", name, reason=reason)
        self._settled += 1
        self.policy.done(name)
        self._skip_dependents(name)
        self._check_done()

    def _skip_dependents(self, name: str) -> None:
        frontier = [name]
        while frontier:
            for dependent in self.program.stations[frontier.pop()].dependents:
                record = self.records[dependent]
                if record.status == "waiting":
                    record.status = "skipped"
                    record.error = f"upstream {name!r} did not complete"
                    self._settled += 1
                    if self.observers:
                        self._emit("skip", dependent, reason=record.error)
                    frontier.append(dependent)

    def _check_done(self) -> None:
        if self._settled >= self._n and self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        # Everything built so far (program, stations, records) lives for the whole run: move it
        # out of the collector's reach so full collections stay proportional to the garbage.
        gc.freeze()

        self.bus.subscribe(self._on_broadcast)
        if self.observers:
            self._emit("run_start", None, agents=self._n, dispatch=self.dispatch, run_id=self.run_id)
        stations = self.program.stations
        # Even with free units, issue order matters: the event loop runs one task at a time, so
        # the station with the longest remaining path goes first (list scheduling).
        for name in sorted(self.program.roots, key=lambda n: stations[n].priority):
            if self.observers:
                self._emit("ready", name)
            self.policy.ready(name)
        self.policy.start()
        if self._n == 0:
            self._done.set_result(None)
        try:
            await self._done
        except asyncio.CancelledError:
            self._status = "interrupted"
            for task in list(self._tasks.values()):
                task.cancel()
            raise
        finally:
            gc.unfreeze()
            if self._timer is not None:
                self._timer.cancel()
        result = self._result()
        if self.observers:
            self._emit("run_end", None, status=result.status, cost_usd=result.cost_usd)
        return result

    def _critical_path(self) -> float:
        finish: dict[str, float] = {}
        for name in self.program.order:
            spec = self.program.stations[name]
            start = max((finish.get(tag, 0.0) for tag in spec.tags), default=0.0)
            finish[name] = start + self.records[name].latency_s
        return max(finish.values(), default=0.0)

    def _frontier_cost(self) -> float:
        frontier_tier = next((t for t in reversed(TIER_ORDER) if t in self.program.tiers), None)
        price = model_info(self.program.tiers[frontier_tier].model) if frontier_tier else None
        total = 0.0
        for name, record in self.records.items():
            if self.program.stations[name].agent.kind != "llm" or record.status != "done":
                continue
            total += price.cost(record.prompt_tokens, record.completion_tokens) if price else record.cost_usd
        return total

    def _result(self) -> RunResult:
        state = {key: self._read(key) for key in self._state}
        return RunResult(
            run_id=self.run_id,
            status=self._status,
            dispatch=self.dispatch,
            makespan_s=self._last_commit,
            critical_path_s=self._critical_path(),
            cost_usd=sum(r.cost_usd for r in self.records.values()),
            frontier_cost_usd=self._frontier_cost(),
            stale_reads=self.stale_reads,
            agents=self.records,
            state=state,
        )


async def perform(program: Program, provider_for: ProviderFor, **options: Any) -> RunResult:
    """Run ``program`` once; see :class:`Performer` for the options."""
    return await Performer(program, provider_for, **options).run()
