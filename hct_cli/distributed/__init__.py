"""Distributed mode: model calls issued over a bus to ``hct worker`` processes on any machine.

:mod:`~hct_cli.distributed.work` is the wire format of a call and its result,
:mod:`~hct_cli.distributed.keys` the Redis keys runs and workers meet on,
:mod:`~hct_cli.distributed.conductor` the conductor's end of a run (issuing work, polling the
roster of :mod:`~hct_cli.distributed.roster`), :mod:`~hct_cli.distributed.remote` the provider
whose calls run on workers, :mod:`~hct_cli.distributed.queue` a worker's end of the Redis
streams and :mod:`~hct_cli.distributed.worker` the worker. None of them imports redis:
:mod:`hct_cli.bus.redis` does.
"""
