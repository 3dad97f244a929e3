"""``hct worker``: serve the model calls conductors issue on a Redis bus."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps
from hct_cli.redact import Redactor

__all__ = ["worker_command"]


def worker_command(
    url: str,
    *,
    concurrency: int,
    tiers: Sequence[str],
    worker_id: str | None,
    claim_after_s: float,
    heartbeat_s: float,
    drain_s: float,
    as_json: bool,
    allow_exec: bool = False,
) -> int:
    from hct_cli.distributed.session import check_bus_url

    check_bus_url(url)
    if concurrency < 1:
        raise UsageError("--concurrency must be 1 or more", hint="e.g. --concurrency 8")
    if not (0 < heartbeat_s < claim_after_s):
        raise UsageError(
            "--heartbeat must be above zero and below --claim-after",
            hint="A live worker must beat several times before others may take its work (defaults: 1 s and 5 s).",
        )
    if drain_s < 0:
        raise UsageError("--drain must be zero or more", hint="Seconds calls in flight get to finish on SIGTERM.")
    served = sorted({tier.strip() for item in tiers for tier in item.split(",") if tier.strip()}) or None
    report = asyncio.run(_serve(url, concurrency, served, worker_id, claim_after_s, heartbeat_s, drain_s, allow_exec))
    if as_json:
        sys.stdout.write(dumps(report, indent=2) + "\n")
    else:
        sys.stderr.write(
            f"worker {report['worker']} stopped: {report['completed']} calls completed, {report['failed']} failed, "
            f"{report['reclaimed']} taken over from silent workers, {report['handed_back']} handed back\n"
        )
    return 0


async def _serve(
    url: str,
    concurrency: int,
    tiers: list[str] | None,
    worker_id: str | None,
    claim_after_s: float,
    heartbeat_s: float,
    drain_s: float,
    allow_exec: bool,
) -> dict[str, object]:
    from hct_cli.bus.redis import shown_url
    from hct_cli.distributed.queue import RedisWorkQueue, default_worker_id
    from hct_cli.distributed.tool_host import ToolHost
    from hct_cli.distributed.worker import Worker
    from hct_cli.run.guard import trusted_tools

    name = worker_id or default_worker_id()
    queue = await RedisWorkQueue.open(url, name, tiers=tiers, claim_after_s=claim_after_s)

    redact = Redactor.from_environ()  # a provider's error may quote a key

    def log(line: str) -> None:
        sys.stderr.write(f"{name}: {redact.text(line)}\n")
        sys.stderr.flush()

    # Tool servers on: worker start here, with this machine's consent: --allow-exec, or its allow list.
    tools = ToolHost(name, allow_exec=allow_exec, trusted=trusted_tools(None), redactor=redact)
    worker = Worker(queue, concurrency=concurrency, heartbeat_s=heartbeat_s, drain_s=drain_s, log=log, tools=tools)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    log(
        f"serving {shown_url(url)}: up to {concurrency} calls at a time, tiers: {', '.join(tiers) if tiers else 'all'}. "
        f"{' Tool servers on: worker may run programs here (--allow-exec).' if allow_exec else ''} "
        "SIGTERM or Ctrl-C drains and stops."
    )
    try:
        report = await worker.run(stop)
    finally:
        await queue.close()
    return report.to_json()
