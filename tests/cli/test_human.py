"""A human fermata end to end: a real `hct perform` process waits for a person, who answers at
its terminal (a pseudo-terminal here) or from another shell with `hct approve` / `hct reject`."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

HCT = [sys.executable, "-m", "hct_cli"]


def _score(resources: Path) -> str:
    return str(resources / "scores" / "human-gate.yaml")


def _read_until(fd: int, pattern: str, seconds: float = 60.0) -> str:
    """Read a pseudo-terminal until ``pattern`` shows up (or fail)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if re.search(pattern, seen.decode("utf-8", "replace")):
                return seen.decode("utf-8", "replace")
    raise AssertionError(f"never saw {pattern!r}; got:\n{seen.decode('utf-8', 'replace')}")


@pytest.mark.parametrize(("answer", "status", "code"), [("y", "done", 0), ("n", "failed", 1)])
def test_a_person_decides_at_the_terminal(resources: Path, answer: str, status: str, code: int) -> None:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*HCT, "perform", _score(resources), "--simulate", "--no-tui"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "200"},
        close_fds=True,
    )
    os.close(slave)
    try:
        shown = _read_until(master, r"approve\? \[y/n\]")
        assert "draft@1 waits for your approval" in shown
        assert "[draft via gpt-4o-mini, simulated]" in shown  # the person sees what they decide on
        os.write(master, f"{answer}\n".encode())
        tail = _read_until(master, r"run [0-9a-f]{12}: (completed|failed)")
        assert process.wait(timeout=60) == code
        assert re.search(rf"draft\s+.*{status}", tail) or status in tail
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def _waiting_run(resources: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a run without a terminal; return it and its id once it waits for the person."""
    process = subprocess.Popen(
        [*HCT, "perform", _score(resources), "--simulate", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    run_id = ""
    for line in process.stderr:
        found = re.search(r"^run ([0-9a-f]{12}):", line)
        if found:
            run_id = found.group(1)
        if "waits for a person" in line:
            assert f"hct approve {run_id} draft" in line  # it says what to type
            return process, run_id
    raise AssertionError("the run never asked for a person")


@pytest.mark.parametrize(("verb", "status", "code"), [("approve", "completed", 0), ("reject", "failed", 1)])
def test_a_person_decides_from_another_shell(resources: Path, verb: str, status: str, code: int) -> None:
    process, run_id = _waiting_run(resources)
    try:
        decided = subprocess.run([*HCT, verb, run_id, "draft", "--json"], capture_output=True, text=True, timeout=60)
        assert decided.returncode == 0, decided.stderr
        assert json.loads(decided.stdout) == {"run_id": run_id, "agent": "draft", "verdict": verb}
        out, _ = process.communicate(timeout=60)
        assert process.returncode == code
        result = json.loads(out)
        assert result["status"] == status
        assert result["agents"]["draft"]["status"] == ("done" if verb == "approve" else "failed")
        assert result["agents"]["publish"]["status"] == ("done" if verb == "approve" else "skipped")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
