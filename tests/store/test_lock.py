"""One performer a run: the run lock, and a running run whose process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hct_cli.store.home import connect
from hct_cli.store.journal import Journal, RunConfig
from hct_cli.store.runs import find_run, list_runs
from tests.store.journaled import start_run

pytestmark = pytest.mark.timeout(60)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_run_whose_process_is_gone_shows_as_crashed() -> None:
    db = connect()
    alive = start_run(db, "alive")
    dead = start_run(db, "dead")
    done = start_run(db, "done")
    done.finish("completed", 0.0, {})
    db.execute("UPDATE runs SET pid = ? WHERE run_id = 'dead'", (_dead_pid(),))
    assert find_run(db, "alive").status == "running"
    assert find_run(db, "dead").status == "crashed"
    assert find_run(db, "done").status == "completed"
    assert {r.run_id: r.status for r in list_runs(db)} == {"alive": "running", "dead": "crashed", "done": "completed"}
    # what is stored stays "running": crashed is what a reader concludes
    assert db.execute("SELECT status FROM runs WHERE run_id = 'dead'").fetchone()[0] == "running"
    assert alive.run_id == "alive" and dead.run_id == "dead"


def test_a_claimed_run_is_refused_to_a_second_claim_until_released() -> None:
    from hct_cli.errors import RunBusyError
    from hct_cli.store.lock import claim

    db = connect()
    held = claim(db, "r1")
    with pytest.raises(RunBusyError, match=f"process {os.getpid()}") as info:
        claim(db, "r1")  # a second open file of the lock conflicts, in this process too
    assert "hct perform --resume r1" in info.value.hint
    with claim(db, "r2"):  # another run is another lock
        pass
    held.release()
    with claim(db, "r1"):
        pass


def test_a_refused_claim_never_names_the_dead_process_the_lock_file_still_names() -> None:
    # The holder has the lock but has not yet written its pid over a crashed holder's line.
    import fcntl

    from hct_cli.errors import RunBusyError
    from hct_cli.store.lock import claim

    db = connect()
    Journal.start(db, "r1", "s", None, "hct: 1\n", RunConfig())
    with claim(db, "r1"):
        pass  # the lock file exists now
    dead = _dead_pid()
    lock = next(Path(os.environ["HCT_HOME"]).glob("locks/r1.lock"))
    lock.write_text(f"{dead} 1\n")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunBusyError) as info:
            claim(db, "r1")
    finally:
        os.close(fd)
    assert str(dead) not in info.value.message
    # The journal names the run's performer (this test's process), which is alive.
    assert f"process {os.getpid()}" in info.value.message


def test_a_recycled_pid_does_not_keep_a_crashed_run_running() -> None:
    from hct_cli.store.lock import process_start

    db = connect()
    Journal.start(db, "r1", "s", None, "hct: 1\n", RunConfig())
    started = process_start(os.getpid())
    if started is None:
        pytest.skip("no /proc: the start time is unknown and the pid alone decides")
    assert find_run(db, "r1").status == "running"
    # The same pid, a process started at another time: the run's own process is gone.
    db.execute("UPDATE runs SET pid_start = ? WHERE run_id = 'r1'", (started + 1,))
    assert find_run(db, "r1").status == "crashed"
