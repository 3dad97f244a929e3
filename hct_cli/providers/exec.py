"""Run ``kind: python`` and ``kind: shell`` agents. Only ever built with ``--allow-exec``.

A python agent's function receives one read-only mapping (``cues``, ``inputs``, ``state``: the
keys it reads, ``reference_frame``) and returns text or JSON data; changing the mapping fails the
agent with :class:`~hct_cli.errors.AccessError`. A shell agent's command is an argv list run
without a shell, whose standard output is the result. Both run under a timeout: the agent's
``timeout_s``, else its tempo's.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from hct_cli.call_result import CallResult
from hct_cli.errors import AccessError
from hct_cli.providers.base import CallRequest, ProviderError, timeout_for
from hct_cli.score.template import render

__all__ = ["ExecProvider", "call_function", "load_callable"]

_MAX_OUTPUT = 1 << 20


def load_callable(target: str, who: str) -> Callable[..., Any]:
    """The function a ``module:function`` target names; ``who`` wants it (for the message)."""
    module_name, _, function_name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ProviderError(
            f"{who}: cannot import {target}: {exc}",
            hint="Check that the module is importable from the working directory (PYTHONPATH).",
        ) from exc
    if not callable(function):
        raise ProviderError(f"{who}: {target} is not a function", hint="Name a function as module:function.")
    return function  # type: ignore[no-any-return]


async def call_function(function: Callable[..., Any], argument: Any, timeout_s: float | None) -> Any:
    """Call ``function(argument)``: a coroutine function on the loop, any other in a thread (so
    a slow one never stalls the run); raises TimeoutError past ``timeout_s``."""
    if inspect.iscoroutinefunction(function):
        return await asyncio.wait_for(function(argument), timeout_s)
    result = await asyncio.wait_for(asyncio.to_thread(function, argument), timeout_s)
    if inspect.isawaitable(result):
        result = await asyncio.wait_for(result, timeout_s)
    return result


class ExecProvider:
    """Calls Python functions and runs commands for the agents that ask for it."""

    async def call(self, request: CallRequest) -> CallResult:
        started = time.perf_counter()
        agent = request.agent
        if agent.kind == "python":
            output = await self._python(request)
        elif agent.kind == "shell":
            output = await self._shell(request)
        else:
            raise ProviderError(f"agent {agent.name!r} of kind {agent.kind!r} is not run by the exec provider")
        return CallResult(output=output, model=agent.kind, latency_s=time.perf_counter() - started)

    @staticmethod
    async def _python(request: CallRequest) -> Any:
        # Imported here: the engine imports this module (its gates call python checks), so the
        # registry can load this provider before the engine or after it.
        from hct_cli.providers.enclave import ReadOnlyError, readonly

        agent = request.agent
        assert agent.call is not None
        function = load_callable(agent.call, f"agent {agent.name!r}")
        timeout = timeout_for(request)
        try:
            return await call_function(function, readonly(request.context), timeout)
        except TimeoutError as exc:
            raise ProviderError(
                f"agent {agent.name!r}: {agent.call} timed out after {timeout:g}s",
                hint="Give the agent a larger timeout_s if the function needs longer.",
            ) from exc
        except ReadOnlyError as exc:
            raise AccessError(
                f"agent {agent.name!r}: {agent.call} tried to change what it was given to read "
                "(its cues, the inputs, the state it reads, the reference frame)",
                hint="Return the new value as the agent's result; declare the keys it changes in writes or appends.",
            ) from exc
        except Exception as exc:
            raise ProviderError(f"agent {agent.name!r}: {agent.call} raised {type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def _shell(request: CallRequest) -> str:
        agent = request.agent
        argv = [render(item, request.context) if "{{" in item else item for item in agent.command]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            raise ProviderError(
                f"agent {agent.name!r}: cannot run {argv[0]!r}: {exc.strerror or exc}",
                hint="Check that the command exists on PATH.",
            ) from exc
        timeout = timeout_for(request)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise ProviderError(
                f"agent {agent.name!r}: command timed out after {timeout:g}s",
                hint="Give the agent a larger timeout_s if the command needs longer.",
            ) from exc
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-500:]
            raise ProviderError(f"agent {agent.name!r}: {argv[0]} exited {process.returncode}: {tail}")
        return stdout[:_MAX_OUTPUT].decode("utf-8", "replace")
