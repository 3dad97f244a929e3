"""A run in distributed mode, from the conductor's side: the bus it opens, the provider it lends.

The CLI builds a :class:`Session` before the run (checking that Redis answers, so a wrong URL
fails before anything runs), gives :attr:`Session.provider` to the model stations and
:attr:`Session.tools` to the run's tool box (for servers ``on: worker``), and runs the
performer through :meth:`Session.play`, which opens the run's streams in the run's own event
loop, and trims them when the run ends however it ends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hct_cli.bus.redis import PASSWORD_ENV, is_masked, shown_url, with_password
from hct_cli.distributed.remote import RemoteProvider
from hct_cli.distributed.remote_tools import RemoteTools
from hct_cli.distributed.work import Mode
from hct_cli.errors import BusError, UsageError

if TYPE_CHECKING:
    from hct_cli.distributed.conductor import ConductorBus
    from hct_cli.distributed.roster import WorkerStatus
    from hct_cli.engine.perform import Performer
    from hct_cli.engine.result import RunResult

__all__ = ["Session", "check_bus_url", "journaled_bus_url"]

_SCHEMES = ("redis://", "rediss://", "unix://")


def check_bus_url(url: str) -> None:
    if not url.startswith(_SCHEMES):
        raise UsageError(
            f"--bus takes a Redis URL, not {shown_url(url)!r}",
            hint="Use --bus redis://HOST:PORT/DB (leave it out to run in process).",
        )


def journaled_bus_url(url: str, run_id: str) -> str:
    """The bus URL a run was journaled with, its password (never journaled) from the environment."""
    if not is_masked(url):
        return url
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise BusError(
            f"run {run_id} used Redis at {url}, with a password hct does not keep in its journal",
            hint=f"Set {PASSWORD_ENV} to that password (or pass the full URL with --bus), then resume again.",
        )
    return with_password(url, password)


class Session:
    """The conductor's end of distributed mode for one run."""

    def __init__(self, url: str, mode: Mode, *, say: Callable[[str], None] | None = None) -> None:
        check_bus_url(url)
        self.url = url
        self.provider = RemoteProvider(mode)
        self.tools = RemoteTools()  # where the tool box reaches servers on: worker
        self.bus: ConductorBus | None = None
        self._say = say or (lambda line: None)

    def preflight(self) -> None:
        """Raise :class:`~hct_cli.errors.BusError` now if Redis does not answer."""
        from hct_cli.bus.redis import connect

        async def ping() -> None:
            client = await connect(self.url)
            await client.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop here (the CLI, hct_cli.perform): a loop of its own
            asyncio.run(ping())
            return
        # Inside a running loop (hct_cli.aperform): its own loop on a thread, as the loop waits.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, ping()).result()

    def roster(self) -> list[WorkerStatus]:
        """The workers as the last poll saw them (for the conductor's panel)."""
        return list(self.bus.roster) if self.bus is not None else []

    async def play(self, performer: Performer, tiers: Iterable[str | None]) -> RunResult:
        from hct_cli.distributed.conductor import ConductorBus

        self.bus = await ConductorBus.open(self.url, performer.run_id, tiers)
        self.provider.attach(self.bus)
        self.tools.attach(self.bus)
        if not any(worker.alive for worker in self.bus.roster):
            self._say(
                f"no hct worker serves {shown_url(self.url)} yet: work waits on the stream until one starts "
                f"(hct worker --bus {shown_url(self.url)})"
            )
        try:
            return await performer.run()
        finally:
            await self.bus.close()
