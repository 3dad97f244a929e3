"""A real MCP server for the tool tests: counts its writes, measures its concurrency, misbehaves on request.

Run as ``python tests/resources/mcp_counter_server.py --http PORT --state FILE`` (streamable HTTP
on 127.0.0.1, path ``/mcp``) or ``--stdio --state FILE``. The state file is JSON, rewritten
atomically after every change, so a test in another process can read what the server saw:
``appends`` (each ``append`` call, exactly once), ``log`` (the appended lines), ``in_flight``
and ``max_in_flight`` (of ``slow`` calls), ``pid``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

server: MCPServer[Any] = MCPServer("counter")
_state: dict[str, Any] = {"appends": 0, "log": [], "in_flight": 0, "max_in_flight": 0, "pid": os.getpid()}
_state_path: Path | None = None
_wire: int | None = None  # a duplicate of the stdio transport's stdout, taken before the SDK diverts fd 1


def _save() -> None:
    if _state_path is None:
        return
    tmp = _state_path.with_name(_state_path.name + ".tmp")
    tmp.write_text(json.dumps(_state), encoding="utf-8")
    os.replace(tmp, _state_path)


@server.tool()
async def echo(text: str) -> str:
    """Answer the text given (a read)."""
    return text


@server.tool()
async def slow(ms: int, text: str = "") -> str:
    """Sleep ms milliseconds, then answer the text; counts the calls in flight at once (a read)."""
    _state["in_flight"] += 1
    _state["max_in_flight"] = max(_state["max_in_flight"], _state["in_flight"])
    _save()
    try:
        await asyncio.sleep(ms / 1000)
    finally:
        _state["in_flight"] -= 1
        _save()
    return text


@server.tool()
async def append(text: str) -> str:
    """Append a line to the log and count it (a write: the counter proves it happened once)."""
    _state["appends"] += 1
    _state["log"].append(text)
    _save()
    return f"appended {_state['appends']}"


@server.tool()
async def append_slow(text: str, ms: int) -> str:
    """Append (as append does), then take ms milliseconds to answer: a write that has happened
    while its call is still out."""
    _state["appends"] += 1
    _state["log"].append(text)
    _save()
    await asyncio.sleep(ms / 1000)
    return f"appended {_state['appends']}"


@server.tool()
async def count() -> int:
    """How many appends this server has made (a read)."""
    return int(_state["appends"])


@server.tool()
async def env(name: str) -> str:
    """The value of an environment variable of the server, or "" (shows what the server inherited)."""
    return os.environ.get(name, "")


@server.tool()
async def crash() -> str:
    """Die in the middle of the call."""
    sys.stderr.write("counter server: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    sys.stderr.write("counter server: hanging on purpose\n")
    sys.stderr.flush()
    while True:
        await asyncio.sleep(3600)


@server.tool()
async def huge(mb: int) -> str:
    """Answer mb megabytes of text."""
    return "x" * (mb << 20)


@server.tool()
async def garble() -> str:
    """Write bytes that are not JSON-RPC to the stdio transport, then never answer."""
    sys.stderr.write("counter server: garbling the transport on purpose\n")
    sys.stderr.flush()
    os.write(_wire if _wire is not None else 1, b"this is not json-rpc {{{\n\x00\xff garbage\n")
    while True:
        await asyncio.sleep(3600)


def main() -> None:
    global _state_path, _wire
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--http", type=int, metavar="PORT")
    mode.add_argument("--stdio", action="store_true")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    _state_path = args.state
    _save()
    sys.stderr.write(f"counter server: pid {os.getpid()} ready\n")
    sys.stderr.flush()
    if args.stdio:
        _wire = os.dup(1)
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http, streamable_http_path="/mcp")


if __name__ == "__main__":
    main()
