"""Distributed mode: model calls issued over a bus to ``hct worker`` processes on any machine.

:mod:`~hct_cli.distributed.work` is the wire format of a call and its result,
:mod:`~hct_cli.distributed.remote` the conductor's side (a provider whose calls run on workers),
:mod:`~hct_cli.distributed.queue` a worker's end of the Redis streams and
:mod:`~hct_cli.distributed.worker` the worker. None of them imports redis:
:mod:`hct_cli.bus.redis` does.
"""
