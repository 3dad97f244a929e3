"""Distributed mode survives its processes: a worker killed with -9, a worker stopped with
SIGTERM, Redis lost mid-run, Redis never there, a bus that is not a URL.

Every test drives real processes (``hct perform --bus``, ``hct worker``) against a private
``redis-server`` (the ``redis_server`` fixture) and judges them by what users see: exit codes,
the ``--json`` documents, stderr, and the journal (``$HCT_HOME/hct.db``). A run that survived a
fault must end as the same run an undisturbed in-process run of the same score and seed gives,
with every call paid for exactly once.

Conditions are awaited by polling Redis or the journal in bounded loops; no test measures time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

HCT = [sys.executable, "-m", "hct_cli"]
SEED = "3"
LAYERS = (6, 8, 6, 4)  # 24 agents; each agent past the first layer is cued by two of the layer before
LATENCY_MS = (300, 600)  # long enough at --time-scale 1 that calls are in flight when a process dies
RUN_OPTIONS = ("--simulate", "--seed", SEED, "--no-cache", "--json", "--no-tui")
# Shorter than the defaults (--claim-after 5 --heartbeat 1) to keep the failover quick; a live
# worker still beats six times within one claim-after, and a dead one's entries idle at least
# 2.5 s before another may take them, ample time to read what it owned when it died.
FAST_CLAIM = ("--claim-after", "3", "--heartbeat", "0.5")
CONCURRENCY = 4
DEADLINE_S = 40.0  # bound of every wait below; the tests' own timeouts are above it


def _write_score(path: Path) -> Path:
    """Layers of agents, each prompt quoting its cues, so a wrong or missing output upstream
    changes every output downstream."""
    lines = ["hct: 1", "name: failover", "agents:"]
    previous: list[str] = []
    for layer, size in enumerate(LAYERS):
        current = []
        for i in range(size):
            name = f"l{layer}_a{i}"
            cues = sorted({previous[i % len(previous)], previous[(i + 1) % len(previous)]}) if previous else []
            quoted = " ".join("{{ cues.%s }}" % cue for cue in cues)
            lines += [f"  {name}:", f"    prompt: 'Write part {i} of layer {layer}. {quoted}'"]
            if cues:
                lines.append(f"    cues: [{', '.join(cues)}]")
            lines.append(f"    simulate: {{latency_ms: [{LATENCY_MS[0]}, {LATENCY_MS[1]}]}}")
            current.append(name)
        previous = current
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(home: Path | None = None) -> dict[str, str]:
    """The test's environment; HCT_HOME is the per-test one of the autouse fixture unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    if home is not None:
        env["HCT_HOME"] = str(home)
    env.update(NO_COLOR="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env


def _hct(*args: str, home: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HCT, *args], env=_env(home), capture_output=True, text=True, timeout=timeout, check=False, cwd=home
    )


def _document(stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(stdout)
    except ValueError:
        raise AssertionError(f"not a JSON document (exit {returncode})\nstdout: {stdout}\nstderr: {stderr}") from None
    return doc


def _outputs(doc: dict[str, Any]) -> dict[str, str]:
    return {name: agent["output"] for name, agent in doc["agents"].items()}


@dataclass(frozen=True)
class Reference:
    score: Path
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The score, and its undisturbed in-process run (no bus) in a home of its own."""
    score = _write_score(tmp_path_factory.mktemp("score") / "failover.yaml")
    home = tmp_path_factory.mktemp("reference-home")
    proc = _hct("perform", str(score), *RUN_OPTIONS, home=home)
    assert proc.returncode == 0, proc.stderr
    doc = _document(proc.stdout, proc.stderr, proc.returncode)
    assert doc["status"] == "completed"
    assert len(doc["agents"]) == sum(LAYERS)
    assert doc["paid_calls"] == sum(LAYERS) and doc["lost_calls"] == 0
    assert all(agent["status"] == "done" and agent["worker"] is None for agent in doc["agents"].values())
    assert len(set(_outputs(doc).values())) == sum(LAYERS)
    return Reference(score, doc)


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Process:
    """A process whose stdout and stderr go to files (no pipe can fill up and stall it)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float = DEADLINE_S) -> int:
        return self.popen.wait(timeout)

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def document(self) -> dict[str, Any]:
        return _document(self.stdout, self.stderr, self.popen.returncode)


class Processes:
    """Starts processes; :meth:`close` kills whatever still runs (call it in ``finally``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Process] = []

    def start(self, name: str, *args: str) -> Process:
        out, err = self.directory / f"{name}.out", self.directory / f"{name}.err"
        files = [out.open("wb"), err.open("wb")]
        try:
            popen = subprocess.Popen([*HCT, *args], env=_env(), stdout=files[0], stderr=files[1], cwd=self.directory)
        except BaseException:
            for f in files:
                f.close()
            raise
        process = Process(popen, out, err, files)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.running():
                process.popen.kill()
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)
            for f in process.files:
                f.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


def _worker(processes: Processes, url: str, name: str, *extra: str) -> Process:
    return processes.start(name, "worker", "--bus", url, "--id", name, "--concurrency", str(CONCURRENCY), "--json", *extra)


def _until(condition: Callable[[], Any], what: str, *, alive: Process | None = None) -> Any:
    """Poll ``condition`` until it is truthy (and return it), for at most DEADLINE_S; fail early
    if ``alive`` exits meanwhile."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if alive is not None and not alive.running():
            raise AssertionError(
                f"{what}: never happened before the process exited {alive.popen.returncode}\n"
                f"stdout: {alive.stdout}\nstderr: {alive.stderr}"
            )
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {DEADLINE_S:g} s")


# -- Redis and the journal, as an observer sees them -----------------------------------------------


@contextlib.contextmanager
def _redis(url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def _worker_alive(client: Any, name: str) -> bool:
    return bool(client.exists(f"hct:worker:{name}"))


def _the_run(client: Any) -> str | None:
    runs = client.smembers("hct:runs")
    assert len(runs) <= 1, f"more than one run in progress: {runs}"
    return next(iter(runs), None)


def _pending(client: Any, run: str) -> dict[str, int]:
    """Pending entries per consumer over the run's work streams (``hct:run:RUN:work:*``, and the
    workers' attacca streams)."""
    import redis

    owned: dict[str, int] = {}
    for stream in client.smembers(f"hct:run:{run}:streams"):
        try:
            summary = client.xpending(stream, "workers")
        except redis.ResponseError:  # the run ended meanwhile: its streams are gone
            continue
        for consumer in summary.get("consumers") or ():
            owned[consumer["name"]] = owned.get(consumer["name"], 0) + int(consumer["pending"])
    return owned


def _owned_by(client: Any, worker: str) -> Callable[[], tuple[str, int] | None]:
    def check() -> tuple[str, int] | None:
        run = _the_run(client)
        if run is None:
            return None
        count = _pending(client, run).get(worker, 0)
        return (run, count) if count else None

    return check


def _journal(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    path = Path(os.environ["HCT_HOME"]) / "hct.db"
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:  # not created yet (the conductor is starting)
        if "no such table" in str(exc):
            return []
        raise


def _events(run: str, kind: str) -> list[tuple[str, int, dict[str, Any]]]:
    rows = _journal("SELECT station, version, data FROM events WHERE run_id = ? AND kind = ?", run, kind)
    return [(station, version, json.loads(data or "{}")) for station, version, data in rows]


def _results_journaled() -> int:
    return len(_journal("SELECT 1 FROM events WHERE kind = 'result'"))


def _committed_twice(run: str) -> list[tuple[Any, ...]]:
    return _journal(
        "SELECT station, version, COUNT(*) FROM events WHERE run_id = ? AND kind = 'result' "
        "GROUP BY station, version HAVING COUNT(*) > 1",
        run,
    )


def _assert_same_run(doc: dict[str, Any], reference: Reference) -> None:
    """The run completed as the undisturbed run did, each result committed once."""
    assert doc["status"] == "completed"
    assert _outputs(doc) == _outputs(reference.doc)
    assert {name: agent["status"] for name, agent in doc["agents"].items()} == {
        name: "done" for name in reference.doc["agents"]
    }
    assert {name: agent["version"] for name, agent in doc["agents"].items()} == dict.fromkeys(reference.doc["agents"], 1)
    assert doc["paid_calls"] == reference.doc["paid_calls"]
    assert _committed_twice(doc["run_id"]) == []
    assert len(_events(doc["run_id"], "result")) == len(reference.doc["agents"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- 1. kill -9 a worker with calls in flight --------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_worker_killed_with_calls_in_flight_fails_over(
    reference: Reference, redis_server: Any, processes: Processes
) -> None:
    url = redis_server.url
    with _redis(url) as client:
        a = _worker(processes, url, "wA", *FAST_CLAIM)
        b = _worker(processes, url, "wB", *FAST_CLAIM)
        _until(lambda: _worker_alive(client, "wA") and _worker_alive(client, "wB"), "both workers beat")
        conductor = processes.start("conductor", "perform", str(reference.score), *RUN_OPTIONS, "--bus", url)

        run, owned_before = _until(_owned_by(client, "wA"), "wA owns a pending entry", alive=conductor)
        os.kill(a.pid, signal.SIGKILL)
        assert a.wait() == -signal.SIGKILL
        # A dead worker's entries stay its own until they have idled --claim-after: what it held when it died.
        owned_at_death = _pending(client, run).get("wA", 0)

        assert conductor.wait() == 0, conductor.stderr
        doc = conductor.document()
        b.popen.send_signal(signal.SIGTERM)
        assert b.wait() == 0, b.stderr
        report_b = b.document()

    print("FIGURES1", owned_before, owned_at_death, doc["lost_calls"], report_b, {n: a["worker"] for n, a in doc["agents"].items()})
    assert doc["run_id"] == run
    _assert_same_run(doc, reference)
    reclaims = _events(run, "reclaim")
    assert 1 <= owned_at_death <= CONCURRENCY, (owned_before, owned_at_death)
    assert len(reclaims) == owned_at_death, (reclaims, owned_before, owned_at_death)
    assert doc["lost_calls"] == len(reclaims)
    assert _events(run, "hand_back") == []
    assert all(data.get("from") == "wA" and data.get("by") == "wB" for _s, _v, data in reclaims), reclaims
    # Every call taken over was answered by the survivor, which says so in its own report.
    assert {station for station, _v, _d in reclaims} <= {n for n, agent in doc["agents"].items() if agent["worker"] == "wB"}
    assert report_b["reclaimed"] >= len(reclaims)
    assert report_b["completed"] >= len(reclaims)
    assert {agent["worker"] for agent in doc["agents"].values()} <= {"wA", "wB"}


# -- 2. Redis lost mid-run, then back: resume -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_losing_redis_interrupts_the_run_and_resume_finishes_it(
    reference: Reference, redis_server: Any, processes: Processes
) -> None:
    url = redis_server.url
    with _redis(url) as client:
        first = _worker(processes, url, "w1")
        _until(lambda: _worker_alive(client, "w1"), "the worker beats")
    conductor = processes.start("conductor", "perform", str(reference.score), *RUN_OPTIONS, "--bus", url)
    _until(lambda: _results_journaled() >= 3, "3 results journaled", alive=conductor)
    redis_server.stop()

    assert conductor.wait() == 130, conductor.stderr
    interrupted = conductor.document()
    run = interrupted["run_id"]
    print("FIGURES2", interrupted["paid_calls"], interrupted["lost_calls"])
    assert interrupted["status"] == "interrupted"
    assert 3 <= interrupted["paid_calls"] < reference.doc["paid_calls"]
    assert "lost Redis" in conductor.stderr
    assert f"hct perform --resume {run}" in conductor.stderr
    assert "Traceback" not in conductor.stderr
    first.popen.kill()
    first.wait()

    redis_server.start()  # the same port, nothing on it: the run's streams start afresh
    with _redis(url) as client:
        second = _worker(processes, url, "w2")
        _until(lambda: _worker_alive(client, "w2"), "the new worker beats")
    resumed = _hct("perform", "--resume", run, "--json", "--no-tui", timeout=DEADLINE_S)  # the bus is journaled
    assert resumed.returncode == 0, resumed.stderr
    doc = _document(resumed.stdout, resumed.stderr, resumed.returncode)
    assert doc["run_id"] == run and doc["segment"] == 2
    _assert_same_run(doc, reference)
    # Results journaled before Redis went stay: the second worker made only the others.
    workers = [agent["worker"] for agent in doc["agents"].values()]
    assert workers.count("w1") == interrupted["paid_calls"]
    assert workers.count("w2") == reference.doc["paid_calls"] - interrupted["paid_calls"]
    second.popen.send_signal(signal.SIGTERM)
    assert second.wait() == 0, second.stderr
    assert second.document()["completed"] == workers.count("w2")


# -- 3. Redis unreachable at start ----------------------------------------------------------------------


def _assert_clear_error(proc: subprocess.CompletedProcess[str], url: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert any(line.startswith("error: ") and url in line for line in lines), proc.stderr
    assert any(line.startswith("hint: ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(60)
def test_perform_on_an_unreachable_redis_fails_before_journaling(reference: Reference) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    proc = _hct("perform", str(reference.score), "--simulate", "--no-tui", "--bus", url, timeout=30)
    _assert_clear_error(proc, url)
    assert proc.stdout.strip() == ""

    as_json = _hct("perform", str(reference.score), "--simulate", "--json", "--bus", url, timeout=30)
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "BusError" and url in error["message"] and error["hint"]

    runs = _hct("runs", "--json", timeout=30)
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout) == []


@pytest.mark.timeout(60)
def test_a_worker_on_an_unreachable_redis_fails_at_once() -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    proc = _hct("worker", "--bus", url, "--id", "w", timeout=30)
    _assert_clear_error(proc, url)


# -- 4. not a URL -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["perform", "worker"])
def test_a_bus_that_is_not_a_url_is_a_usage_error(reference: Reference, command: str) -> None:
    args = [str(reference.score), "--simulate"] if command == "perform" else []
    proc = _hct(command, *args, "--bus", "notaurl", timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert re.search(r"^error: .*'notaurl'", proc.stderr, re.M), proc.stderr
    assert re.search(r"^hint: .*redis://HOST:PORT/DB", proc.stderr, re.M), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _hct("runs", "--json", timeout=30).stdout.strip() in ("", "[]")


# -- 5. SIGTERM drains and hands back -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_worker_stopped_with_sigterm_hands_back_its_calls(
    reference: Reference, redis_server: Any, processes: Processes
) -> None:
    url = redis_server.url
    with _redis(url) as client:
        a = _worker(processes, url, "wA", "--drain", "0")
        _until(lambda: _worker_alive(client, "wA"), "the worker beats")
        conductor = processes.start("conductor", "perform", str(reference.score), *RUN_OPTIONS, "--bus", url)
        run, _owned = _until(_owned_by(client, "wA"), "wA has a call in flight", alive=conductor)

        a.popen.send_signal(signal.SIGTERM)
        assert a.wait() == 0, a.stderr
        report_a = a.document()
        # It left cleanly: nothing of its own pending, and the roster shows it gone at once.
        assert "wA" not in _pending(client, run)
        assert not _worker_alive(client, "wA")

        b = _worker(processes, url, "wB")
        assert conductor.wait() == 0, conductor.stderr
        doc = conductor.document()
        b.popen.send_signal(signal.SIGTERM)
        assert b.wait() == 0, b.stderr
        report_b = b.document()

    print("FIGURES5", report_a, report_b, doc["lost_calls"])
    assert report_a["handed_back"] >= 1, report_a
    assert report_a["reclaimed"] == 0 and report_b["reclaimed"] == 0
    assert doc["run_id"] == run
    _assert_same_run(doc, reference)
    hand_backs = _events(run, "hand_back")
    assert 1 <= len(hand_backs) <= report_a["handed_back"], (hand_backs, report_a)
    assert all(data.get("by") == "wA" for _s, _v, data in hand_backs), hand_backs
    assert _events(run, "reclaim") == []
    assert doc["lost_calls"] == len(hand_backs)
    # What wA handed back, wB made.
    assert {station for station, _v, _d in hand_backs} <= {n for n, agent in doc["agents"].items() if agent["worker"] == "wB"}
    assert report_a["completed"] + report_b["completed"] >= reference.doc["paid_calls"]
