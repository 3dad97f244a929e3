"""A worker's tool servers (``on: worker``), in process against the real counter server over stdio.

What a worker answers to tool work items: the listing, calls (redacted with the worker's own
secrets), a refusal to start a program without the worker's consent (``--allow-exec`` or its
allow list), a write delivered a second time answered in doubt and not made again (the server's
counter proves it), and the servers of a run stopped when the run ends (the process table).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hct_cli.distributed.tool_host import ToolHost
from hct_cli.distributed.tool_work import ToolAnswer, ToolWork, command_inputs, decode_tool_work
from hct_cli.distributed.work import decode_item
from hct_cli.score.tools import ToolServer, tool_servers_from_data
from hct_cli.tools.trust import fingerprint
from tests.tools.servers import alive, counter_state, counter_stdio_argv, wait_gone

pytestmark = pytest.mark.timeout(60)


def _server(state: Path, **extra: object) -> ToolServer:
    entry = {
        "command": counter_stdio_argv(state),
        "env": ["HCT_TEST_ROLE"],
        "effects": "read",
        "on": "worker",
        "tools": {"append": {"effects": "write"}, "append_slow": {"effects": "write"}},
        **extra,
    }
    return tool_servers_from_data({"counter": entry})["counter"]


def _work(server: ToolServer, op: str = "call", run: str = "run1", **fields: object) -> ToolWork:
    item = ToolWork(run, "t-" + str(fields.get("tool", op)), "call" if op == "call" else "list", server, **fields)  # type: ignore[arg-type]
    return decode_tool_work(_parsed(item.encode()))  # as a worker receives it


def _parsed(text: str) -> dict[str, object]:
    import json

    data: dict[str, object] = json.loads(text)
    return data


def test_a_tool_work_item_travels_whole_and_is_told_apart_from_a_model_call(tmp_path: Path) -> None:
    server = _server(tmp_path / "s.json", timeout_s=3.5, concurrency=2)
    item = ToolWork(
        "run1", "abc", "call", server, {"repo": "/r"}, "append", {"text": "x"}, 9.0, "scout", 2, tier="cheap"
    )
    back = decode_item(item.encode())
    assert back == item
    assert isinstance(back, ToolWork) and back.writes and back.tag == "counter.append"
    # The entry a worker fingerprints is the one the score wrote: hct tools --trust there matches.
    assert fingerprint(back.server) == fingerprint(server)
    assert not ToolWork("r", "t", "call", server, tool="echo").writes
    assert not ToolWork("r", "t", "list", server).writes
    with pytest.raises(ValueError, match="not a tool work item"):
        decode_item('{"kind": "tool", "op": "drop"}')


def test_only_the_inputs_a_command_names_travel() -> None:
    server = tool_servers_from_data(
        {"git": {"command": ["git-mcp", "--repository", "{{ inputs.repo }}"], "on": "worker"}}
    )["git"]
    assert command_inputs(server, {"repo": "/src", "secret_plan": "no"}) == {"repo": "/src"}


def test_a_worker_lists_and_calls_with_its_own_environment_and_redacts_its_secrets(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    server = _server(state)
    environ = {"PATH": "/usr/bin:/bin", "HCT_TEST_ROLE": "worker", "OPENAI_API_KEY": "sk-worker-secret-123456"}

    async def main() -> tuple[ToolAnswer, ToolAnswer, ToolAnswer, ToolAnswer]:
        host = ToolHost("wA", allow_exec=True, environ=environ)
        try:
            listed = await host.answer(_work(server, "list"))
            role = await host.answer(_work(server, tool="env", arguments={"name": "HCT_TEST_ROLE"}))
            secret = await host.answer(_work(server, tool="echo", arguments={"text": "key sk-worker-secret-123456"}))
            undeclared = await host.answer(_work(server, tool="env", arguments={"name": "OPENAI_API_KEY"}))
            return listed, role, secret, undeclared
        finally:
            await host.aclose()

    import os

    os.environ["OPENAI_API_KEY"] = "sk-worker-secret-123456"  # what the worker's redactor knows of
    try:
        listed, role, secret, undeclared = asyncio.run(main())
    finally:
        del os.environ["OPENAI_API_KEY"]
    names = {tool["name"] for tool in listed.tools}
    assert {"echo", "append", "append_slow", "env"} <= names and listed.ok and listed.worker == "wA"
    assert (role.ok, role.text) == (True, "worker")
    assert "sk-worker-secret-123456" not in secret.text and secret.text.startswith("key ")
    assert undeclared.text == ""  # a variable the entry does not declare never reaches the server


def test_a_worker_starts_no_program_without_its_own_consent(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    server = _server(state)

    async def answer(host: ToolHost) -> ToolAnswer:
        try:
            return await host.answer(_work(server, "list"))
        finally:
            await host.aclose()

    refused = asyncio.run(answer(ToolHost("wA")))
    assert not refused.ok and "runs a program" in (refused.error or "")
    assert "--allow-exec" in (refused.hint or "") and "hct tools --trust" in (refused.hint or "")
    assert not state.exists()  # it never started
    trusted = asyncio.run(answer(ToolHost("wA", trusted=lambda entry: fingerprint(entry) == fingerprint(server))))
    assert trusted.ok and trusted.tools


def test_a_write_delivered_twice_is_in_doubt_and_never_made_again(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    server = _server(state)

    async def main() -> list[ToolAnswer]:
        host = ToolHost("wB", allow_exec=True)
        try:
            first = await host.answer(_work(server, tool="append", arguments={"text": "once"}))
            again = await host.answer(_work(server, tool="append", arguments={"text": "twice"}), deliveries=2)
            read = await host.answer(_work(server, tool="count"), deliveries=2)  # a read is made again
            return [first, again, read]
        finally:
            await host.aclose()

    first, again, read = asyncio.run(main())
    assert first.ok and first.text == "appended 1"
    assert again.in_doubt and not again.ok and "may have happened" in (again.error or "")
    assert "--resend-writes" in (again.hint or "")
    assert read.ok and read.text == "1"
    assert counter_state(state)["appends"] == 1 and counter_state(state)["log"] == ["once"]

    idempotent = _server(tmp_path / "i.json", tools={"append": {"effects": "write", "idempotent": True}})

    async def resend() -> ToolAnswer:
        host = ToolHost("wB", allow_exec=True)
        try:
            return await host.answer(_work(idempotent, tool="append", arguments={"text": "again"}), deliveries=2)
        finally:
            await host.aclose()

    assert asyncio.run(resend()).text == "appended 1"


def test_the_servers_of_a_run_stop_when_it_ends_and_others_keep_theirs(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"

    async def main() -> tuple[int, int, bool, bool]:
        host = ToolHost("wA", allow_exec=True)
        try:
            await host.answer(_work(_server(one), "list", run="r1"))
            await host.answer(_work(_server(two), "list", run="r2"))
            assert host.running == [("r1", "counter"), ("r2", "counter")]
            pids = counter_state(one)["pid"], counter_state(two)["pid"]
            host.retire(["r2"])  # r1 ended
            left = await asyncio.to_thread(wait_gone, {pids[0]})
            still = alive(pids[1])
            return pids[0], pids[1], not left, still
        finally:
            await host.aclose()

    _first, second, stopped, kept = asyncio.run(main())
    assert stopped and kept
    assert not wait_gone({second})  # and the worker's stop takes the rest
