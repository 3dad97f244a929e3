"""Approvals: a person's verdicts on agents' held results, as ``hct approve``/``hct reject`` record them.

The human desk of a live run (:mod:`hct_cli.providers.human`) polls for them
(:func:`next_verdict`), so a verdict reaches a run however far away its terminal is, through the
journal's database.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["next_verdict", "record_verdict"]


def record_verdict(db: sqlite3.Connection, run_id: str, agent: str, verdict: str, note: str = "") -> int:
    """A person's decision on an agent's held result; returns its id."""
    cursor = db.execute(
        "INSERT INTO approvals (run_id, agent, verdict, note, at) VALUES (?, ?, ?, ?, ?)",
        (run_id, agent, verdict, note, time.time()),
    )
    return int(cursor.lastrowid or 0)


def next_verdict(db: sqlite3.Connection, run_id: str, agent: str, after: int) -> tuple[int, str, str] | None:
    """The first decision on ``agent`` recorded after id ``after``: (id, verdict, note)."""
    row = db.execute(
        "SELECT id, verdict, note FROM approvals WHERE run_id = ? AND agent = ? AND id > ? ORDER BY id LIMIT 1",
        (run_id, agent, after),
    ).fetchone()
    return (int(row[0]), str(row[1]), str(row[2])) if row else None
