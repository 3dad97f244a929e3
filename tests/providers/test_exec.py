"""The exec provider: ``kind: python`` calls a function with the agent's context mapping;
``kind: shell`` runs an argv list without a shell; failures raise :class:`ProviderError`."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from hct_cli.engine import Hands, perform
from hct_cli.program.compile import StationSpec, compile_score
from hct_cli.providers.base import CallRequest, Provider, ProviderError
from hct_cli.providers.exec import ExecProvider
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import Agent, build_score

pytestmark = pytest.mark.timeout(60)

PY = sys.executable  # "python" may not be on PATH outside an activated environment


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of agent functions, under a name no other test uses."""
    name = f"hct_agents_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            def echo(context):
                return {"cues": dict(context["cues"]), "inputs": dict(context["inputs"]),
                        "keys": sorted(context)}

            def shout(context):
                return context["cues"]["a"].upper()

            async def later(context):
                await asyncio.sleep(0)
                return "async " + context["inputs"]["word"]

            def broken(context):
                raise ValueError("bad input")
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def python_agent(call: str) -> Agent:
    return Agent(name="py", index=0, kind="python", call=call)


def shell_agent(*command: str, timeout_s: float | None = None) -> Agent:
    return Agent(name="sh", index=0, kind="shell", command=command, timeout_s=timeout_s)


def call(agent: Agent, context: dict[str, Any] | None = None) -> Any:
    req = CallRequest(agent=agent, model=agent.kind, tier=None, prompt="", context=context or {})
    return asyncio.run(ExecProvider().call(req))


def provider_for(spec: StationSpec) -> Provider:
    return ExecProvider() if spec.agent.kind in ("python", "shell") else SimulatedProvider(0, time_scale=0.0)


def test_python_agent_gets_its_cues_in_the_context(module: str) -> None:
    score = build_score(
        {
            "hct": 1,
            "name": "t",
            "inputs": {"word": {"default": "w"}},
            "agents": {
                "a": {"prompt": "a", "simulate": {"output": "hello"}},
                "b": {"prompt": "b", "simulate": {"output": {"n": 1}}},
                "py": {"kind": "python", "call": f"{module}:echo", "cues": ["a", "b"]},
                "loud": {"kind": "python", "call": f"{module}:shout", "cues": ["a"]},
            },
        }
    )
    result = asyncio.run(perform(compile_score(score), Hands(provider_for), inputs={"word": "w"}))
    assert result.status == "completed"
    record = result.agents["py"]
    keys = ["cues", "inputs", "reference_frame", "state"]  # state: only the keys it reads (none here)
    assert record.output == {"cues": {"a": "hello", "b": {"n": 1}}, "inputs": {"word": "w"}, "keys": keys}
    assert record.model == "python"
    assert record.cost_usd == 0.0
    assert result.agents["loud"].output == "HELLO"


def test_async_python_functions_are_awaited(module: str) -> None:
    result = call(python_agent(f"{module}:later"), {"cues": {}, "inputs": {"word": "hi"}})
    assert result.output == "async hi"
    assert result.model == "python"


def test_python_import_failure_raises_provider_error(module: str) -> None:
    with pytest.raises(ProviderError, match="cannot import"):
        call(python_agent(f"{module}:missing"))
    with pytest.raises(ProviderError, match="cannot import"):
        call(python_agent("hct_no_such_module_here:f"))


def test_python_exception_raises_provider_error(module: str) -> None:
    with pytest.raises(ProviderError, match=r"raised ValueError: bad input"):
        call(python_agent(f"{module}:broken"), {"cues": {}})


def test_shell_agent_returns_standard_output() -> None:
    result = call(shell_agent(PY, "-c", "print('hi')"))
    assert result.output == "hi\n"
    assert result.model == "shell"


def test_shell_arguments_are_rendered_but_never_interpreted_by_a_shell() -> None:
    hostile = "x; echo pwned $(whoami) `id`"
    agent = shell_agent(PY, "-c", "import sys; print(sys.argv[1])", "{{ cues.a }}")
    result = call(agent, {"cues": {"a": hostile}, "inputs": {}})
    assert result.output == hostile + "\n"


def test_failing_command_raises_provider_error() -> None:
    agent = shell_agent(PY, "-c", "import sys; sys.stderr.write('it broke'); sys.exit(3)")
    with pytest.raises(ProviderError) as caught:
        call(agent)
    assert "exited 3" in caught.value.message
    assert "it broke" in caught.value.message


def test_missing_command_raises_provider_error() -> None:
    with pytest.raises(ProviderError, match="cannot run"):
        call(shell_agent(f"hct-no-such-command-{uuid.uuid4().hex[:6]}"))


def test_command_timeout_raises_provider_error() -> None:
    agent = shell_agent(PY, "-c", "import time; time.sleep(30)", timeout_s=0.2)
    with pytest.raises(ProviderError, match="timed out"):
        call(agent)


def test_other_kinds_are_refused() -> None:
    with pytest.raises(ProviderError, match="not run by the exec provider"):
        call(Agent(name="l", index=0, kind="llm", prompt="p"))


def test_a_failing_shell_agent_fails_its_station_in_a_run() -> None:
    score = build_score(
        {
            "hct": 1,
            "name": "t",
            "agents": {
                "ok": {"kind": "shell", "command": [PY, "-c", "print('fine')"]},
                "bad": {"kind": "shell", "command": [PY, "-c", "raise SystemExit(2)"]},
                "after": {"kind": "shell", "command": [PY, "-c", "print('x')"], "cues": ["bad"]},
            },
        }
    )
    result = asyncio.run(perform(compile_score(score), Hands(provider_for)))
    assert result.status == "failed"
    assert result.agents["ok"].output == "fine\n"
    assert result.agents["bad"].status == "failed"
    assert "exited 2" in (result.agents["bad"].error or "")
    assert result.agents["after"].status == "skipped"
