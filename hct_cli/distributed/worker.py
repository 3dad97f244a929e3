"""``hct worker``: make the model calls that conductors issue on the bus.

A worker serves every run in progress (or only some tiers, ``--tiers``), up to ``concurrency``
calls at a time, each with the provider its work item names (simulated, real models, the local
model). For each call it puts the result on the run's CDB stream and only then acknowledges the
item. Every ``heartbeat`` it says it is alive, keeps its own pending entries fresh and takes over
the pending entries of workers silent for longer than ``claim_after``. A call already taken over
from ``max_deliveries`` workers (each died making it: a call that crashes its worker) is not made
again: it fails, and the conductor sees a failed call as it would any other.

A worker also runs the tool servers ``on: worker`` of the runs it serves
(:mod:`hct_cli.distributed.tool_host`): their listings and calls arrive as work items too.

Stopping (SIGTERM, Ctrl-C) drains: no new work is taken, calls in flight get ``drain`` seconds to
finish, and whatever is still unfinished is handed back to its stream for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hct_cli.bus.base import Broadcast
from hct_cli.distributed.tool_host import ToolHost, in_doubt
from hct_cli.distributed.tool_work import ToolAnswer, ToolWork
from hct_cli.distributed.work import Mode, Work, decode_item, decode_work
from hct_cli.providers.base import Provider, broadcast_of
from hct_cli.providers.registry import make_provider
from hct_cli.redact import Redactor

if TYPE_CHECKING:
    from hct_cli.distributed.queue import Delivery, RedisWorkQueue
    from hct_cli.providers.local import LocalServer

__all__ = ["Worker", "WorkerReport"]

#: How often the set of runs in progress is read again while work keeps arriving; an idle
#: worker reads it after every empty wait for work, so a new run is joined within one wait.
_REFRESH_S = 0.5
_TAKE_BLOCK_MS = 50


@dataclass
class WorkerReport:
    """What a worker did, for ``--json`` and the log."""

    worker: str
    completed: int = 0
    failed: int = 0
    reclaimed: int = 0
    handed_back: int = 0
    malformed: int = 0
    runs: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "completed": self.completed,
            "failed": self.failed,
            "reclaimed": self.reclaimed,
            "handed_back": self.handed_back,
            "malformed": self.malformed,
            "runs": sorted(self.runs),
        }


Log = Callable[[str], None]


class Worker:
    """Executes work items from a :class:`~hct_cli.distributed.queue.RedisWorkQueue` until stopped."""

    def __init__(
        self,
        queue: RedisWorkQueue,
        *,
        concurrency: int = 8,
        heartbeat_s: float = 1.0,
        drain_s: float = 30.0,
        max_deliveries: int = 3,
        log: Log | None = None,
        tools: ToolHost | None = None,
    ) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self.heartbeat_s = heartbeat_s
        self.drain_s = drain_s
        self.max_deliveries = max_deliveries  # a call taken over more often fails instead
        self.log = log or (lambda line: None)
        self.report = WorkerReport(queue.worker)
        self._in_flight: dict[asyncio.Task[None], Delivery] = {}
        self._finishing: set[str] = set()  # entries whose result is on its way to the bus
        self._slot = asyncio.Event()
        self._providers: dict[str, Provider] = {}
        self._redact = Redactor.from_environ()
        self._local: LocalServer | None = None
        self._local_lock = asyncio.Lock()
        self.tools = tools or ToolHost(queue.worker)  # servers on: worker (none may exec unless allowed)

    @property
    def worker(self) -> str:
        return self.queue.worker

    def status(self) -> dict[str, Any]:
        return {
            "in_flight": len(self._in_flight),
            "completed": self.report.completed,
            "failed": self.report.failed,
            "concurrency": self.concurrency,
            "tiers": sorted(self.queue.tiers) if self.queue.tiers is not None else None,
            "runs": list(self.queue.runs),
        }

    async def run(self, stop: asyncio.Event) -> WorkerReport:
        """Serve until ``stop`` is set, then drain."""
        with contextlib.suppress(Exception):  # Redis away already: the loops below say so and retry
            await self.queue.beat(self.status(), ())
        loop = asyncio.get_running_loop()
        # Beating never waits behind reclaiming (many runs, a distant Redis): a late beat would
        # make this worker look silent and its calls be taken over.
        helpers = [loop.create_task(self._beat()), loop.create_task(self._reclaim(stop))]
        try:
            await self._serve(stop)
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.queue.leave(self.status())
            await self.tools.aclose()
            if self._local is not None:
                await asyncio.to_thread(self._local.stop)
        return self.report

    async def _serve(self, stop: asyncio.Event) -> None:
        refreshed = 0.0  # join the runs in progress at once
        outage = idle = False
        while not stop.is_set():
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self._slot.clear()
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._slot.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                continue
            try:
                if idle or time.monotonic() - refreshed > _REFRESH_S:
                    await self.queue.refresh()  # an idle worker looks for new runs at once
                    refreshed = time.monotonic()
                    self.tools.retire(self.queue.runs)  # the servers of runs that ended stop
                deliveries = await self.queue.take(free, _TAKE_BLOCK_MS)
                idle = not deliveries
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep trying; work waits on the streams meanwhile
                if not outage:
                    self.log(f"cannot read work: {type(exc).__name__}: {exc}; trying again every second")
                outage = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            if outage:
                self.log("reading work again")
                outage = False
            for delivery in deliveries:
                self._start(delivery)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(delivery))
        self._in_flight[task] = delivery
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        delivery = self._in_flight.pop(task, None)
        if delivery is not None:
            self._finishing.discard(delivery.entry)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            self.log(f"lost a result to the bus: {task.exception()}")

    async def _execute(self, delivery: Delivery) -> None:
        try:
            work = decode_item(delivery.payload)
        except ValueError as exc:
            self.report.malformed += 1
            self.log(f"dropped a malformed work item {delivery.entry} on {delivery.stream}: {exc}")
            await self.queue.drop(delivery)
            return
        self.report.runs.add(work.run)
        if isinstance(work, ToolWork):
            await self._execute_tool(delivery, work)
            return
        if delivery.reclaimed_from is not None:
            self.report.reclaimed += 1
            self.log(f"took over {work.tag} of run {work.run} from silent worker {delivery.reclaimed_from}")
            await self.queue.notify(
                work.run,
                "reclaim",
                work.request.agent.name,
                work.request.version,
                by=self.worker,
                **{"from": delivery.reclaimed_from},
            )
        notes: list[tuple[str, dict[str, Any]]] = []
        work.request.reporter = lambda agent, version, kind, data: notes.append((kind, data))
        if delivery.deliveries > self.max_deliveries:  # it takes down whoever makes it: stop here
            message = Broadcast(
                work.request.agent.name,
                work.request.version,
                False,
                error=f"given up after {delivery.deliveries - 1} workers took this call and none finished it",
            )
        else:
            message = await self._call(work)
        message.result.worker = self.worker
        if message.ok:
            self.report.completed += 1
        else:
            self.report.failed += 1
        self._finishing.add(delivery.entry)
        # Shielded: a drain that runs out of time must not cut a result off between its XADD
        # and its XACK (and hand back a call whose result is already on the bus).
        await asyncio.shield(self.queue.finish(delivery, message, notes, work.request.step))

    async def _execute_tool(self, delivery: Delivery, work: ToolWork) -> None:
        """A listing or call of a server on: worker; its answer on the CDB stream, then the ack."""
        if delivery.reclaimed_from is not None:
            self.report.reclaimed += 1
            self.log(f"took over {work.tag} of run {work.run} from silent worker {delivery.reclaimed_from}")
        if delivery.deliveries > self.max_deliveries:
            answer = ToolAnswer(
                work.ticket,
                self.worker,
                ok=False,
                error=f"given up after {delivery.deliveries - 1} workers took this tool call and none finished it",
            )
        else:
            answer = await self.tools.answer(work, delivery.deliveries)
        if answer.ok:
            self.report.completed += 1
        else:
            self.report.failed += 1
            self.log(f"{work.tag} for {work.agent or 'the run'} of run {work.run}: {answer.error}")
        self._finishing.add(delivery.entry)
        await asyncio.shield(self.queue.answer(delivery, answer.encode(work)))

    async def _call(self, work: Work) -> Broadcast:
        request = work.request
        try:
            provider = await self._provider(work.mode)
            result = await provider.call(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the call fails on the conductor's side, as it would in process
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return Broadcast(request.agent.name, request.version, False, error=self._redact.text(error))
        message = broadcast_of(request.agent.name, request, result)
        message.result.output = self._redact.data(message.result.output)  # the worker's own keys never leave it
        return message

    async def _provider(self, mode: Mode) -> Provider:
        """One provider per mode, built on first use by name from the registry (the local model's
        server too)."""
        provider = self._providers.get(mode.key)
        if provider is not None:
            return provider
        if mode.kind == "simulated":
            provider = make_provider("simulated", mode.seed, time_scale=mode.time_scale)
        else:
            from hct_cli.providers.litellm_provider import Endpoint

            endpoints = {model: Endpoint(base, api_key=None) for model, base in mode.endpoints.items()}
            if mode.local:  # one local server serves every run that asks for it, started once
                from hct_cli.providers.local import LOCAL_MODEL

                endpoints[LOCAL_MODEL] = await self._local_endpoint()
            provider = make_provider("litellm", endpoints=endpoints)
        self._providers[mode.key] = provider
        return provider

    async def _local_endpoint(self) -> Any:
        async with self._local_lock:
            if self._local is None:
                from hct_cli.providers.local import LocalServer

                self.log("starting the local model server...")
                server = LocalServer()
                await asyncio.to_thread(server.start)
                self._local = server
            return self._local.endpoint

    async def _beat(self) -> None:
        """Say this worker is alive, every ``heartbeat_s``, until the drain is over."""
        failing = False
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.queue.beat(self.status(), self._in_flight.values())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment: the next beat tries again
                if not failing:
                    self.log(f"heartbeat failed: {type(exc).__name__}: {exc}")
                failing = True
            else:
                failing = False

    async def _reclaim(self, stop: asyncio.Event) -> None:
        """Take over the work of silent workers with free slots, every ``heartbeat_s``."""
        while not stop.is_set():
            await asyncio.sleep(self.heartbeat_s)
            free = self.concurrency - len(self._in_flight)
            if free <= 0 or stop.is_set():
                continue
            try:
                taken = await self.queue.reclaim(free)
                if stop.is_set():  # the drain began meanwhile: these are not ours to start
                    await self.queue.requeue(taken)
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the heartbeat says so; try again next time
                continue
            for delivery in taken:
                self._start(delivery)

    async def _drain(self) -> None:
        """Let calls in flight finish for ``drain_s``; hand back the rest."""
        if not self._in_flight:
            return
        self.log(f"draining {len(self._in_flight)} calls in flight (up to {self.drain_s:g} s)")
        _done, pending = await asyncio.wait(list(self._in_flight), timeout=self.drain_s)
        if not pending:
            return
        unfinished = [
            self._in_flight[task]
            for task in pending
            if task in self._in_flight and self._in_flight[task].entry not in self._finishing
        ]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        try:
            unfinished = await self._cut_off_writes(unfinished)
            for delivery in unfinished:
                with contextlib.suppress(ValueError):
                    work = decode_work(delivery.payload)
                    await self.queue.notify(
                        work.run, "hand_back", work.request.agent.name, work.request.version, by=self.worker
                    )
            await self.queue.hand_back(unfinished, _tier_of)
        except Exception as exc:  # Redis is away: the calls stay pending under this worker's name
            self.log(
                f"could not hand back {len(unfinished)} unfinished calls ({type(exc).__name__}: {exc}); "
                "another worker takes them over once this one has been silent for claim-after"
            )
            return
        self.report.handed_back += len(unfinished)
        self.log(f"handed back {len(unfinished)} unfinished calls")

    async def _cut_off_writes(self, unfinished: list[Delivery]) -> list[Delivery]:
        """Answer the write tool calls cut off mid-call as in doubt (they may have happened: never
        handed back to be made again); returns the rest, to hand back."""
        rest = []
        for delivery in unfinished:
            try:
                work = decode_item(delivery.payload)
            except ValueError:
                rest.append(delivery)
                continue
            if isinstance(work, ToolWork) and work.writes:
                answer = in_doubt(work, self.worker, "was cut off mid-call when its worker stopped")
                await self.queue.answer(delivery, answer.encode(work))
                self.report.failed += 1
            else:
                rest.append(delivery)
        return rest


def _tier_of(delivery: Delivery) -> str | None:
    try:
        work = decode_item(delivery.payload)
    except ValueError:
        return None
    return work.tier if isinstance(work, ToolWork) else work.request.tier
