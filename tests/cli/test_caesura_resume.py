"""A caesura through the CLI: the run stops at the checkpoint, and `--resume` continues from it
without paying again for anything committed before the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli.app import app

pytestmark = pytest.mark.timeout(60)


def _perform(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["perform", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout)


def test_a_caesura_rolls_back_and_resume_continues_from_the_checkpoint(resources: Path) -> None:
    code, first = _perform(str(resources / "scores" / "caesura.yaml"), "--simulate", "--seed", "0", "--no-cache")
    assert (code, first["status"]) == (1, "caesura")
    agents = first["agents"]
    assert isinstance(agents, dict)
    caesura = first["caesura"]
    assert isinstance(caesura, dict)
    assert caesura["agent"] == "final" and caesura["checkpoint"] == 1
    # Work committed after the downbeat's checkpoint is squashed; what came before it stays.
    assert {name: agents[name]["status"] for name in ("draft", "review", "skipper", "sync", "final")} == {
        "draft": "done",
        "review": "done",
        "skipper": "tacet",
        "sync": "squashed",
        "final": "squashed",
    }
    state = first["state"]
    assert isinstance(state, dict)
    assert state["plan"] == agents["draft"]["output"]  # the checkpointed state, nothing after it
    assert state["notes"] == [agents["review"]["output"]]

    code, resumed = _perform("--resume", str(first["run_id"]))
    assert (code, resumed["status"], resumed["segment"]) == (0, "completed", 2)
    after = resumed["agents"]
    assert isinstance(after, dict)
    for name in ("draft", "review"):  # answered from the journal: same version, same output
        assert after[name]["version"] == agents[name]["version"]
        assert after[name]["output"] == agents[name]["output"]
    for name in ("sync", "final"):  # squashed versions are never reused
        assert after[name]["version"] == agents[name]["version"] + 1
    # Only the two agents after the checkpoint were paid again.
    assert resumed["paid_calls"] == first["paid_calls"] + 2
    notes = resumed["state"]["notes"]
    assert notes == [after["review"]["output"], after["final"]["output"]]
