"""One process performs a run at a time.

:func:`claim` takes an exclusive OS lock on ``$HCT_HOME/locks/RUN.lock`` (``flock``) before a
segment is journaled and holds it until the segment ends; a second ``perform --resume`` of the
run is refused naming the holder. The kernel drops the lock when its process dies, ``kill -9``
included, so a crashed run's lock is never stale. The runs table keeps the owner's pid and its
start time (:func:`process_start`, ``/proc/PID/stat`` on Linux), so a pid the system has since
given to another process does not make a crashed run look ``running`` (:func:`alive`).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from types import TracebackType

from hct_cli.errors import RunBusyError

__all__ = ["RunLock", "alive", "claim", "process_start"]


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22);
    None where there is no procfs or no such process. With the pid, it names one process: the
    system may give a dead process's pid to another, never with the same start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # fields[0] is field 3
    except (IndexError, ValueError):
        return None


def alive(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, its start time still tells
        pass
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class RunLock:
    """This process's claim to perform a run; released by :meth:`release`, or by the kernel when
    the process dies. The lock file is never removed: removing a locked file lets a second
    process lock a new file of the same name while the first still holds the old one."""

    def __init__(self, run_id: str, fd: int | None) -> None:
        self.run_id = run_id
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases its lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _lock_dir(db: sqlite3.Connection) -> Path | None:
    for _, name, file in sqlite3.Connection.execute(db, "PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).parent / "locks"
    return None  # an in-memory database: no other process can reach its runs


def claim(db: sqlite3.Connection, run_id: str) -> RunLock:
    """Claim ``run_id`` for this process, or raise :class:`RunBusyError` naming the live
    process that performs it. Atomic: the kernel grants an exclusive ``flock`` to one file
    descriptor only."""
    where = _lock_dir(db)
    if where is None:
        return RunLock(run_id, None)
    where.mkdir(mode=0o700, exist_ok=True)
    path = where / f"{run_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the run's subprocesses
    if not _try_lock(fd):
        holder = _holder(fd)
        os.close(fd)
        raise _busy(db, run_id, holder)
    # Who holds it, for the message of a process refused: written only once the lock is ours.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {process_start(os.getpid()) or ''}\n".encode())
    return RunLock(run_id, fd)


#: How long a refused process waits for the holder to write its pid over the last holder's.
_HOLDER_WAIT_S = 0.5


def _holder(fd: int) -> int | None:
    """The live process the lock file names, or None. Between taking the lock and writing its
    pid, the holder leaves the last holder's line in the file (a crashed run's, say): a line
    naming a dead process is read again until it names a live one, briefly."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        fields = os.pread(fd, 100, 0).decode(errors="replace").split()
        if fields and fields[0].isdigit():
            pid = int(fields[0])
            started = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            if alive(pid, started):
                return pid
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _busy(db: sqlite3.Connection, run_id: str, pid: int | None) -> RunBusyError:
    if pid is None:  # the holder has the lock but has not written its pid yet: the journal's
        row = db.execute("SELECT pid, pid_start FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        pid = row[0] if row and row[0] is not None and alive(row[0], row[1]) else None
    who = f"process {pid}" if pid is not None else "another process"
    stop = f"stop it (`kill {pid}`)" if pid is not None else "stop it"
    return RunBusyError(
        f"run {run_id} is being performed by {who} on this machine; one process performs a run at a time",
        hint=f"Wait for it to end, or {stop} and run `hct perform --resume {run_id}` again; "
        f"`hct approve`/`hct reject` reach the live run as they are.",
    )
