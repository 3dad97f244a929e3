"""The conductor and `hct replay` from the command line: real `hct` processes, on a pseudo-terminal
(stdin, stdout and stderr a 120x40 terminal) when the conductor should show, on pipes when not.

Every read of a terminal is bounded by a deadline: a process that does not end by itself is killed
and the test fails with what it printed. No test measures how long anything took.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from hct_cli.program.lint import load_score

pytestmark = pytest.mark.timeout(90)

HCT = [sys.executable, "-m", "hct_cli"]
ROWS, COLUMNS = 40, 120
ENTER_ALT_SCREEN = "\x1b[?1049h"  # a full-screen app (the conductor) takes the terminal
LEAVE_ALT_SCREEN = "\x1b[?1049l"
_ESCAPES = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, modes
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, colour queries
    r"|[PX^_][^\x1b]*\x1b\\"  # DCS and other strings
    r"|[@-Z\\-_])"
)
_RUN_ID = re.compile(r"\brun ([0-9a-f]{12}): journaled")


def _plain(text: str) -> str:
    """What a person reads: no escape sequences, no carriage returns."""
    return _ESCAPES.sub("", text).replace("\r", "")


def _agents(repo: Path) -> list[str]:
    return list(load_score(repo / "scores" / "code-review.yaml").agents)


@pytest.fixture
def score(repo: Path) -> str:
    return str(repo / "scores" / "code-review.yaml")


class Terminal:
    """One `hct` process with a pseudo-terminal on the streams not given (all three by default)."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        *,
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
        self.process = subprocess.Popen(
            [*HCT, *args],
            stdin=slave if stdin is None else stdin,
            stdout=slave if stdout is None else stdout,
            stderr=slave if stderr is None else stderr,
            cwd=cwd,
            env=env,
            close_fds=True,
            start_new_session=True,  # signals sent to the test's own terminal never reach it
        )
        os.close(slave)
        self.master = master
        self.seen = bytearray()
        self.closed = False  # every writer has closed the terminal (the process has exited)

    @property
    def text(self) -> str:
        return self.seen.decode("utf-8", "replace")

    def _pump(self, wait_s: float) -> bytes:
        """Read what the terminal has within ``wait_s`` seconds (nothing at its end)."""
        if self.closed:
            return b""
        ready, _, _ = select.select([self.master], [], [], wait_s)
        if not ready:
            return b""
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the process has exited and its output is read
            chunk = b""
        if not chunk:
            self.closed = True
        self.seen += chunk
        return chunk

    def read_until(self, pattern: str, seconds: float = 30.0) -> str:
        """Read until ``pattern`` shows in the plain text of the output; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        if re.search(pattern, _plain(self.text)):
            return self.text
        while time.monotonic() < deadline and not self.closed:
            chunk = self._pump(min(0.2, max(0.0, deadline - time.monotonic())))
            if chunk:
                # a match ends in the newest chunk; look a little before it, not at everything again
                window = bytes(self.seen[max(0, len(self.seen) - len(chunk) - 16384) :])
                if re.search(pattern, _plain(window.decode("utf-8", "replace"))):
                    return self.text
        raise AssertionError(f"never saw {pattern!r}; the output ends:\n{_plain(self.text)[-3000:]}")

    def finish(self, seconds: float = 40.0) -> int:
        """Read until the process closes the terminal and exits by itself; its exit code."""
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            self._pump(0.2)
        try:
            return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"hct did not exit by itself within {seconds} s; the output ends:\n{_plain(self.text)[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        self.kill()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Any]:
    """Start `hct` on a pseudo-terminal; every one started is killed (if need be) and closed after."""
    opened: list[Terminal] = []

    def start(args: list[str], cwd: Path, **streams: Any) -> Terminal:
        opened.append(Terminal(args, cwd, **streams))
        return opened[-1]

    yield start
    for t in opened:
        t.close()


def _hct(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`hct` on plain pipes (no terminal anywhere)."""
    return subprocess.run(
        [*HCT, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, **kwargs
    )


def _runs(cwd: Path) -> dict[str, dict[str, Any]]:
    listed = _hct(["runs", "--json"], cwd)
    assert listed.returncode == 0, listed.stderr
    return {run["run_id"]: run for run in json.loads(listed.stdout)}


def _journaled_run(score: str, cwd: Path, time_scale: str = "0.05") -> dict[str, Any]:
    """A completed simulated run of the code review, journaled; its ``perform --json`` object."""
    done = _hct(["perform", score, "--simulate", "--time-scale", time_scale, "--json"], cwd)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["status"] == "completed"
    return data


def _split_screen(text: str) -> tuple[str, str, str]:
    """Output before the conductor, on its screen, and after it closed."""
    assert ENTER_ALT_SCREEN in text, f"the conductor never took the screen:\n{_plain(text)[-3000:]}"
    start = text.index(ENTER_ALT_SCREEN)
    end = text.find(LEAVE_ALT_SCREEN, start)
    assert end != -1, "the conductor never gave the screen back"
    return text[:start], text[start:end], text[end:]


def _summary(text: str) -> dict[str, str]:
    """The summary table's rows: agent -> status."""
    return dict(re.findall(r"^│ (\w+)\s+│ (\w+)\s+│", _plain(text), re.MULTILINE))


def _assert_summary(after: str, run_id: str, status: str, agents: list[str]) -> None:
    plain = _plain(after)
    assert f"run {run_id}: {status}" in plain, f"no summary table for run {run_id}:\n{plain[-3000:]}"
    rows = _summary(after)
    assert list(rows) == agents, rows
    if status == "completed":
        assert set(rows.values()) == {"done"}, rows
    assert re.search(r"makespan \d+\.\d{3} s", plain), plain[-1000:]


# -- perform under the conductor ----------------------------------------------------------------


def test_perform_on_a_terminal_runs_the_conductor_then_prints_the_summary(
    terminal: Any, score: str, repo: Path, tmp_path: Path
) -> None:
    hct = terminal(["perform", score, "--simulate", "--time-scale", "0.05", "--exit-on-finish"], tmp_path)
    code = hct.finish()
    text = hct.text
    assert code == 0, _plain(text)[-3000:]
    before, screen, after = _split_screen(text)
    found = _RUN_ID.search(_plain(before))
    assert found, f"no journal line before the conductor: {before!r}"
    run_id = found.group(1)

    drawn = _plain(screen)
    assert f"hct · code-review · run {run_id}" in drawn  # the conductor's status line
    assert "agents" in drawn and "timeline" in drawn and "signals" in drawn  # its panels
    for agent in _agents(repo):
        assert agent in drawn, f"the conductor never drew {agent}"
    assert "Traceback" not in _plain(text)

    _assert_summary(after, run_id, "completed", _agents(repo))
    assert "calls: 14 paid" in _plain(after)
    assert _runs(tmp_path)[run_id]["status"] == "completed"


def test_no_tui_on_a_terminal_prints_plainly(terminal: Any, score: str, repo: Path, tmp_path: Path) -> None:
    hct = terminal(["perform", score, "--simulate", "--time-scale", "0.05", "--no-tui"], tmp_path)
    code = hct.finish()
    text = hct.text
    assert code == 0, _plain(text)[-3000:]
    assert ENTER_ALT_SCREEN not in text
    plain = _plain(text)
    found = _RUN_ID.search(plain)
    assert found
    assert "14/14 done" in plain  # the live progress line of the plain view
    _assert_summary(text, found.group(1), "completed", _agents(repo))


@pytest.mark.parametrize("stderr", ["terminal", "file"])
def test_json_on_a_terminal_prints_json_and_no_conductor(
    terminal: Any, score: str, repo: Path, tmp_path: Path, stderr: str
) -> None:
    with (tmp_path / "stderr").open("wb") as err:
        streams = {"stderr": err} if stderr == "file" else {}
        hct = terminal(["perform", score, "--simulate", "--time-scale", "0.05", "--json"], tmp_path, **streams)
        code = hct.finish()
    text = hct.text
    logged = (tmp_path / "stderr").read_text()
    assert code == 0, _plain(text + logged)[-3000:]
    assert ENTER_ALT_SCREEN not in text and ENTER_ALT_SCREEN not in logged

    plain = _plain(text)
    start = re.search(r"^\{$", plain, re.MULTILINE)  # the JSON document follows the plain log, if any
    assert start, plain[-3000:]
    data = json.loads(plain[start.start() :])
    assert data["status"] == "completed"
    assert list(data["agents"]) == _agents(repo)
    assert _runs(tmp_path)[data["run_id"]]["status"] == "completed"


def test_without_a_terminal_the_conductor_never_starts(score: str, tmp_path: Path) -> None:
    done = _hct(["perform", score, "--simulate", "--time-scale", "0.05"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert ENTER_ALT_SCREEN not in done.stdout and ENTER_ALT_SCREEN not in done.stderr
    found = _RUN_ID.search(done.stderr)
    assert found, done.stderr
    assert f"run {found.group(1)}: completed" in done.stdout  # the summary table
    assert re.search(r"run_end\s+completed", done.stderr)  # the plain log, one line per signal


@pytest.mark.parametrize("tty", ["stdin", "stdout"])
def test_half_a_terminal_is_not_enough_for_the_conductor(
    terminal: Any, score: str, repo: Path, tmp_path: Path, tty: str
) -> None:
    with (tmp_path / "out").open("wb") as out:
        streams: dict[str, Any] = {"stdout": out, "stderr": out} if tty == "stdin" else {"stdin": subprocess.DEVNULL}
        hct = terminal(
            ["perform", score, "--simulate", "--time-scale", "0.05", "--exit-on-finish"], tmp_path, **streams
        )
        code = hct.finish()
    text = hct.text + (tmp_path / "out").read_text()
    assert code == 0, _plain(text)[-3000:]
    assert ENTER_ALT_SCREEN not in text
    found = _RUN_ID.search(_plain(text))
    assert found
    _assert_summary(text, found.group(1), "completed", _agents(repo))


def test_the_conductor_never_draws_into_a_redirected_stderr(terminal: Any, score: str, tmp_path: Path) -> None:
    """`hct perform SCORE --simulate 2>log` on a terminal.

    perform starts the conductor when stdin and stdout are terminals, but Textual draws on
    stderr: here the whole conductor goes into the log file, the terminal stays blank, and a
    run without --exit-on-finish waits there for a `q` the person cannot know to press.
    """
    with (tmp_path / "log").open("wb") as log:
        hct = terminal(
            ["perform", score, "--simulate", "--time-scale", "0.05", "--exit-on-finish"], tmp_path, stderr=log
        )
        code = hct.finish()
    logged = (tmp_path / "log").read_text()
    assert code == 0
    drawn_into_the_log = ENTER_ALT_SCREEN in logged
    assert not drawn_into_the_log, (
        "BUG: the conductor was drawn into the redirected stderr file, not on the terminal "
        f"({len(logged)} characters of screen updates in the log; {len(hct.text)} on the terminal)"
    )


def test_sigterm_under_the_conductor_exits_130_and_journals_interrupted(
    terminal: Any, score: str, repo: Path, tmp_path: Path
) -> None:
    hct = terminal(["perform", score, "--simulate", "--time-scale", "5"], tmp_path)
    hct.read_until(r"\b[1-9]\d*/14 done")  # the conductor is up (its SIGTERM handler too) and the run is under way
    found = _RUN_ID.search(_plain(hct.text))
    assert found
    run_id = found.group(1)
    hct.process.send_signal(signal.SIGTERM)
    code = hct.finish()
    text = hct.text
    assert code == 130, _plain(text)[-3000:]
    _, _, after = _split_screen(text)
    assert "interrupted" in _plain(after).splitlines()[0]
    _assert_summary(after, run_id, "interrupted", _agents(repo))
    assert "Traceback" not in _plain(text)
    assert _runs(tmp_path)[run_id]["status"] == "interrupted"


def _last_line(text: str) -> str:
    return [line for line in _plain(text).splitlines() if line.strip()][-1].strip()


def test_q_in_the_conductor_ends_with_the_resume_command(terminal: Any, score: str, repo: Path, tmp_path: Path) -> None:
    hct = terminal(["perform", score, "--simulate", "--time-scale", "5"], tmp_path)
    hct.read_until(r"\b[1-9]\d*/14 done")  # the run is under way
    found = _RUN_ID.search(_plain(hct.text))
    assert found
    run_id = found.group(1)
    os.write(hct.master, b"q")
    hct.read_until(r"Stop the run\?")
    os.write(hct.master, b"y")
    code = hct.finish()
    assert code == 130, _plain(hct.text)[-3000:]
    _, _, after = _split_screen(hct.text)
    _assert_summary(after, run_id, "interrupted", _agents(repo))
    assert _last_line(after) == f"hct perform --resume {run_id}"
    assert _runs(tmp_path)[run_id]["status"] == "interrupted"


def test_ctrl_c_in_the_plain_view_ends_with_the_resume_command(terminal: Any, score: str, tmp_path: Path) -> None:
    hct = terminal(["perform", score, "--simulate", "--time-scale", "5", "--no-tui"], tmp_path)
    hct.read_until(r"\b[1-9]\d*/14 done")
    found = _RUN_ID.search(_plain(hct.text))
    assert found
    hct.process.send_signal(signal.SIGINT)
    code = hct.finish()
    assert code == 130, _plain(hct.text)[-3000:]
    assert f"run {found.group(1)}: interrupted" in _plain(hct.text)  # the summary, then the command
    assert _last_line(hct.text) == f"hct perform --resume {found.group(1)}"


# -- replay ---------------------------------------------------------------------------------------


def test_replay_json_is_the_run_on_one_time_line(score: str, repo: Path, tmp_path: Path) -> None:
    run_id = _journaled_run(score, tmp_path)["run_id"]
    replayed = _hct(["replay", run_id, "--json"], tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    data = json.loads(replayed.stdout)
    assert data["run_id"] == run_id and data["score"] == "code-review"
    events = data["events"]
    times = [event["at"] for event in events]
    assert times[0] == 0
    assert all(a <= b for a, b in itertools.pairwise(times)), times
    kinds = [event["kind"] for event in events]
    assert {"run_start", "issue", "cue", "run_end"} <= set(kinds)
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert events[-1]["data"]["status"] == "completed"
    assert sorted(e["station"] for e in events if e["kind"] == "cue") == sorted(_agents(repo))

    by_prefix = _hct(["replay", run_id[:5], "--json"], tmp_path)
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert json.loads(by_prefix.stdout) == data


def test_replay_of_an_unknown_run_says_so(tmp_path: Path) -> None:
    missing = _hct(["replay", "not-a-run"], tmp_path)
    assert missing.returncode == 1  # RunNotFoundError is a RunError: exit 1 (hct_cli/errors.py)
    assert "error: no journaled run has the id 'not-a-run'" in missing.stderr
    assert "hint: List the runs with `hct runs`." in missing.stderr
    assert "Traceback" not in missing.stderr and missing.stdout == ""

    as_json = _hct(["replay", "not-a-run", "--json"], tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["type"] == "RunNotFoundError"
    assert "Traceback" not in as_json.stderr


@pytest.mark.parametrize("where", ["pipes", "--no-tui on a terminal"])
def test_replay_without_the_conductor_prints_a_line_per_signal(
    terminal: Any, score: str, repo: Path, tmp_path: Path, where: str
) -> None:
    run_id = _journaled_run(score, tmp_path)["run_id"]
    if where == "pipes":
        replayed = _hct(["replay", run_id], tmp_path)
        code, text = replayed.returncode, replayed.stdout + replayed.stderr
    else:
        hct = terminal(["replay", run_id, "--no-tui"], tmp_path)
        code, text = hct.finish(), hct.text
    assert code == 0, text
    assert ENTER_ALT_SCREEN not in text
    lines = _plain(text).splitlines()
    signals = [re.match(r"^\s*\d+\.\d{3}s  (\w+)\s+(\w+@\d+)?", line) for line in lines]
    assert all(signals), [line for line, m in zip(lines, signals, strict=True) if not m]
    cues = [m.group(2) for m in signals if m and m.group(1) == "cue"]
    assert sorted(cues) == sorted(f"{agent}@1" for agent in _agents(repo))
    assert re.search(r"^\s*0\.00\ds  issue\s+parse@1", lines[0]), lines[0]  # laying out the first prompt takes a moment
    assert re.search(r"run_end\s+completed", lines[-1]), lines[-1]


def test_replay_refuses_a_speed_that_is_not_above_zero(score: str, tmp_path: Path) -> None:
    run_id = _journaled_run(score, tmp_path)["run_id"]
    for speed in ("0", "nan", "-1", "inf"):
        refused = _hct(["replay", run_id, "--speed", speed], tmp_path)
        assert refused.returncode == 2, (speed, refused.stdout, refused.stderr)
        assert "error: --speed must be above zero" in refused.stderr, speed
        assert "Traceback" not in refused.stderr and refused.stdout == ""
    not_a_number = _hct(["replay", run_id, "--speed", "fast"], tmp_path)
    assert not_a_number.returncode == 2
    assert "--speed" in not_a_number.stderr and "Traceback" not in not_a_number.stderr


@pytest.mark.parametrize("cwd", ["the score's directory", "another directory"])
def test_replay_on_a_terminal_plays_in_the_conductor_then_prints_the_summary(
    terminal: Any, score: str, repo: Path, tmp_path: Path, cwd: str
) -> None:
    # a run of 2.7 s replayed in about 0.05 s: long enough for the conductor to draw its frames
    run_id = _journaled_run(score, tmp_path, time_scale="1")["run_id"]
    hct = terminal(
        ["replay", run_id, "--speed", "50", "--exit-on-finish"],
        repo / "scores" if cwd == "the score's directory" else tmp_path,
    )
    code = hct.finish()
    text = hct.text
    plain = _plain(text)
    relinted_here = "default_file of 'diff' does not exist" in plain
    assert not relinted_here, (
        "BUG: hct replay re-lints the journaled score against the current directory (load_score_text "
        "without base=), so a score with a default_file replays only from its own directory:\n" + plain[-1500:]
    )
    assert code == 0, plain[-3000:]
    _, screen, after = _split_screen(text)
    assert f"hct · code-review · run {run_id} · replay" in _plain(screen)
    _assert_summary(after, run_id, "completed", _agents(repo))
