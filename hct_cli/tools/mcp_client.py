"""One started MCP server, on the official ``mcp`` SDK: the only module that imports it.

:func:`open_session` starts a stdio server (on the :mod:`~hct_cli.tools.leash`, so it dies with
hct however hct dies) or connects to a streamable HTTP endpoint, and returns a
:class:`McpSession`. The SDK's client is an anyio context: it must be entered and left by one
task, so each session has an *owner* task that holds it open until :meth:`McpSession.aclose`;
calls come from any task of the loop and race the owner's death, so a server that dies, floods
or garbles its transport fails the calls waiting on it instead of hanging them.

Every failure is a :class:`~hct_cli.errors.ToolError` naming the server (and the tool), with the
last lines the server wrote to its stderr (kept in a temporary file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hct_cli.errors import ToolError
from hct_cli.score.tools import ToolServer
from hct_cli.tools.base import MAX_REPLY_BYTES, ToolReply, ToolSpec

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["START_TIMEOUT_S", "McpSession", "load_sdk", "open_session"]

#: How long a server may take to start and answer the handshake (npx may fetch a package).
START_TIMEOUT_S = 60.0
#: How long closing a session may take before its owner task is abandoned (the leash still acts).
CLOSE_TIMEOUT_S = 15.0
#: Lines of the server's stderr an error shows.
STDERR_TAIL_LINES = 20
_STDERR_TAIL_BYTES = 16 * 1024
_LEASH = Path(__file__).resolve().with_name("leash.py")


class McpSession:
    """A started server: its SDK client, held open by an owner task, and its stderr."""

    def __init__(self, server: ToolServer, stderr: IO[str] | None) -> None:
        self.server = server
        self._stderr = stderr
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._down = asyncio.Event()  # the transport is gone or unusable: calls fail at once
        self._reason = ""
        self._owner: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def _own(self, client: Client) -> None:
        """Enter the SDK client, hold it until closing, leave it (in this one task)."""
        try:
            async with client:
                self._client = client
                self._ready.set()
                await self._closing.wait()
        except asyncio.CancelledError:
            self._closed = True  # the loop is going (Ctrl-C) and nobody closed this session: close it here
            self._close_stderr()
            raise
        except Exception as error:  # the SDK raises exception groups from its task groups
            self._fail(_describe(error))
        finally:
            self._fail(self._reason or "the session is closed")

    def _fail(self, reason: str) -> None:
        if not self._down.is_set():
            self._reason = reason
            self._down.set()

    async def _on_message(self, message: Any) -> None:
        """The SDK hands transport faults here; a stream that delivers garbage is not trusted again."""
        if isinstance(message, Exception):
            if self.server.transport == "stdio":
                self._fail(f"it sent malformed JSON-RPC ({_describe(message)})")
            else:
                self._fail(f"its HTTP transport failed ({_describe(message)})")

    async def _start(self, client: Client, timeout_s: float) -> None:
        self._owner = asyncio.create_task(self._own(client), name=f"mcp:{self.server.name}")
        ready = asyncio.create_task(self._ready.wait())
        down = asyncio.create_task(self._down.wait())
        try:
            await asyncio.wait({ready, down}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.aclose()
            raise
        finally:
            ready.cancel()
            down.cancel()
        if self._client is None or self._down.is_set():
            reason = self._reason if self._down.is_set() else f"it did not answer within {timeout_s:g} s"
            await self._stop()
            error = self._error(f"cannot start: {_plain(reason)}", hint=_start_hint(self.server))
            await self.aclose()
            raise error

    async def aclose(self) -> None:
        """Stop the server and its children (stdio) or end the HTTP session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stop()
        finally:
            self._fail("the session is closed")
            self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def _stop(self) -> None:
        """Let the owner task leave the SDK client (stopping a stdio server), and wait for it."""
        self._closing.set()
        owner = self._owner
        if owner is None:
            return
        if not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), CLOSE_TIMEOUT_S)
            except asyncio.CancelledError:
                # the caller is cancelled (Ctrl-C): still see the server stopped, then go
                await asyncio.wait({owner}, timeout=CLOSE_TIMEOUT_S)
                raise
            except TimeoutError:
                owner.cancel()
                await asyncio.wait({owner}, timeout=CLOSE_TIMEOUT_S)
        if owner.done() and not owner.cancelled():
            owner.exception()  # retrieved: the failure was already recorded as the reason

    async def __aenter__(self) -> McpSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the ToolSession protocol ----------------------------------------------------------

    async def list_tools(self) -> list[ToolSpec]:
        specs: list[ToolSpec] = []
        cursor: str | None = None
        while True:
            client = self._connected(None)
            page = await self._race(client.list_tools(cursor=cursor, cache_mode="refresh"), START_TIMEOUT_S, None)
            for tool in page.tools:
                specs.append(
                    ToolSpec(
                        server=self.server.name,
                        name=tool.name,
                        description=tool.description or tool.title or "",
                        input_schema=dict(tool.input_schema or {"type": "object"}),
                        effects=self.server.effects_of(tool.name),
                        idempotent=self.server.idempotent(tool.name),
                    )
                )
            cursor = page.next_cursor
            if not cursor:
                return specs

    async def call(self, tool: str, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        client = self._connected(tool)
        result = await self._race(client.call_tool(tool, dict(arguments)), timeout_s, tool)
        texts: list[str] = []
        for block in result.content:
            text = getattr(block, "text", None)
            if isinstance(text, str):
                texts.append(text)
            else:
                texts.append(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)))
        data = result.structured_content
        if data is not None and not texts:
            texts.append(json.dumps(data, ensure_ascii=False))
        reply = ToolReply(text="\n".join(texts), is_error=bool(result.is_error), data=data)
        if reply.size > MAX_REPLY_BYTES:
            raise self._error(
                f"tool {tool!r} answered {reply.size} bytes, more than the {MAX_REPLY_BYTES} a reply may hold",
                hint="ask the tool for less (a narrower path, a smaller count), or use a tool that pages its output",
            )
        return reply

    # -- helpers ---------------------------------------------------------------------------

    def _connected(self, tool: str | None) -> Client:
        if self._client is None or self._down.is_set():
            raise self._error(self._down_message(tool), hint=_down_hint(self.server))
        return self._client

    async def _race(self, operation: Any, timeout_s: float, tool: str | None) -> Any:
        """Await ``operation`` unless the session goes down or ``timeout_s`` passes first."""
        call = asyncio.ensure_future(operation)
        down = asyncio.create_task(self._down.wait())
        try:
            await asyncio.wait({call, down}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not call.done():
                call.cancel()
                await asyncio.wait({call}, timeout=1.0)
        if call.done() and not call.cancelled():
            error = call.exception()
            if error is None:
                return call.result()
            if not self._down.is_set():
                await asyncio.sleep(0.05)  # a dying server: let the transport say so first
            reason = (self._reason or "the server is gone") if self._down.is_set() else _describe(error)
            raise self._error(f"{_what(tool)} failed: {_plain(reason)}", hint=_down_hint(self.server)) from None
        if self._down.is_set():
            raise self._error(self._down_message(tool), hint=_down_hint(self.server))
        raise self._error(
            f"{_what(tool)} did not answer within {timeout_s:g} s",
            hint="raise the server's timeout_s in the score's tools: section, or ask the tool for less",
        )

    def _down_message(self, tool: str | None) -> str:
        return f"{_what(tool)} cannot be served: {self._reason or 'the server is gone'}"

    def _error(self, message: str, *, hint: str) -> ToolError:
        tail = self.stderr_tail()
        text = f"tool server {self.server.name!r}: {message}"
        if tail:
            text += "\nits stderr ends with:\n" + tail
        return ToolError(text, hint=hint)

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        """The last ``lines`` lines the server wrote to its stderr ("" for an HTTP server)."""
        if self._stderr is None:
            return ""
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - _STDERR_TAIL_BYTES)
            raw = os.pread(fd, size - start, start)
        except (OSError, ValueError):
            return ""
        return "\n".join(raw.decode("utf-8", "replace").splitlines()[-lines:])


def _what(tool: str | None) -> str:
    return f"tool {tool!r}" if tool is not None else "listing its tools"


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _plain(reason: str) -> str:
    if reason == "Connection closed":
        return "the server closed the connection (it exited, or closed its stdout)"
    return reason


def _start_hint(server: ToolServer) -> str:
    if server.transport == "http":
        return f"check that a server answers at {server.url} (and its headers_env variables)"
    return "check the server's command in the score's tools: section; its stderr is shown above"


def _down_hint(server: ToolServer) -> str:
    if server.transport == "http":
        return f"check the server at {server.url}; the run goes on without this call"
    return "the server stopped or broke its transport (its stderr is shown above); fix it and run again"


def _quiet_sdk_logs() -> None:
    """The SDK logs transport faults with tracebacks; hct reports them as ToolErrors instead."""
    logger = logging.getLogger("mcp")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


def load_sdk() -> None:
    """Import the SDK's client and both transports now (about half a second, all synchronous)."""
    import httpx2  # noqa: F401
    import mcp
    import mcp.client.stdio
    import mcp.client.streamable_http  # noqa: F401


async def open_session(
    server: ToolServer, argv: Sequence[str], env: Mapping[str, str], headers: Mapping[str, str]
) -> McpSession:
    """Start ``server`` (stdio: ``argv`` with exactly ``env``; HTTP: its url with ``headers``).

    Raises :class:`~hct_cli.errors.ToolError` when it cannot start or does not answer the
    handshake within ``server.timeout_s`` (or :data:`START_TIMEOUT_S`).
    """
    from mcp import Client, StdioServerParameters

    _quiet_sdk_logs()
    timeout_s = max(server.timeout_s or 0.0, START_TIMEOUT_S)
    if server.transport == "http":
        session = McpSession(server, None)
        client = Client(
            _http_transport(str(server.url), headers),
            mode="legacy",
            cache=None,
            message_handler=session._on_message,
        )
    else:
        if not argv:
            raise ToolError(f"tool server {server.name!r} has no command", hint="give it a command: or a url:")
        stderr = tempfile.TemporaryFile("w+", encoding="utf-8", prefix=f"hct-{server.name}-")  # noqa: SIM115 (the session closes it)
        session = McpSession(server, stderr)
        keep = [flag for name in env for flag in ("--keep", name)]
        parameters = StdioServerParameters(
            command=sys.executable,
            args=["-I", str(_LEASH), "--parent", str(os.getpid()), *keep, "--", *argv],
            env=dict(env),
            encoding_error_handler="replace",  # undecodable bytes become a parse error, not a dead reader
        )
        client = Client(
            _stdio_transport(parameters, stderr), mode="legacy", cache=None, message_handler=session._on_message
        )
    await session._start(client, timeout_s)
    return session


def _stdio_transport(parameters: Any, stderr: IO[str]) -> Any:
    from mcp.client.stdio import stdio_client

    return stdio_client(parameters, errlog=stderr)  # type: ignore[arg-type]


def _http_transport(url: str, headers: Mapping[str, str]) -> Any:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    @contextlib.asynccontextmanager
    async def transport() -> Any:
        limit = 4 * MAX_REPLY_BYTES + (64 << 10)
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with (
            httpx2.AsyncClient(headers=dict(headers), timeout=timeout) as http,
            streamable_http_client(url, http_client=http, max_sse_event_size=limit) as streams,
        ):
            yield streams

    return transport()
