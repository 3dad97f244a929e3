"""Does drawing slow a big run? ``hct perform`` under the conductor against the plain view.

Both run on a pseudo-terminal of 120x40 (the conductor needs one; the plain view on a terminal
draws its live status line), alternating, on the same generated score:

    python bench/conductor.py --agents 10000 --trials 5

A third mode, ``piped``, is the plain run with its output going to a pipe: nothing drawn at all.
It prints, per mode, the median process time (start to exit) and the median makespan the run
journaled (first issue to last commit), and the ratios conductor / plain.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path


def run_on_a_terminal(argv: list[str], env: dict[str, str], limit_s: float = 600.0) -> tuple[int, float, bytes]:
    """Run ``argv`` with a 120x40 pty as its terminal; its exit code, seconds taken and output."""
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    output = bytearray()
    deadline = started + limit_s
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - started, bytes(output)


def makespan(home: Path) -> float:
    db = sqlite3.connect(home / "hct.db")
    (result,) = db.execute("SELECT result FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    return float(json.loads(result)["makespan_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hct = [sys.executable, "-m", "hct_cli"]
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        score = Path(scratch) / "score.yaml"
        env = {**os.environ, "HCT_HOME": str(home), "TERM": "xterm-256color"}
        synthetic = ["--synthetic", "random", "--agents", str(args.agents), "--latency-ms", "0:0"]
        subprocess.run(
            [*hct, "bench", *synthetic, "--seed", str(args.seed), "--trials", "1", "--emit", str(score)],
            env=env,
            check=True,
            capture_output=True,
        )
        modes = {
            "plain": [*hct, "perform", str(score), "--simulate", "--no-tui"],
            "conductor": [*hct, "perform", str(score), "--simulate", "--exit-on-finish"],
        }
        wall: dict[str, list[float]] = {mode: [] for mode in modes}
        spans: dict[str, list[float]] = {mode: [] for mode in modes}
        piped = [*hct, "perform", str(score), "--simulate", "--json"]
        wall["piped"], spans["piped"] = [], []
        for trial in range(args.trials):
            for mode, argv in [*modes.items(), ("piped", piped)]:
                if mode == "piped":  # the plain run with nothing drawn at all: no terminal
                    started = time.perf_counter()
                    done = subprocess.run(argv, env=env, capture_output=True)
                    code, seconds, output = done.returncode, time.perf_counter() - started, done.stderr
                else:
                    code, seconds, output = run_on_a_terminal(argv, env)
                if code != 0:
                    sys.stderr.write(output.decode(errors="replace")[-2000:])
                    raise SystemExit(f"{mode} run {trial + 1} exited {code}")
                wall[mode].append(seconds)
                spans[mode].append(makespan(home))
                print(f"trial {trial + 1} {mode:<9} process {seconds:7.3f} s  makespan {spans[mode][-1]:.3f} s")
    median_wall = {mode: statistics.median(values) for mode, values in wall.items()}
    median_span = {mode: statistics.median(values) for mode, values in spans.items()}
    print()
    print(f"{args.agents} agents, {args.trials} trials, medians:")
    for mode in wall:
        print(f"  {mode:<9} process {median_wall[mode]:7.3f} s  makespan {median_span[mode]:.3f} s")
    print(
        f"  conductor / plain: process {median_wall['conductor'] / median_wall['plain']:.3f}x, "
        f"makespan {median_span['conductor'] / median_span['plain']:.3f}x"
    )
    print(
        f"  conductor / piped: process {median_wall['conductor'] / median_wall['piped']:.3f}x, "
        f"makespan {median_span['conductor'] / median_span['piped']:.3f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
