"""The library API: ``hct_cli.perform`` and ``hct_cli.aperform`` run a score as ``hct perform`` does."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import hct_cli
from hct_cli.cli import app
from hct_cli.events import Event
from tests.conftest import REPO, SCORES

CODE_REVIEW = SCORES / "code-review.yaml"
FAST: dict[str, Any] = {"simulate": True, "time_scale": 0.01}


def test_import_is_cheap_and_lists_the_api() -> None:
    code = "import sys, hct_cli; print(sorted(m for m in sys.modules if m.startswith(('hct_cli.', 'litellm'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    for name in ("perform", "aperform", "lint", "load", "lint_path", "load_score", "RunConfig", "RunResult", "Score"):
        assert name in hct_cli.__all__
        assert getattr(hct_cli, name) is not None
    assert hct_cli.lint is hct_cli.lint_path
    assert hct_cli.load is hct_cli.load_score


def test_perform_gives_the_document_hct_perform_json_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = hct_cli.perform(str(CODE_REVIEW), simulate=True)
    assert isinstance(result, hct_cli.RunResult)
    assert result.status == "completed"
    assert result.segment == 1
    assert result.call_counts is not None and result.call_counts["paid_calls"] > 0
    monkeypatch.setenv("HCT_HOME", str(tmp_path / "cli-home"))  # a cache of its own: the same calls paid
    printed = CliRunner().invoke(app, ["perform", str(CODE_REVIEW), "--simulate", "--json"])
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.stdout)
    assert result.cost_usd == document["cost_usd"]
    ours = result.to_json()
    assert ours.keys() == document.keys()
    for key in ("status", "cost_usd", "frontier_cost_usd", "paid_calls", "cached_calls", "segment"):
        assert ours[key] == document[key], key
    assert {name: a["output"] for name, a in ours["agents"].items()} == {
        name: a["output"] for name, a in document["agents"].items()
    }


def test_aperform_runs_in_the_callers_loop_with_a_loaded_score() -> None:
    score = hct_cli.load(CODE_REVIEW)

    async def main() -> hct_cli.RunResult:
        return await hct_cli.aperform(score, **FAST)

    result = asyncio.run(main())
    assert result.status == "completed"
    assert set(result.agents) == set(score.agents)


def test_aperform_checks_the_bus_from_inside_the_callers_loop() -> None:
    # The bus is asked for an answer before the run; inside a running loop that is no asyncio.run.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed

    async def main() -> hct_cli.RunResult:
        return await hct_cli.aperform(CODE_REVIEW, bus=f"redis://127.0.0.1:{port}/0", **FAST)

    with pytest.raises(hct_cli.HctError) as info:
        asyncio.run(main())
    assert type(info.value).__name__ == "BusError"
    assert info.value.hint


def test_observers_receive_the_runs_events() -> None:
    seen: list[Event] = []
    result = hct_cli.perform(CODE_REVIEW, observers=[seen.append], **FAST)
    assert {event.station for event in seen if event.kind == "result"} >= set(result.agents)


def test_without_the_journal_nothing_is_written_to_hct_home(_isolated_home: Path) -> None:
    result = hct_cli.perform(CODE_REVIEW, journal=False, **FAST)
    assert result.status == "completed"
    assert result.segment is None and result.call_counts is None
    assert list(_isolated_home.iterdir()) == []


def test_a_journaled_run_is_resumed_by_id() -> None:
    first = hct_cli.perform(CODE_REVIEW, **FAST)
    with pytest.raises(hct_cli.RunError) as caught:
        hct_cli.perform(None, resume=first.run_id)
    assert "nothing to resume" in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: hct_cli.perform("no/such/score.yaml", simulate=True), "ScoreError"),
        (lambda: hct_cli.perform(CODE_REVIEW, simulate=True, dispatch="fastest"), "UsageError"),
        (lambda: hct_cli.perform(CODE_REVIEW, simulate=True, inputs={"nope": "1"}), "InputError"),
        (lambda: hct_cli.perform(None, resume="nosuchrun"), "RunError"),
        (lambda: hct_cli.perform(CODE_REVIEW, local="all", simulate=True), "UsageError"),
    ],
)
def test_a_failure_is_an_hct_error_with_a_hint(call: object, error: str) -> None:
    with pytest.raises(hct_cli.HctError) as caught:
        call()  # type: ignore[operator]
    assert isinstance(caught.value, getattr(hct_cli, error))
    assert caught.value.hint


def test_code_runs_only_when_trusted(resources: Path) -> None:
    score = resources / "scores" / "hostile" / "shell_without_exec" / "hostile.yaml"
    with pytest.raises(hct_cli.ExecNotAllowedError):
        hct_cli.perform(score, simulate=True, journal=False)
