"""``hct lint`` and ``hct perform`` on a score that cannot be read."""

from __future__ import annotations

import builtins
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


@pytest.fixture
def unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A score its reader may not open: chmod 000, and for root (who may read it anyway) the
    answers the system gives anybody else, from ``os.access`` and ``open``."""
    path = tmp_path / "locked.yaml"
    path.write_text("hct: 1\nname: locked\nagents:\n  a: {prompt: hi}\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root: refuse as the kernel refuses everybody else
        real_access, real_open = os.access, builtins.open

        def access(target: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
            if Path(target) == path and mode & os.R_OK:
                return False
            return real_access(target, mode, *args, **kwargs)

        def opener(target: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(target, str | os.PathLike) and Path(target) == path:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))
            return real_open(target, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(builtins, "open", opener)
        monkeypatch.setattr("io.open", opener)
    yield path
    path.chmod(0o644)


def test_an_unreadable_score_is_a_finding_not_a_usage_error(unreadable: Path) -> None:
    result = runner.invoke(app, ["lint", "--format", "json", str(unreadable)])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    (finding,) = data["files"][0]["findings"]
    assert finding["code"] == "HCT001"
    assert "Permission denied" in finding["message"]


def test_perform_of_an_unreadable_score_says_so(unreadable: Path) -> None:
    result = runner.invoke(app, ["perform", str(unreadable), "--simulate", "--json"])
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ScoreError"
    assert error["findings"][0]["code"] == "HCT001"


def test_non_finite_numbers_and_lone_surrogates_are_findings_at_their_positions(tmp_path: Path) -> None:
    score = tmp_path / "odd.yaml"
    score.write_text(
        "hct: 1\n"
        "name: odd\n"
        "routing: {budget_usd: .nan}\n"
        "inputs:\n"
        '  q: {default: "x\\ud800y"}\n'
        "agents:\n"
        "  a:\n"
        "    prompt: hi\n"
        "    timeout_s: .inf\n"
        "    simulate: {latency_ms: [.nan, 10], pass_rate: -.inf}\n"
    )
    result = runner.invoke(app, ["lint", "--format", "json", str(score)])
    assert result.exit_code == 1, result.output
    found = {(f["code"], f["line"], f["col"]) for f in json.loads(result.stdout)["files"][0]["findings"]}
    assert found == {
        ("HCT009", 3, 23),
        ("HCT010", 5, 16),
        ("HCT009", 9, 16),
        ("HCT009", 10, 29),
        ("HCT009", 10, 51),
    }
    performed = runner.invoke(app, ["perform", str(score), "--simulate", "--json"])
    assert performed.exit_code == 1
    assert json.loads(performed.stdout)["error"]["type"] == "ScoreError"
