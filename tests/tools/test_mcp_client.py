"""The MCP client against real servers: mcp-server-git over stdio, the counter server over stdio
and HTTP; faults end in a ToolError naming the server with its stderr, and leave no process behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hct_cli.errors import ToolError
from hct_cli.score.tools import ToolServer
from hct_cli.tools.mcp_client import McpSession, open_session
from tests.tools.servers import counter_state, descendants, git, wait_gone

ENV = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}


def git_argv(repo: Path) -> list[str]:
    return [sys.executable, "-m", "mcp_server_git", "--repository", str(repo)]


async def open_stdio(name: str, argv: list[str]) -> McpSession:
    return await open_session(ToolServer(name=name, command=tuple(argv), effects="read"), argv, ENV, {})


def test_git_server_lists_its_tools_and_answers_like_git(temp_git_repo: Path) -> None:
    repo = str(temp_git_repo)

    async def scenario() -> None:
        async with await open_stdio("git", git_argv(temp_git_repo)) as session:
            specs = {spec.name: spec for spec in await session.list_tools()}
            assert {"git_log", "git_status", "git_show"} <= set(specs)
            assert specs["git_log"].effects == "read"
            assert specs["git_log"].input_schema["required"] == ["repo_path"]
            log = await session.call("git_log", {"repo_path": repo, "max_count": 3}, 30)
            shas = git(temp_git_repo, "log", "--format=%H").split()
            assert re.findall(r"Commit: ([0-9a-f]{40})", log.text) == shas
            assert not log.is_error
            status = await session.call("git_status", {"repo_path": repo}, 30)
            assert "On branch main" in status.text and "working tree clean" in status.text
            head = git(temp_git_repo, "rev-parse", "HEAD").strip()
            show = await session.call("git_show", {"repo_path": repo, "revision": head}, 30)
            assert head in show.text
            diff = git(temp_git_repo, "show", "--format=", "HEAD")
            added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
            assert added and all(line in show.text for line in added)

    asyncio.run(scenario())


def test_http_server_lists_echoes_and_appends_once(counter_http: tuple[str, Path]) -> None:
    url, state = counter_http
    server = ToolServer(name="counter", url=url, effects="read")

    async def scenario() -> None:
        async with await open_session(server, (), {}, {}) as session:
            names = {spec.name for spec in await session.list_tools()}
            assert {"echo", "append", "count", "slow"} <= names
            assert (await session.call("echo", {"text": "héllo"}, 10)).text == "héllo"
            reply = await session.call("append", {"text": "one"}, 10)
            assert reply.text == "appended 1"
            assert (await session.call("count", {}, 10)).data == {"result": 1}

    asyncio.run(scenario())
    assert counter_state(state)["appends"] == 1
    assert counter_state(state)["log"] == ["one"]


def test_a_flood_or_a_dead_http_server_is_a_tool_error(counter_http: tuple[str, Path]) -> None:
    url, _ = counter_http
    server = ToolServer(name="remote", url=url, effects="read")

    async def scenario() -> None:
        async with await open_session(server, (), {}, {}) as session:
            with pytest.raises(ToolError) as flood:
                await session.call("huge", {"mb": 10}, 60)
            assert "'remote'" in flood.value.message and "huge" in flood.value.message
            assert (await session.call("echo", {"text": "still here"}, 10)).text == "still here"
            with pytest.raises(ToolError) as crash:
                await session.call("crash", {}, 30)
            assert "'remote'" in crash.value.message and "crash" in crash.value.message
            with pytest.raises(ToolError) as gone:
                await session.call("echo", {"text": "anyone?"}, 30)
            assert "'remote'" in gone.value.message and url in gone.value.hint

    asyncio.run(scenario())


def test_a_tool_error_is_a_reply_not_an_exception(counter_stdio: tuple[list[str], Path]) -> None:
    argv, _ = counter_stdio

    async def scenario() -> None:
        async with await open_stdio("counter", argv) as session:
            reply = await session.call("slow", {"ms": "not a number"}, 10)
            assert reply.is_error and reply.text

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("tool", "arguments", "timeout_s", "says"),
    [
        ("crash", {}, 30.0, "closed the connection"),
        ("hang", {}, 1.0, "did not answer within 1 s"),
        ("garble", {}, 30.0, "malformed JSON-RPC"),
        ("huge", {"mb": 10}, 90.0, "more than the 1048576"),
    ],
)
def test_a_faulty_call_is_a_tool_error_and_leaves_no_process(
    counter_stdio: tuple[list[str], Path], tool: str, arguments: dict[str, int], timeout_s: float, says: str
) -> None:
    argv, state = counter_stdio
    before = descendants(os.getpid())

    async def scenario() -> set[int]:
        session = await open_stdio("counter", argv)
        started = descendants(os.getpid()) - before
        assert counter_state(state)["pid"] in started
        try:
            with pytest.raises(ToolError) as caught:
                await session.call(tool, arguments, timeout_s)
        finally:
            await session.aclose()
        message = caught.value.message
        assert "'counter'" in message and tool in message and says in message
        assert "counter server: pid" in message  # the stderr tail
        assert caught.value.hint
        return started

    started = asyncio.run(scenario())
    assert wait_gone(started) == set()


def test_a_server_that_cannot_start_is_a_tool_error_with_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.stderr.write('broken server: missing configuration\\n')\nsys.exit(2)\n")

    async def scenario() -> None:
        with pytest.raises(ToolError) as caught:
            await open_stdio("broken", [sys.executable, str(script)])
        assert "'broken'" in caught.value.message and "cannot start" in caught.value.message
        assert "broken server: missing configuration" in caught.value.message
        with pytest.raises(ToolError) as missing:
            await open_stdio("absent", [str(tmp_path / "no-such-program")])
        assert "'absent'" in missing.value.message and "no-such-program" in missing.value.message

    asyncio.run(scenario())


def test_a_cancelled_caller_leaves_no_server(counter_stdio: tuple[list[str], Path]) -> None:
    argv, state = counter_stdio

    async def scenario() -> int:
        opened = asyncio.Event()

        async def caller() -> None:
            async with await open_stdio("counter", argv) as session:
                opened.set()
                await session.call("hang", {}, 600)

        task = asyncio.create_task(caller())
        await opened.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(counter_state(state)["pid"])

    pid = asyncio.run(scenario())
    assert wait_gone({pid}) == set()


def test_an_unclosed_session_dies_with_its_loop(counter_stdio: tuple[list[str], Path]) -> None:
    """Ctrl-C: asyncio.run cancels what is left; the owner task stops the server on its way out."""
    argv, state = counter_stdio

    async def scenario() -> None:
        await open_stdio("counter", argv)

    asyncio.run(scenario())
    assert wait_gone({int(counter_state(state)["pid"])}) == set()


def test_kill_9_of_the_owning_process_leaves_no_server(counter_stdio: tuple[list[str], Path], tmp_path: Path) -> None:
    argv, state = counter_stdio
    owner = tmp_path / "owner.py"
    owner.write_text(
        textwrap.dedent(
            f"""
            import asyncio, os, sys
            from hct_cli.score.tools import ToolServer
            from hct_cli.tools.mcp_client import open_session

            async def main():
                argv = {argv!r}
                env = {{"PATH": os.environ["PATH"]}}
                await open_session(ToolServer(name="counter", command=tuple(argv)), argv, env, {{}})
                print("ready", flush=True)
                await asyncio.sleep(600)

            asyncio.run(main())
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(owner)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        tree = descendants(process.pid)
        pid = int(counter_state(state)["pid"])
        assert pid in tree
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert wait_gone(tree) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_importing_the_tools_package_does_not_import_mcp() -> None:
    code = (
        "import sys, hct_cli.tools.base, hct_cli.tools.toolbox, hct_cli.tools.mcp_client; "
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_a_grandchild_that_left_the_group_goes_too(counter_stdio: tuple[list[str], Path], tmp_path: Path) -> None:
    """Like npx starting node: the server starts a child in a session of its own, then serves."""
    argv, state = counter_stdio
    pidfile = tmp_path / "grandchild.pid"
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        textwrap.dedent(
            f"""
            import os, subprocess, sys
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
            open({str(pidfile)!r}, "w").write(str(child.pid))
            os.execv(sys.executable, {argv!r})
            """
        )
    )

    async def scenario() -> None:
        async with await open_stdio("wrapped", [sys.executable, str(wrapper)]) as session:
            assert (await session.call("echo", {"text": "up"}, 10)).text == "up"

    asyncio.run(scenario())
    grandchild = int(pidfile.read_text())
    assert wait_gone({grandchild, int(counter_state(state)["pid"])}) == set()
