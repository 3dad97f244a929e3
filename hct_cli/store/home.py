"""Where hct keeps what outlives a process: ``$HCT_HOME`` and the one SQLite database in it.

The database (``hct.db``) holds the run journals, the human approvals sent from other shells,
the L5 result cache and the speculation predictors. It runs in WAL mode: one writer and any
number of readers at once, so ``hct runs`` or ``hct approve`` work while a run is writing.
``synchronous=NORMAL`` survives a killed process (not a power cut); ``durable="full"`` asks for
``synchronous=FULL``, which survives a power cut too at the price of an fsync per commit.

The store is private to its user: a home hct creates is 0700, the database 0600 (SQLite gives
its ``-wal`` and ``-shm`` files the database's mode), and a database an older hct left readable
to others is made 0600 when opened. A new database appears under its name only with its schema
in it, so an empty (0-byte) ``hct.db`` is never hct's own: like a damaged file, it is refused
with :class:`~hct_cli.errors.CorruptStoreError` rather than quietly started afresh. Damage
deeper in the file surfaces when a page is read: every statement run through :class:`Store`
turns SQLite's "malformed"/"not a database" into that same error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from hct_cli.errors import CorruptStoreError, StoreError

__all__ = ["DB_NAME", "Store", "connect", "corrupt_store", "home_dir", "set_durability"]

DB_NAME = "hct.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    score       TEXT NOT NULL,
    score_path  TEXT,
    score_text  TEXT NOT NULL,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    cost_usd    REAL NOT NULL DEFAULT 0,
    segments    INTEGER NOT NULL DEFAULT 1,
    pid         INTEGER,
    result      TEXT,
    pid_start   INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    run_id   TEXT NOT NULL,
    segment  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,
    station  TEXT,
    version  INTEGER NOT NULL,
    data     TEXT,
    PRIMARY KEY (run_id, segment, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_kind ON events (run_id, kind);
CREATE TABLE IF NOT EXISTS approvals (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL,
    agent    TEXT NOT NULL,
    verdict  TEXT NOT NULL,
    note     TEXT NOT NULL DEFAULT '',
    at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key                TEXT PRIMARY KEY,
    model              TEXT NOT NULL,
    output             TEXT NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    created            REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS predictors (
    gate     TEXT PRIMARY KEY,
    counter  INTEGER NOT NULL
) WITHOUT ROWID;
"""


def home_dir() -> Path:
    """``$HCT_HOME``, else ``$XDG_DATA_HOME/hct``, else ``~/.local/share/hct``."""
    explicit = os.environ.get("HCT_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return base / "hct"


def set_durability(db: sqlite3.Connection, durable: str) -> None:
    """``normal``: commits survive a killed process; ``full``: a power cut too (an fsync each)."""
    db.execute(f"PRAGMA synchronous={'FULL' if durable == 'full' else 'NORMAL'}")


# SQLite's primary result codes for a damaged file (sqlite3.h).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# ... and for a file or directory this user may not write.
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN = 3, 8, 14
_HEADER = b"SQLite format 3\x00"


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    # Python's own error for a text cell whose bytes are garbage: damage inside a row.
    return "malformed" in text or "not a database" in text or text.startswith("Could not decode to UTF-8")


def _file_of(db: sqlite3.Connection) -> Path | None:
    for _, name, file in sqlite3.Connection.execute(db, "PRAGMA database_list"):
        if name == "main":
            return Path(file) if file else None
    return None


class _Cursor(sqlite3.Cursor):
    """A cursor whose reads say which file is damaged: rows are read, and pages found bad, lazily."""

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise _translate(self.connection, exc) from exc
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        try:
            super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            raise _translate(self.connection, exc) from exc
        return self

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(self.connection, exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            raise _translate(self.connection, exc) from exc

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            raise _translate(self.connection, exc) from exc


class Store(sqlite3.Connection):
    """hct's database connection: a damaged file is a :class:`CorruptStoreError` naming it,
    wherever the damage is met, instead of SQLite's bare ``DatabaseError``."""

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self.cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        return self.cursor(_Cursor).executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            raise _translate(self, exc) from exc


def _translate(db: sqlite3.Connection, exc: sqlite3.DatabaseError) -> sqlite3.DatabaseError | CorruptStoreError:
    """A damaged file's error as hct's; any other SQLite error as it is (its caller knows it)."""
    if not _is_corruption(exc):
        return exc
    path = _file_of(db)
    return corrupt_store(path, str(exc)) if path is not None else exc


def _integrity(path: Path) -> str:
    """The first lines of ``PRAGMA integrity_check`` on ``path``, read-only, in a connection of its own."""
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = [str(row[0]) for row in probe.execute("PRAGMA integrity_check(3)")]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        probe.close()
    # One row may hold several lines ("*** in database main ***" first): three lines are enough.
    lines = [line.strip() for row in rows for line in row.splitlines() if line.strip()]
    findings = [line for line in lines if not line.startswith("***")][:3]
    summary = "; ".join(findings or lines)
    return summary if len(summary) <= 300 else summary[:297] + "..."


def corrupt_store(path: Path, problem: str, *, integrity: str | None = None) -> CorruptStoreError:
    """The one error for a damaged database file: what is wrong, what SQLite's own check says,
    and how to start afresh without destroying the evidence."""
    check = integrity if integrity is not None else _integrity(path)
    companions = [f for f in (f"{path}-wal", f"{path}-shm") if os.path.exists(f)]
    moves = " ".join(f"mv {f} {f}.corrupt;" for f in (str(path), *companions))
    return CorruptStoreError(
        f"hct's database {path} is damaged ({problem}); integrity_check: {check}",
        file=str(path),
        integrity=check,
        hint=f"Move it aside ({moves.rstrip(';')}): hct then starts a new journal there, and the old file "
        "stays for recovery (e.g. `sqlite3 FILE .recover`).",
    )


def _private_dir(where: Path) -> None:
    """``where``, created 0700 if it does not exist (an existing directory is left as it is)."""
    if where.is_dir():
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    try:
        where.mkdir(mode=0o700)
    except FileExistsError:  # another process created it meanwhile
        if not where.is_dir():
            raise


def _create(path: Path) -> None:
    """A new database, 0600, that appears under ``path`` only with its schema in it."""
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    fresh.unlink(missing_ok=True)
    os.close(os.open(fresh, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()  # checkpoints and removes the -wal: the file alone holds the schema
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile: theirs stays
            os.link(fresh, path)  # unlike a rename, never replaces a file of that name
    finally:
        fresh.unlink(missing_ok=True)


def _check_file(path: Path) -> None:
    """Refuse a file that cannot be hct's database before SQLite starts afresh over it."""
    size = path.stat().st_size
    if size == 0:
        raise corrupt_store(path, "the file is empty (0 bytes)", integrity="not run: the file is empty")
    with path.open("rb") as f:
        header = f.read(len(_HEADER))
    if header != _HEADER:
        raise corrupt_store(path, "the file is not an SQLite database")


def _keep_private(path: Path) -> None:
    """Take group and other access off a database (and its -wal, -shm) this user owns."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            os.chmod(file, stat.S_IMODE(info.st_mode) & 0o700)


def _migrate(db: sqlite3.Connection) -> None:
    """Columns newer than the database: added in place, old rows read them as NULL."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "pid_start" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN pid_start INTEGER")


def _unwritable(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN)


def connect(*, durable: str = "normal", home: Path | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the database under ``home``; autocommit, WAL, schema applied."""
    where = home if home is not None else home_dir()
    path = where / DB_NAME
    try:
        _private_dir(where)
        if not path.exists():
            _create(path)
        _check_file(path)
        _keep_private(path)
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0, factory=Store)
        db.execute("PRAGMA journal_mode=WAL")
        set_durability(db, durable)
        db.executescript(_SCHEMA)
        _migrate(db)
    except CorruptStoreError:
        raise
    except (OSError, sqlite3.Error) as exc:
        if _unwritable(exc):
            hint = f"Make {where} writable for this user, or set HCT_HOME to a writable directory."
        else:
            hint = f"Check the disk holding {where} (free space, that it is mounted), then try again."
        raise StoreError(f"cannot open hct's database under {where}: {exc}", hint=hint) from exc
    return db
