"""``hct bench`` as a person or a script meets it: progress on stderr (plain lines off a terminal,
a live line on one), stdout holding only the result, and ``--gantt`` saying what it wrote."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.cli.bench import PROGRESS_LINES

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
LINE = re.compile(
    r"trial (\d+)/(\d+) (\S+): \d+\.\d{3} s \((about \d+ s left|about \d+ min left|under 1 s left|all \d+ runs in \d+ s)\)"
)


SCORE = Path(__file__).resolve().parents[1] / "resources" / "scores" / "tier-chain.yaml"
QUICK = ("bench", str(SCORE), "--time-scale", "0.02")


def progress(stderr: str) -> list[re.Match[str]]:
    lines = stderr.splitlines()
    matches = [LINE.fullmatch(line) for line in lines if line.startswith("trial ")]
    assert all(matches), lines
    return [m for m in matches if m is not None]


def test_json_keeps_stdout_to_one_document_and_progress_goes_to_stderr(tmp_path: Path) -> None:
    target = tmp_path / "g.svg"
    result = runner.invoke(
        app,
        [*QUICK, "--compare", "batch,sequential", "--trials", "2", "--gantt", str(target), "--json"],
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)  # nothing but the one document
    assert data["gantt"] == str(target)
    runs = [(m[3], int(m[1])) for m in progress(result.stderr)]
    assert runs == [(policy, trial) for trial in (1, 2) for policy in ("reactive", "batch", "sequential")]
    assert "(all 6 runs in" in result.stderr.splitlines()[-1]

    panels = ET.parse(target).getroot().findall("{http://www.w3.org/2000/svg}g[@class='panel']")
    assert [panel.get("data-policy") for panel in panels] == ["reactive", "batch", "sequential"]


def test_the_table_is_followed_by_the_file_written(tmp_path: Path) -> None:
    target = tmp_path / "gantt.svg"
    result = runner.invoke(
        app,
        [*QUICK, "--compare", "sequential", "--trials", "1", "--gantt", str(target)],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stderr.splitlines()
    assert "wrote" not in result.stdout and "trial 1/1" not in result.stdout
    panels = ET.parse(target).getroot().findall("{http://www.w3.org/2000/svg}g[@class='panel']")
    assert [panel.get("data-policy") for panel in panels] == ["reactive", "sequential"]


def test_a_long_bench_prints_a_bounded_number_of_lines() -> None:
    result = runner.invoke(app, [*QUICK, "--trials", "100", "--json"])
    assert result.exit_code == 0, result.output
    lines = progress(result.stderr)
    assert 5 <= len(lines) <= PROGRESS_LINES + 1
    assert lines[-1][1] == "100" and lines[-1][4].startswith("all 100 runs in ")
    assert json.loads(result.stdout)["trials"] == 100


def test_on_a_terminal_progress_is_one_live_line_and_stdout_still_one_document() -> None:
    primary, secondary = pty.openpty()
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal's other end closed
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    with subprocess.Popen(
        [sys.executable, "-m", "hct_cli", *QUICK, "--compare", "batch", "--trials", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
    ) as process:
        os.close(secondary)
        out, _ = process.communicate(timeout=90)
    reader.join(timeout=10)
    os.close(primary)
    assert process.returncode == 0
    assert json.loads(out)["policies"].keys() == {"reactive", "batch"}
    screen = drawn.decode("utf-8", "replace")
    assert "trial 1/2 reactive" in screen and "trial 2/2 batch" in screen and "4/4" in screen
    assert not LINE.search(screen)  # no plain progress lines on a terminal
