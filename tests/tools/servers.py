"""Real MCP servers for the tool tests, and what they need: a free port, a git repository, node.

The in-tree counter server (``tests/resources/mcp_counter_server.py``) runs over streamable HTTP
(:func:`counter_http_server`) or stdio (:func:`counter_stdio_argv`); its state file, read with
:func:`counter_state`, shows what it saw. :func:`git_repo` makes a repository for
``mcp-server-git``; :func:`filesystem_server_argv` finds the npm filesystem server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
COUNTER_SERVER = RESOURCES / "mcp_counter_server.py"


def free_port() -> int:
    """A loopback TCP port nobody listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def counter_stdio_argv(state: Path) -> list[str]:
    """The argv that runs the counter server over stdio, keeping its state in ``state``."""
    return [sys.executable, str(COUNTER_SERVER), "--stdio", "--state", str(state)]


def counter_state(path: Path) -> dict[str, Any]:
    """What the counter server saw: ``appends``, ``log``, ``in_flight``, ``max_in_flight``, ``pid``."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@contextmanager
def counter_http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The counter server on a free loopback port: yields (its ``/mcp`` url, its state file).

    Returns once the port answers; stops the server (and waits for it) on the way out.
    """
    port = free_port()
    state = tmp_path / f"counter-{port}.json"
    log = (tmp_path / f"counter-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(COUNTER_SERVER), "--http", str(port), "--state", str(state)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the counter server exited with {process.returncode}; see {log.name}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the counter server did not listen on port {port}; see {log.name}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp", state
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test Author", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def git_repo(tmp_path: Path) -> Path:
    """A small repository made by the real ``git``: three commits, a clean tree on ``main``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# demo\n", encoding="utf-8")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "Add a readme")
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    _git(repo, "add", "app.py")
    _git(repo, "commit", "-q", "-m", "Add the adder")
    (repo / "app.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n", encoding="utf-8"
    )
    _git(repo, "commit", "-q", "-am", "Add the subtracter")
    return repo


def git(repo: Path, *args: str) -> str:
    """The output of the real ``git`` in ``repo`` (what the git server's answers are checked against)."""
    return _git(repo, *args)


def filesystem_server_argv(root: Path) -> list[str] | None:
    """The argv of the npm filesystem server serving ``root``.

    ``$HCT_NODE_MODULES/.bin/mcp-server-filesystem`` when present, else ``npx -y``. Skips the test
    when node is absent, unless ``HCT_REQUIRE_NODE`` is set (then the test fails).
    """
    if shutil.which("node") is None or shutil.which("npx") is None:
        if os.environ.get("HCT_REQUIRE_NODE"):
            pytest.fail("node and npx are required (HCT_REQUIRE_NODE is set) but absent")
        pytest.skip("node is absent; set HCT_REQUIRE_NODE=1 to insist")
        return None
    modules = os.environ.get("HCT_NODE_MODULES") or str(Path.home() / ".cache" / "hct-npm" / "node_modules")
    binary = Path(modules) / ".bin" / "mcp-server-filesystem"
    if binary.exists():
        return [str(binary), str(root)]
    return [str(shutil.which("npx")), "-y", "@modelcontextprotocol/server-filesystem", str(root)]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace").rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has exited, only its entry waits)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid``, read from the process table."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_gone(pids: set[int], within_s: float = 20.0) -> set[int]:
    """Poll the process table until none of ``pids`` lives; returns those still alive at the end."""
    deadline = time.monotonic() + within_s
    while True:
        left = {pid for pid in pids if alive(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
