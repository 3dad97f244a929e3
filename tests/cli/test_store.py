"""Every command that opens hct's database meets a damaged one with one clear error, in --json
too; a bus URL's password never reaches the journal, and a resume gets it from the environment."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hct_cli.cli import app
from hct_cli.run.config import RunConfig
from hct_cli.store.home import DB_NAME, connect
from hct_cli.store.journal import Journal, find_run

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
FAST = ["--simulate", "--time-scale", "0.05", "--no-cache"]


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def _error(result: Result) -> dict[str, Any]:
    assert result.exit_code == 1, result.output
    error: dict[str, Any] = json.loads(result.stdout)["error"]
    return error


def _performed(score: Path, times: int) -> list[str]:
    ids = []
    for _ in range(times):
        result = invoke("perform", str(score), *FAST, "--json")
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.stdout)["run_id"])
    return ids


def _scribble(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(random.Random(offset).randbytes(size))


@pytest.fixture
def durable(resources: Path) -> Path:
    return resources / "scores" / "durable.yaml"


def test_sixteen_kib_of_garbage_mid_file_never_gives_a_traceback(durable: Path, _isolated_home: Path) -> None:
    ids = _performed(durable, 4)
    path = _isolated_home / DB_NAME
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file, as after a clean exit
    size = path.stat().st_size
    assert size > 64 * 1024
    _scribble(path, size // 2 - 8 * 1024, 16 * 1024)

    shown = [invoke("show", run_id, "--json") for run_id in ids]
    damaged = [run_id for run_id, result in zip(ids, shown, strict=True) if result.exit_code != 0]
    assert damaged, "16 KiB of garbage mid-file went unnoticed by every `hct show`"
    for run_id in damaged:
        for result in (invoke("show", run_id, "--json"), invoke("perform", "--resume", run_id, "--json")):
            error = _error(result)
            assert error["type"] == "CorruptStoreError"
            assert error["file"] == str(path)
            assert error["integrity_check"] != "ok"
            assert f"mv {path}" in error["hint"]
            assert "HCT_HOME" not in error["hint"]
    # Whatever else is asked of the damaged file ends in an exit code, never a traceback.
    for args in (["runs", "--json"], ["perform", str(durable), *FAST, "--json"], ["replay", ids[0], "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0 or _error(result)["type"] == "CorruptStoreError"


def _wreck_tables(path: Path, *tables: str) -> None:
    """Overwrite the root page of each table with garbage (page 1, the schema, stays)."""
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = raw.execute("PRAGMA page_size").fetchone()
        roots = [raw.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0] for t in tables]
    for root in roots:
        _scribble(path, (root - 1) * page_size, page_size)


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["show", "RUN"],
        ["perform", "SCORE", *FAST],
        ["perform", "--resume", "RUN"],
        ["replay", "RUN"],
        ["approve", "RUN", "outline"],
        ["reject", "RUN", "outline"],
    ],
)
def test_every_command_reports_a_damaged_database(command: list[str], durable: Path, _isolated_home: Path) -> None:
    (run_id,) = _performed(durable, 1)
    path = _isolated_home / DB_NAME
    _wreck_tables(path, "runs", "events", "cache")
    args = [run_id if a == "RUN" else str(durable) if a == "SCORE" else a for a in command]
    error = _error(invoke(*args, "--json"))
    assert error["type"] == "CorruptStoreError"
    assert error["file"] == str(path)
    assert error["integrity_check"] != "ok"
    assert f"mv {path} {path}.corrupt" in error["hint"]

    plain = invoke(*args)
    assert plain.exit_code == 1
    assert f"hct's database {path} is damaged" in plain.stderr
    assert "HCT_HOME to a writable directory" not in plain.stderr


def test_an_empty_database_file_is_not_shown_as_no_runs(durable: Path, _isolated_home: Path) -> None:
    _performed(durable, 1)
    path = _isolated_home / DB_NAME
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"")
    error = _error(invoke("runs", "--json"))
    assert error["type"] == "CorruptStoreError"
    assert "empty" in error["message"]
    plain = invoke("runs")
    assert plain.exit_code == 1 and "no runs yet" not in plain.output


# -- the bus URL's password -------------------------------------------------------------------


def test_the_journal_keeps_a_bus_url_with_its_password_masked() -> None:
    db = connect()
    config = RunConfig(bus="redis://:s3cret-pass@127.0.0.1:6379/0")
    Journal.start(db, "r1", "s", None, "hct: 1\n", config)
    (stored,) = db.execute("SELECT config FROM runs WHERE run_id = 'r1'").fetchone()
    assert "s3cret-pass" not in stored
    assert json.loads(stored)["bus"] == "redis://:***@127.0.0.1:6379/0"
    assert find_run(db, "r1").config.bus == "redis://:***@127.0.0.1:6379/0"


def test_resuming_a_run_whose_bus_needs_a_password_names_the_variable(
    durable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCT_REDIS_PASSWORD", raising=False)
    db = connect()
    score_text = durable.read_text()
    config = RunConfig(simulate=True, bus="redis://:s3cret-pass@127.0.0.1:1/0")
    Journal.start(db, "r2", "durable", str(durable), score_text, config).finish("crashed", 0.0, {})
    error = _error(invoke("perform", "--resume", "r2", "--json"))
    assert error["type"] == "BusError"
    assert "HCT_REDIS_PASSWORD" in error["hint"]
    assert "s3cret" not in json.dumps(error)


def test_a_resume_takes_the_bus_password_from_the_environment(
    durable: Path, monkeypatch: pytest.MonkeyPatch, redis_server: Any
) -> None:
    import redis

    password = "s3cret-pass"
    with redis.Redis(port=redis_server.port) as client:
        client.config_set("requirepass", password)
    url = redis_server.url.replace("redis://", f"redis://:{password}@")
    db = connect()
    config = RunConfig(inputs={"subject": "Why runs survive."}, bus=url)
    Journal.start(db, "r3", "durable", str(durable), durable.read_text(), config).finish("crashed", 0.0, {})
    monkeypatch.setenv("HCT_REDIS_PASSWORD", "wrong-password")
    wrong = _error(invoke("perform", "--resume", "r3", "--json"))
    assert wrong["type"] == "BusError" and "cannot reach Redis" in wrong["message"]
    monkeypatch.setenv("HCT_REDIS_PASSWORD", password)
    worker = subprocess.Popen(
        [sys.executable, "-m", "hct_cli", "worker", "--bus", url, "--id", "w1", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = invoke("perform", "--resume", "r3", "--json")
    finally:
        worker.terminate()
        worker.wait(30)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed"
    assert {agent["worker"] for agent in doc["agents"].values() if agent["calls"]} == {"w1"}
