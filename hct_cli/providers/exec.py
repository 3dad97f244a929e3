"""Run ``kind: python`` and ``kind: shell`` agents. Only ever built with ``--allow-exec``.

A python agent's function receives one mapping (its cues, the inputs, the state keys it reads)
and returns text or JSON data; a shell agent's command is an argv list run without a shell,
whose standard output is the result.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from typing import Any

from hct_cli.providers.base import CallRequest, CallResult, ProviderError
from hct_cli.score.template import render

__all__ = ["ExecProvider"]

_MAX_OUTPUT = 1 << 20


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
        agent = request.agent
        assert agent.call is not None
        module_name, _, function_name = agent.call.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as exc:
            raise ProviderError(
                f"agent {agent.name!r}: cannot import {agent.call}: {exc}",
                hint="Check that the module is importable from the working directory (PYTHONPATH).",
            ) from exc
        try:
            result = function(dict(request.context))
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise ProviderError(f"agent {agent.name!r}: {agent.call} raised {type(exc).__name__}: {exc}") from exc
        return result

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
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=agent.timeout_s)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise ProviderError(f"agent {agent.name!r}: command timed out after {agent.timeout_s}s") from exc
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-500:]
            raise ProviderError(f"agent {agent.name!r}: {argv[0]} exited {process.returncode}: {tail}")
        return stdout[:_MAX_OUTPUT].decode("utf-8", "replace")
