"""hct's store under $HCT_HOME: private to its user, and a damaged file is one clear error."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
from pathlib import Path

import pytest

from hct_cli.errors import CorruptStoreError, StoreError
from hct_cli.run.config import RunConfig
from hct_cli.store.home import DB_NAME, connect
from hct_cli.store.journal import Journal, events_of, list_runs

pytestmark = pytest.mark.timeout(60)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _journal_runs(home: Path, runs: int, events: int) -> list[str]:
    """``runs`` finished runs of ``events`` result events each, in the database under ``home``."""
    db = connect(home=home)
    ids = []
    for n in range(runs):
        journal = Journal.start(db, f"run{n:04d}", "corruptible", None, "hct: 1\n", RunConfig())
        for k in range(events):
            journal.db.execute(
                "INSERT INTO events (run_id, segment, seq, at, kind, station, version, data) VALUES (?, 1, ?, 0, "
                "'result', 'a', ?, ?)",
                (journal.run_id, k, k, '{"cost_usd": 0.001, "output": "' + "x" * 200 + '"}'),
            )
        journal.finish("completed", 0.001 * events, {"status": "completed"})
        ids.append(journal.run_id)
    db.close()
    return ids


def _scribble(path: Path, offset: int, size: int) -> None:
    garbage = random.Random(7).randbytes(size)
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(garbage)


# -- private to its user ----------------------------------------------------------------------


def test_a_home_hct_creates_and_its_database_are_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "hct"
    db = connect(home=home)
    Journal.start(db, "r1", "s", None, "hct: 1\n", RunConfig()).flush()  # opens the -wal and -shm
    assert _mode(home) == 0o700
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        assert (home / name).exists(), name
        assert _mode(home / name) == 0o600, name
    db.close()


def test_an_existing_home_keeps_its_mode_and_a_readable_database_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    connect(home=home).close()
    os.chmod(home / DB_NAME, 0o644)  # as an older hct left it
    connect(home=home).close()
    assert _mode(home) == 0o755
    assert _mode(home / DB_NAME) == 0o600


# -- a damaged file ---------------------------------------------------------------------------


def test_sixteen_kib_of_garbage_mid_file_is_one_clear_error(tmp_path: Path) -> None:
    ids = _journal_runs(tmp_path, runs=6, events=60)
    path = tmp_path / DB_NAME
    size = path.stat().st_size
    assert size > 64 * 1024
    _scribble(path, size // 2 - 8 * 1024, 16 * 1024)

    db = connect(home=tmp_path)  # the schema on page 1 is intact: the damage shows when read
    with pytest.raises(CorruptStoreError) as info:
        for run_id in ids:
            list(events_of(db, run_id))
    error = info.value
    assert error.file == str(path)
    assert error.integrity and error.integrity != "ok"
    assert str(path) in error.message and "integrity_check" in error.message
    assert f"mv {path} {path}.corrupt" in error.hint
    assert "HCT_HOME" not in error.hint
    assert error.to_json()["integrity_check"] == error.integrity


def test_an_empty_database_file_is_refused_not_started_afresh(tmp_path: Path) -> None:
    _journal_runs(tmp_path, runs=1, events=1)
    path = tmp_path / DB_NAME
    path.write_bytes(b"")
    with pytest.raises(CorruptStoreError, match="empty") as info:
        connect(home=tmp_path)
    assert f"mv {path} {path}.corrupt" in info.value.hint
    assert path.stat().st_size == 0  # nothing written over it


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(CorruptStoreError, match="not an SQLite database") as info:
        connect(home=tmp_path)
    assert "file is not a database" in info.value.integrity


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    _journal_runs(tmp_path, runs=2, events=5)
    _scribble(tmp_path / DB_NAME, 16, 84)  # the page size and format bytes after the magic string
    with pytest.raises(CorruptStoreError):
        list_runs(connect(home=tmp_path))


def test_only_a_permission_problem_hints_at_a_writable_home(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    home = tmp_path / "locked"
    home.mkdir(mode=0o500)
    with pytest.raises(StoreError) as info:
        connect(home=home)
    assert not isinstance(info.value, CorruptStoreError)
    assert "writable" in info.value.hint


def test_a_new_database_appears_only_with_its_schema(tmp_path: Path) -> None:
    connect(home=tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "events", "approvals", "cache", "predictors"} <= tables
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
