"""Wall time of light CLI paths: median of N runs of `hct lint scores/code-review.yaml` and `hct --help`.

python bench/cli_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

COMMANDS = (["lint", "scores/code-review.yaml"], ["--help"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    hct = shutil.which("hct") or "hct"
    for command in COMMANDS:
        subprocess.run([hct, *command], capture_output=True, check=False)  # warm the file cache
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([hct, *command], capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        print(
            f"hct {' '.join(command)}: median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)"
        )


if __name__ == "__main__":
    main()
