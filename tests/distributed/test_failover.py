"""Distributed mode survives its processes: a worker killed with -9 (with plain and attacca work),
a worker stopped with SIGTERM, Redis lost mid-run, a conductor killed while its worker runs on,
Redis never there, a bus that is not a URL.

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
CHAINS, STEPS = 8, 3  # 24 agents in 8 chains, each step an attacca hand-off of the step before
LATENCY_MS = (300, 600)  # long enough at --time-scale 1 that calls are in flight when a process dies
RUN_OPTIONS = ("--simulate", "--seed", SEED, "--no-cache", "--json", "--no-tui")
# Shorter than the defaults (--claim-after 5 --heartbeat 1) to keep the failover quick; a live
# worker still beats six times within one claim-after, and a dead one's entries idle at least
# 2.5 s before another may take them, ample time to read what it owned when it died.
FAST_CLAIM = ("--claim-after", "3", "--heartbeat", "0.5")
CONCURRENCY = 4
DEADLINE_S = 40.0  # bound of every wait below; the tests' own timeouts are above it
_SIMULATE = f"    simulate: {{latency_ms: [{LATENCY_MS[0]}, {LATENCY_MS[1]}]}}"


def _write_layers(path: Path) -> Path:
    """Layers of agents, each prompt quoting its cues, so a wrong or missing output upstream
    changes every output downstream."""
    lines = ["hct: 1", "name: failover", "agents:"]
    previous: list[str] = []
    for layer, size in enumerate(LAYERS):
        current = []
        for i in range(size):
            name = f"l{layer}_a{i}"
            cues = sorted({previous[i % len(previous)], previous[(i + 1) % len(previous)]}) if previous else []
            quoted = " ".join("{{ cues." + cue + " }}" for cue in cues)
            lines += [f"  {name}:", f"    prompt: 'Write part {i} of layer {layer}. {quoted}'"]
            if cues:
                lines.append(f"    cues: [{', '.join(cues)}]")
            lines.append(_SIMULATE)
            current.append(name)
        previous = current
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_chains(path: Path) -> Path:
    """Chains of attacca hand-offs: in distributed mode each step after the first is issued on
    the stream of the worker that made the step before."""
    lines = ["hct: 1", "name: failover-attacca", "agents:"]
    for chain in range(CHAINS):
        lines += [f"  c{chain}_s0:", f"    prompt: 'Start chain {chain}.'", _SIMULATE]
        for step in range(1, STEPS):
            cue = f"c{chain}_s{step - 1}"
            lines += [
                f"  c{chain}_s{step}:",
                f"    prompt: 'Step {step} of chain {chain}. {{{{ cues.{cue} }}}}'",
                f"    cues: [{cue}]",
                "    attacca: true",
                _SIMULATE,
            ]
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


def _made_by(doc: dict[str, Any], worker: str) -> set[str]:
    return {name for name, agent in doc["agents"].items() if agent["worker"] == worker}


@dataclass(frozen=True)
class Reference:
    score: Path
    doc: dict[str, Any]


def _reference(tmp_path_factory: pytest.TempPathFactory, write: Callable[[Path], Path], agents: int) -> Reference:
    """A score, and its undisturbed in-process run (no bus) in a home of its own."""
    score = write(tmp_path_factory.mktemp("score") / "score.yaml")
    home = tmp_path_factory.mktemp("reference-home")
    proc = _hct("perform", str(score), *RUN_OPTIONS, home=home)
    assert proc.returncode == 0, proc.stderr
    doc = _document(proc.stdout, proc.stderr, proc.returncode)
    assert doc["status"] == "completed"
    assert len(doc["agents"]) == agents
    assert doc["paid_calls"] == agents and doc["lost_calls"] == 0
    assert all(agent["status"] == "done" and agent["worker"] is None for agent in doc["agents"].values())
    assert len(set(_outputs(doc).values())) == agents
    return Reference(score, doc)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(tmp_path_factory, _write_layers, sum(LAYERS))


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(tmp_path_factory, _write_chains, CHAINS * STEPS)


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
        files: list[IO[bytes]] = [out.open("wb"), err.open("wb")]
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
    return processes.start(
        name, "worker", "--bus", url, "--id", name, "--concurrency", str(CONCURRENCY), "--json", *extra
    )


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


def _pending(client: Any, run: str, *, direct: bool = False) -> dict[str, int]:
    """Pending entries per consumer over the run's work streams (``hct:run:RUN:work:*``, and the
    workers' attacca streams ``hct:run:RUN:direct:*``), or over the attacca streams only."""
    import redis

    owned: dict[str, int] = {}
    for stream in client.smembers(f"hct:run:{run}:streams"):
        if direct and f"hct:run:{run}:direct:" not in stream:
            continue
        try:
            summary = client.xpending(stream, "workers")
        except redis.ResponseError:  # the run ended meanwhile: its streams are gone
            continue
        for consumer in summary.get("consumers") or ():
            owned[consumer["name"]] = owned.get(consumer["name"], 0) + int(consumer["pending"])
    return owned


def _owned_by(client: Any, worker: str, *, direct: bool = False) -> Callable[[], tuple[str, int] | None]:
    def check() -> tuple[str, int] | None:
        run = _the_run(client)
        if run is None:
            return None
        count = _pending(client, run, direct=direct).get(worker, 0)
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


def _results_journaled(worker: str | None = None) -> int:
    rows = _journal("SELECT json_extract(data, '$.worker') FROM events WHERE kind = 'result'")
    return sum(1 for (by,) in rows if worker is None or by == worker)


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
    versions = {name: agent["version"] for name, agent in doc["agents"].items()}
    assert versions == dict.fromkeys(reference.doc["agents"], 1)
    assert doc["paid_calls"] == reference.doc["paid_calls"]
    assert _committed_twice(doc["run_id"]) == []
    assert len(_events(doc["run_id"], "result")) == len(reference.doc["agents"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- 1. kill -9 a worker with calls in flight --------------------------------------------------------


@dataclass(frozen=True)
class Failover:
    doc: dict[str, Any]  # the conductor's --json document
    run: str
    owned_at_death: int  # wA's pending entries when it died
    report_b: dict[str, Any]  # the survivor's --json report

    @property
    def reclaims(self) -> list[tuple[str, int, dict[str, Any]]]:
        return _events(self.run, "reclaim")


def _kill_a_worker_mid_run(score: Path, url: str, processes: Processes, *, direct: bool = False) -> Failover:
    """Workers wA and wB serve a run; once wA has delivered results and holds calls in flight
    (on its own attacca stream with ``direct``), kill -9 it; wB must take its calls over."""
    with _redis(url) as client:
        a = _worker(processes, url, "wA", *FAST_CLAIM)
        b = _worker(processes, url, "wB", *FAST_CLAIM)
        _until(lambda: _worker_alive(client, "wA") and _worker_alive(client, "wB"), "both workers beat")
        conductor = processes.start("conductor", "perform", str(score), *RUN_OPTIONS, "--bus", url)

        owned = _owned_by(client, "wA", direct=direct)
        run, _owned_before = _until(
            lambda: _results_journaled(worker="wA") >= 2 and owned(),
            "wA has results journaled and a pending entry" + (" on its attacca stream" if direct else ""),
            alive=conductor,
        )
        os.kill(a.pid, signal.SIGKILL)
        assert a.wait() == -signal.SIGKILL
        # A dead worker's entries stay its own until they have idled --claim-after (at least
        # 2.5 s from now): this is what it held when it died.
        owned_at_death = _pending(client, run).get("wA", 0)

        assert conductor.wait() == 0, conductor.stderr
        doc = conductor.document()
        b.popen.send_signal(signal.SIGTERM)
        assert b.wait() == 0, b.stderr
    assert doc["run_id"] == run
    return Failover(doc, run, owned_at_death, b.document())


def _assert_taken_over(failover: Failover, reference: Reference) -> None:
    """The run is the undisturbed one; what wA delivered stays, what it held wB made, each
    take-over journaled and counted as a lost call."""
    doc, reclaims, report_b = failover.doc, failover.reclaims, failover.report_b
    _assert_same_run(doc, reference)
    assert 1 <= failover.owned_at_death <= CONCURRENCY
    assert len(reclaims) >= failover.owned_at_death, (reclaims, failover.owned_at_death)
    assert doc["lost_calls"] == len(reclaims)
    assert _events(failover.run, "hand_back") == []
    assert all(data.get("from") == "wA" and data.get("by") == "wB" for _s, _v, data in reclaims), reclaims
    # Every call taken over was answered by the survivor, which counts it in its own report.
    assert {station for station, _v, _d in reclaims} <= _made_by(doc, "wB")
    assert report_b["reclaimed"] >= len(reclaims)
    # What wA delivered before it died stays delivered: it is neither made again nor lost.
    by_a = _made_by(doc, "wA")
    assert len(by_a) >= 2
    assert by_a.isdisjoint(station for station, _v, _d in reclaims)
    assert {agent["worker"] for agent in doc["agents"].values()} == {"wA", "wB"}
    assert report_b["completed"] == reference.doc["paid_calls"] - len(by_a)


@pytest.mark.timeout(60)
def test_a_worker_killed_with_calls_in_flight_fails_over(
    reference: Reference, redis_server: Any, processes: Processes
) -> None:
    failover = _kill_a_worker_mid_run(reference.score, redis_server.url, processes)
    _assert_taken_over(failover, reference)
    # No attacca here: nothing waited for wA but what it held, so each of those is one take-over.
    assert len(failover.reclaims) == failover.owned_at_death


@pytest.mark.timeout(60)
def test_a_killed_workers_attacca_hand_offs_are_taken_over(
    chains: Reference, redis_server: Any, processes: Processes
) -> None:
    failover = _kill_a_worker_mid_run(chains.score, redis_server.url, processes, direct=True)
    _assert_taken_over(failover, chains)
    # Each hand-off ran on the worker that made the step before, but for those wB took from wA.
    agents = failover.doc["agents"]
    taken = {station for station, _v, _d in failover.reclaims}
    for chain in range(CHAINS):
        for step in range(1, STEPS):
            name, before = f"c{chain}_s{step}", agents[f"c{chain}_s{step - 1}"]["worker"]
            expected = "wB" if name in taken else before
            assert agents[name]["worker"] == expected, (name, before, sorted(taken))


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
    assert len(_made_by(doc, "w1")) == interrupted["paid_calls"]
    assert len(_made_by(doc, "w2")) == reference.doc["paid_calls"] - interrupted["paid_calls"]
    second.popen.send_signal(signal.SIGTERM)
    assert second.wait() == 0, second.stderr
    assert second.document()["completed"] == len(_made_by(doc, "w2"))


# -- 2b. the conductor killed, its workers left running: resume -------------------------------------


def _settled(client: Any, run: str) -> bool:
    """Nothing of the run waits on its streams or is held by a worker."""
    for stream in client.smembers(f"hct:run:{run}:streams"):
        for group in client.xinfo_groups(stream):
            if group["pending"] or group.get("lag"):
                return False
    return True


# Regression: at dbe676f this hung. The resume trimmed the run's streams, the worker's own attacca
# stream with them, and announced the run again; a worker that had not seen the run leave hct:runs
# kept it as joined, so every XREADGROUP failed with NOGROUP on the deleted stream, refresh() changed
# nothing, and the worker silently never read work again (for any run). Fixed in
# RedisWorkQueue.take (on NOGROUP or UNBLOCKED, join every run afresh).
@pytest.mark.timeout(60)
def test_a_worker_that_outlives_its_conductor_serves_the_resumed_run(
    reference: Reference, redis_server: Any, processes: Processes
) -> None:
    url = redis_server.url
    with _redis(url) as client:
        worker = _worker(processes, url, "w1")
        _until(lambda: _worker_alive(client, "w1"), "the worker beats")
        conductor = processes.start("conductor", "perform", str(reference.score), *RUN_OPTIONS, "--bus", url)
        _until(lambda: _results_journaled() >= 3, "3 results journaled", alive=conductor)
        conductor.popen.kill()
        conductor.wait()
        run = _the_run(client)
        assert run is not None  # nobody ended it: still announced to workers
        _until(lambda: _settled(client, run), "the worker finished what it was given", alive=worker)
        segment_started = client.hget(f"hct:run:{run}", "started")
        # Without the pause the worker races the resume's restart of the run (it hangs about one
        # time in two); paused, the worker first looks again once the run is back, every time.
        worker.popen.send_signal(signal.SIGSTOP)
        try:
            resumed = processes.start("resumed", "perform", "--resume", run, "--json", "--no-tui")
            _until(
                lambda: client.hget(f"hct:run:{run}", "started") not in (None, segment_started),
                "the resumed segment started the run's streams afresh",
                alive=resumed,
            )
        finally:
            worker.popen.send_signal(signal.SIGCONT)
        assert resumed.wait(timeout=15) == 0, resumed.stderr
    doc = resumed.document()
    assert doc["run_id"] == run and doc["segment"] == 2
    _assert_same_run(doc, reference)


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
    assert {station for station, _v, _d in hand_backs} <= _made_by(doc, "wB")
    assert report_a["completed"] + report_b["completed"] >= reference.doc["paid_calls"]
