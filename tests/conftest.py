"""Shared fixtures: every test runs with its own HCT_HOME and working directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = Path(__file__).resolve().parent / "resources"
SCORES = REPO / "scores"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep journals, stores and predictors of a test out of the user's directories."""
    home = tmp_path_factory.mktemp("hct-home")
    monkeypatch.setenv("HCT_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    yield home


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def resources() -> Path:
    return RESOURCES


class RedisServer:
    """A private ``redis-server`` on a free loopback port; :meth:`stop` and :meth:`start` again
    on the same port simulate losing Redis and getting it back."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis server of this test's own. Skips only when no ``redis-server`` exists and
    ``HCT_REQUIRE_REDIS`` is unset (CI sets it, so there the tests always run)."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("HCT_REQUIRE_REDIS"):
            pytest.fail("HCT_REQUIRE_REDIS is set but redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (set HCT_REQUIRE_REDIS=1 to make this a failure)")
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
