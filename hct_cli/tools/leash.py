"""The leash a stdio tool server runs on: when hct goes, however it goes, the server goes too.

``python -I leash.py --parent PID [--keep NAME]... -- ARGV`` starts ARGV in a process group of
its own, with an environment of only the ``--keep`` variables, and hands it the leash's stdin,
stdout and stderr (the MCP transport passes through untouched). The leash then waits for one of:

- the server exits: whatever it left in its group is killed, and the leash exits with its code;
- the parent (hct) exits, even by SIGKILL: the leash watches it through a pidfd (``getppid``
  polling where pidfds are missing) and kills the server's group;
- SIGTERM, SIGHUP or SIGINT (the SDK's shutdown signals the leash's group): the same.

Why not ``PR_SET_PDEATHSIG``: it fires when the *thread* that started the leash ends, and hct may
start servers from an event loop on a worker thread that ends before the run does. A pidfd
follows the process. The leash is also a child subreaper, so a grandchild that left the group
(a daemonizing ``npx``) is reparented here and killed with the rest.

This file runs as a script under ``python -I`` (no hct import, no ``PYTHONPATH``): the server's
environment is exactly what hct chose, and the leash starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

_PR_SET_CHILD_SUBREAPER = 36
_GRACE_S = 1.0  # between SIGTERM and SIGKILL of the server's group
_POLL_S = 0.25  # how often the parent is checked when no pidfd can watch it


def _parse(argv: Sequence[str]) -> tuple[int, set[str], list[str]]:
    parent, keep, index = 0, set(), 0
    while index < len(argv) and argv[index] != "--":
        flag, value = argv[index], argv[index + 1] if index + 1 < len(argv) else ""
        if flag == "--parent":
            parent = int(value)
        elif flag == "--keep":
            keep.add(value)
        else:
            raise SystemExit(f"hct leash: unknown option {flag!r}")
        index += 2
    command = list(argv[index + 1 :])
    if not parent or not command:
        raise SystemExit("hct leash: usage: leash.py --parent PID [--keep NAME]... -- ARGV")
    return parent, keep, command


def _subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the process group still carries the server's children


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _orphans() -> list[int]:
    """Processes reparented to the leash (left the server's group, their parent died)."""
    me, found = os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def _kill_all(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's group, SIGKILL what is left after the grace, then any orphans."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)
        deadline = time.monotonic() + _GRACE_S
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if sig == signal.SIGTERM and child.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)  # the leader left; its group may not have
            break
    for pid in _orphans():
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError, PermissionError):
            pass
    child.poll()


def main(argv: Sequence[str]) -> int:
    parent, keep, command = _parse(argv)
    if os.getppid() != parent:
        return 125  # hct is already gone: start nothing
    parent_fd = _pidfd(parent)
    _subreaper()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    env = {name: value for name, value in os.environ.items() if name in keep}
    try:
        child = subprocess.Popen(command, env=env, process_group=0)
    except OSError as error:
        sys.stderr.write(f"hct leash: cannot start {command[0]!r}: {error.strerror or error}\n")
        sys.stderr.flush()
        return 127
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # only the server holds the transport's pipes now
    os.dup2(null, 1)
    child_fd = _pidfd(child.pid)
    watched = [fd for fd in (child_fd, parent_fd, wake_r) if fd is not None]
    while True:
        ready, _, _ = select.select(watched, [], [], _POLL_S)
        if child.poll() is not None:
            code = child.returncode
            _kill_all(child)
            return code if code >= 0 else 128 - code
        if wake_r in ready or (parent_fd in ready) or os.getppid() != parent:
            _kill_all(child)
            return 143


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
