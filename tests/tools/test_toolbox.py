"""The tool box of a run against real servers: first use starts a server once, functional units
bound the calls in flight, environments carry only what is declared, stdio needs --allow-exec."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from hct_cli.errors import ExecNotAllowedError, ToolError
from hct_cli.score.model import Agent
from hct_cli.score.tools import ToolRule, ToolServer
from hct_cli.tools.toolbox import EXEC_HINT, McpToolBox
from tests.tools.servers import counter_state, descendants, filesystem_server_argv, git, wait_gone


def counter_server(argv: list[str], **fields: object) -> ToolServer:
    return ToolServer(name="counter", command=tuple(argv), effects="read", **fields)  # type: ignore[arg-type]


def test_ten_calls_on_a_unit_of_two_keep_two_in_flight(counter_http: tuple[str, Path]) -> None:
    url, state = counter_http
    server = ToolServer(name="counter", url=url, effects="read", concurrency=2)

    async def scenario() -> None:
        async with McpToolBox({"counter": server}, inputs={}, allow_exec=False) as box:
            specs = {spec.name: spec for spec in await box.list_server("counter")}
            replies = await asyncio.gather(
                *(box.call(specs["slow"], {"ms": 150, "text": str(n)}, 30) for n in range(10))
            )
            assert [reply.text for reply in replies] == [str(n) for n in range(10)]

    asyncio.run(scenario())
    assert counter_state(state)["max_in_flight"] == 2


def test_concurrent_first_callers_share_one_start(counter_stdio: tuple[list[str], Path]) -> None:
    argv, _ = counter_stdio

    async def scenario() -> None:
        async with McpToolBox({"counter": counter_server(argv)}, inputs={}, allow_exec=True) as box:
            before = descendants(os.getpid())
            listings = await asyncio.gather(*(box.list_server("counter") for _ in range(5)))
            assert all(listing is listings[0] for listing in listings)
            sessions = await asyncio.gather(*(box.session("counter") for _ in range(5)))
            assert len({id(session) for session in sessions}) == 1
            started = descendants(os.getpid()) - before
            commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in started]
            script = argv[1].encode()
            servers = [command for command in commands if command[1:2] == [script]]  # the leash's is "-I"
            assert len(servers) == 1  # one server process (under one leash)

    asyncio.run(scenario())


def test_a_server_sees_only_the_base_environment_and_its_declared_env(counter_stdio: tuple[list[str], Path]) -> None:
    argv, _ = counter_stdio
    environ = {"PATH": os.environ["PATH"], "HOME": "/home/test", "HCT_SECRET": "s3cr3t", "OTHER": "x"}

    async def env_of(server: ToolServer, name: str) -> str:
        async with McpToolBox({"counter": server}, inputs={}, allow_exec=True, environ=environ) as box:
            specs = {spec.name: spec for spec in await box.list_server("counter")}
            return (await box.call(specs["env"], {"name": name}, 10)).text

    undeclared = counter_server(argv)
    declared = counter_server(argv, env=("HCT_SECRET",))
    assert asyncio.run(env_of(undeclared, "HCT_SECRET")) == ""
    assert asyncio.run(env_of(declared, "HCT_SECRET")) == "s3cr3t"
    assert asyncio.run(env_of(undeclared, "PATH")) == os.environ["PATH"]
    assert asyncio.run(env_of(undeclared, "HOME")) == "/home/test"
    assert asyncio.run(env_of(declared, "OTHER")) == ""
    assert asyncio.run(env_of(declared, "PYTHONPATH")) == ""


def test_a_stdio_server_needs_allow_exec_or_trust(counter_stdio: tuple[list[str], Path]) -> None:
    argv, state = counter_stdio
    server = counter_server(argv)
    seen: list[str] = []

    async def scenario() -> None:
        async with McpToolBox({"counter": server}, inputs={}, allow_exec=False) as box:
            with pytest.raises(ExecNotAllowedError) as refused:
                await box.list_server("counter")
            assert "'counter'" in refused.value.message and refused.value.hint == EXEC_HINT
        assert not state.exists()  # nothing was started

        def trusted(candidate: ToolServer) -> bool:
            seen.append(candidate.name)
            return True

        async with McpToolBox({"counter": server}, inputs={}, allow_exec=False, trusted=trusted) as box:
            assert "echo" in {spec.name for spec in await box.list_server("counter")}

    asyncio.run(scenario())
    assert seen == ["counter"]
    assert wait_gone({int(counter_state(state)["pid"])}) == set()


def test_the_git_server_through_a_box_with_an_input_template(temp_git_repo: Path) -> None:
    server = ToolServer(
        name="git",
        command=(sys.executable, "-m", "mcp_server_git", "--repository", "{{ inputs.repo }}"),
        effects="read",
        tools=MappingProxyType({"git_commit": ToolRule(effects="write")}),
    )
    agent = Agent(name="reviewer", index=0, tools=("git.git_log", "git.git_commit"))

    async def scenario() -> None:
        async with McpToolBox({"git": server}, inputs={"repo": str(temp_git_repo)}, allow_exec=True) as box:
            specs = await box.tools_for(agent)
            assert [spec.qualified for spec in specs] == ["git.git_log", "git.git_commit"]
            assert [spec.effects for spec in specs] == ["read", "write"]
            reply = await box.call(specs[0], {"repo_path": str(temp_git_repo), "max_count": 1}, 30)
            assert git(temp_git_repo, "log", "-1", "--format=%H").strip() in reply.text
            everything = await box.tools_for(Agent(name="all", index=1, tools=("git.*",)))
            assert len(everything) == len(await box.list_server("git")) > 3
            with pytest.raises(ToolError) as unknown:
                await box.tools_for(Agent(name="bad", index=2, tools=("git.git_nope",)))
            assert "git_nope" in unknown.value.message and "hct tools" in unknown.value.hint
            with pytest.raises(ToolError) as no_server:
                await box.tools_for(Agent(name="bad", index=3, tools=("fs.read_file",)))
            assert "'fs'" in no_server.value.message

    asyncio.run(scenario())


def test_a_missing_input_or_header_variable_is_a_tool_error(counter_http: tuple[str, Path]) -> None:
    url, _ = counter_http
    templated = ToolServer(name="t", command=("prog", "{{ inputs.repo }}"))
    headed = ToolServer(name="h", url=url, headers_env=MappingProxyType({"Authorization": "HCT_TEST_TOKEN"}))

    async def scenario() -> None:
        async with McpToolBox({"t": templated, "h": headed}, inputs={}, allow_exec=True, environ={}) as box:
            with pytest.raises(ToolError) as no_input:
                await box.list_server("t")
            assert "'repo'" in no_input.value.message and "--input repo=" in no_input.value.hint
            with pytest.raises(ToolError) as no_variable:
                await box.list_server("h")
            assert "HCT_TEST_TOKEN" in no_variable.value.message and "HCT_TEST_TOKEN" in no_variable.value.hint
        environ = {"HCT_TEST_TOKEN": "Bearer t"}
        async with McpToolBox({"h": headed}, inputs={}, allow_exec=False, environ=environ) as box:
            assert "echo" in {spec.name for spec in await box.list_server("h")}

    asyncio.run(scenario())


def test_the_npm_filesystem_server_reads_what_is_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / "notes.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    (root / "sub").mkdir()
    argv = filesystem_server_argv(root)
    assert argv is not None
    server = ToolServer(name="fs", command=tuple(argv), effects="read")
    before = descendants(os.getpid())

    async def scenario() -> set[int]:
        async with McpToolBox({"fs": server}, inputs={}, allow_exec=True) as box:
            specs = {spec.name: spec for spec in await box.list_server("fs")}
            listing = await box.call(specs["list_directory"], {"path": str(root)}, 60)
            assert "[FILE] notes.txt" in listing.text and "[DIR] sub" in listing.text
            content = await box.call(specs["read_text_file"], {"path": str(root / "notes.txt")}, 60)
            assert content.text == (root / "notes.txt").read_text(encoding="utf-8")
            outside = await box.call(specs["read_text_file"], {"path": "/etc/hostname"}, 60)
            assert outside.is_error
            return descendants(os.getpid()) - before

    started = asyncio.run(scenario())
    assert started and wait_gone(started) == set()


def test_aclose_is_idempotent_and_stops_every_server(counter_stdio: tuple[list[str], Path], tmp_path: Path) -> None:
    argv, state = counter_stdio
    other_state = tmp_path / "other.json"
    other_argv = [*argv[:-1], str(other_state)]
    servers = {"a": counter_server(argv), "b": ToolServer(name="b", command=tuple(other_argv))}

    async def scenario() -> None:
        box = McpToolBox(servers, inputs={}, allow_exec=True)
        listed, _ = await asyncio.gather(box.list_server("a"), box.list_server("b"))
        await box.aclose()
        await box.aclose()
        echo = next(spec for spec in listed if spec.name == "echo")
        with pytest.raises(ToolError):
            await box.call(echo, {"text": "after the end"}, 10)

    asyncio.run(scenario())
    pids = {int(counter_state(state)["pid"]), int(counter_state(other_state)["pid"])}
    assert wait_gone(pids) == set()
