"""A journal to read from: a tiny score's run, and the events the engine would journal."""

from __future__ import annotations

import sqlite3
from typing import Any

from hct_cli.events import Event
from hct_cli.store.journal import Journal, RunConfig

SCORE_TEXT = "hct: 1\nname: tiny\nagents:\n  a: {prompt: hi}\n  b: {prompt: there, cues: [a]}\n"


def start_run(db: sqlite3.Connection, run_id: str = "run000000001", config: RunConfig | None = None) -> Journal:
    return Journal.start(db, run_id, "tiny", None, SCORE_TEXT, config or RunConfig(seed=7))


def result_event(station: str, version: int = 1, **data: Any) -> Event:
    payload = {
        "purpose": "call",
        "ok": True,
        "output": f"{station}@{version} says hi",
        "error": None,
        "model": "gpt-4o-mini",
        "tier": "fast",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.25,
        "latency_s": 0.5,
        "cached": False,
        "worker": None,
    }
    payload.update(data)
    return Event("result", 1.0, station, version, payload)


def issue_event(station: str, version: int = 1, **data: Any) -> Event:
    payload = {"model": "gpt-4o-mini", "tier": "fast", "digest": f"d-{station}-{version}"}
    payload.update(data)
    return Event("issue", 0.5, station, version, payload)


def count_events(db: sqlite3.Connection, run_id: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0])
