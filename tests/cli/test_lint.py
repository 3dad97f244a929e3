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
