"""A run whose input is a secret, killed with SIGKILL and resumed: never on the redaction placeholder.

The journal keeps an input equal to (or containing) an environment secret redacted. A resume
takes the real value back from the secret's variable, or from ``--input NAME=...``, checked
against a keyed hash the journal keeps instead of the value; else it refuses, saying which input
and how to give it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCORE = Path(__file__).resolve().parents[1] / "resources" / "scores" / "durable.yaml"
SECRET_NAME = "HCT_TEST_SERVICE_TOKEN"
SECRET = "tok-5f1c9e0a7b3d42e8"
KILLED = (-9, 137)

pytestmark = pytest.mark.timeout(120)


def _env(home: Path, *, secret: str | None = SECRET, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HCT_FAULT", SECRET_NAME)}
    env.update(HCT_HOME=str(home), NO_COLOR="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    if secret is not None:
        env[SECRET_NAME] = secret
    if fault is not None:
        env["HCT_FAULT"] = fault
    return env


def _hct(home: Path, *args: str, **env: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hct_cli", *args],
        env=_env(home, **env),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _perform(home: Path, subject: str, **env: Any) -> subprocess.CompletedProcess[str]:
    options = ["--simulate", "--seed", "3", "--no-cache", "--json", "--time-scale", "0.05"]
    return _hct(home, "perform", str(SCORE), *options, "--input", f"subject={subject}", **env)


def _run_id(proc: subprocess.CompletedProcess[str]) -> str:
    first = proc.stderr.splitlines()[0]
    assert first.startswith("run "), proc.stderr
    return first.split()[1].rstrip(":")


def _outputs(doc: dict[str, Any]) -> tuple[Any, ...]:
    return doc["state"], {n: (a["output"], a["version"]) for n, a in doc["agents"].items()}, doc["cost_usd"]


def _paid(home: Path, run_id: str) -> list[tuple[str, int, float]]:
    show = json.loads(_hct(home, "show", run_id, "--json").stdout)
    return sorted((c["agent"], c["version"], c["cost_usd"]) for c in show["calls"] if not c["cached"])


def _journal_bytes(home: Path) -> bytes:
    return b"".join(path.read_bytes() for path in home.glob("hct.db*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Any, ...], list[tuple[str, int, float]]]:
    home = tmp_path_factory.mktemp("secret-reference")
    proc = _perform(home, f"Rotate {SECRET} safely")
    assert proc.returncode == 0, proc.stderr
    return _outputs(json.loads(proc.stdout)), _paid(home, _run_id(proc))


def _crashed(home: Path) -> str:
    proc = _perform(home, f"Rotate {SECRET} safely", fault="after:3")
    assert proc.returncode in KILLED, proc.stderr
    assert SECRET.encode() not in _journal_bytes(home)
    return _run_id(proc)


def test_a_resume_takes_the_secret_back_from_its_variable(reference: Any, tmp_path: Path) -> None:
    run_id = _crashed(tmp_path)
    proc = _hct(tmp_path, "perform", "--resume", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # The same prompts (digests) as the uninterrupted run: nothing journaled was paid again.
    assert _outputs(doc) == reference[0]
    assert _paid(tmp_path, run_id) == reference[1]
    assert SECRET.encode() not in _journal_bytes(tmp_path)


def test_a_resume_without_the_secret_refuses_and_names_the_input(reference: Any, tmp_path: Path) -> None:
    run_id = _crashed(tmp_path)
    before = _paid(tmp_path, run_id)
    for env in ({"secret": None}, {"secret": "tok-another-value-0000"}):
        proc = _hct(tmp_path, "perform", "--resume", run_id, "--json", **env)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        said = proc.stdout + proc.stderr  # with --json the error is a JSON document on stdout
        assert "'subject'" in said and SECRET_NAME in said
        assert f"--resume {run_id} --input subject=" in said  # what to do next
        assert SECRET not in said
    assert _paid(tmp_path, run_id) == before  # nothing ran

    wrong = _hct(tmp_path, "perform", "--resume", run_id, "--input", "subject=Rotate it", "--json", secret=None)
    assert wrong.returncode == 2 and "'subject'" in wrong.stdout and "Traceback" not in wrong.stderr

    given = _hct(
        tmp_path, "perform", "--resume", run_id, "--input", f"subject=Rotate {SECRET} safely", "--json", secret=None
    )
    assert given.returncode == 0, given.stderr
    assert _outputs(json.loads(given.stdout)) == reference[0]
    assert _paid(tmp_path, run_id) == reference[1]
    # Given on the command line, it is still a secret: the journal never holds it.
    assert SECRET.encode() not in _journal_bytes(tmp_path)
    assert SECRET not in given.stdout + given.stderr


def test_only_a_redacted_input_may_be_given_again(tmp_path: Path) -> None:
    run_id = _crashed(tmp_path)
    proc = _hct(tmp_path, "perform", "--resume", run_id, "--input", "other=x", "--json")
    assert proc.returncode == 2
    assert "--resume takes the score and inputs from the journal" in proc.stdout
    assert "subject" in json.loads(proc.stdout)["error"]["hint"]  # the one input that may be given
    assert "Traceback" not in proc.stderr
