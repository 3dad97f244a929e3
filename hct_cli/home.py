"""Where hct keeps what outlives a process: ``$HCT_HOME`` and the one SQLite database in it.

The database (``hct.db``) holds the run journals, the human approvals sent from other shells,
the L5 result cache and the speculation predictors. It runs in WAL mode: one writer and any
number of readers at once, so ``hct runs`` or ``hct approve`` work while a run is writing.
``synchronous=NORMAL`` survives a killed process (not a power cut); ``durable="full"`` asks for
``synchronous=FULL``, which survives a power cut too at the price of an fsync per commit.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from hct_cli.errors import RunError

__all__ = ["DB_NAME", "connect", "home_dir", "set_durability"]

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
    result      TEXT
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


def connect(*, durable: str = "normal", home: Path | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the database under ``home``; autocommit, WAL, schema applied."""
    where = home if home is not None else home_dir()
    try:
        where.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where / DB_NAME, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        set_durability(db, durable)
        db.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise RunError(
            f"cannot open hct's database under {where}: {exc}",
            hint="Set HCT_HOME to a writable directory.",
        ) from exc
    return db
