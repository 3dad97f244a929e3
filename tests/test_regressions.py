"""Regressions found in review of L1 context, the enclave, redaction and listening: a squashed
leader hanging its followers, secrets escaped by JSON, a worker's own keys, simulated costs that
changed with the time scale, copies of read-only views refused."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from hct_cli.distributed.work import Mode, Work
from hct_cli.distributed.worker import Worker
from hct_cli.engine import Event, Performer, RunResult
from hct_cli.engine import listening as listening_module
from hct_cli.engine.enclave import readonly
from hct_cli.program.compile import compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.providers.base import CallRequest, CallResult, ProviderError
from hct_cli.providers.exec import ExecProvider
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.run.config import RunConfig
from hct_cli.score import load_score
from hct_cli.score.model import Agent
from hct_cli.store.cache import ResultCache
from hct_cli.store.home import connect
from hct_cli.store.journal import Journal, find_run
from tests.engine.fakes import score

pytestmark = pytest.mark.timeout(60)

SHARED_CONTEXT = Path(__file__).resolve().parents[1] / "scores" / "shared-context.yaml"
REVIEWERS = ("security", "performance", "correctness", "concurrency", "api", "tests")


# -- 1. listening: a leader cancelled before its task ran leaves its prefix on the way forever --


class _FirstTokenModels:
    """Reports first tokens (as the simulated provider does); answers after two short sleeps."""

    first_token_notes = True

    async def call(self, request: CallRequest) -> CallResult:
        await asyncio.sleep(0.01)
        if request.on_first_token is not None:
            request.on_first_token()
        await asyncio.sleep(0.01)
        return CallResult(f"<{request.agent.name}>", request.model, 100, 10, 0.0, 0.0, request.tier)


class _PromptJudge:
    """Answers without suspending, as a judge's answer recalled from the journal on --resume
    does: fails the first draft, passes the second."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, request: CallRequest) -> CallResult:
        self.calls += 1
        verdict = 0.0 if self.calls == 1 else 1.0
        return CallResult(json.dumps({"score": verdict, "reason": "r"}), request.model, 10, 10, 0.0, 0.0)


def test_a_leader_squashed_before_it_ran_does_not_hang_the_fan_out_issued_again() -> None:
    doc = "lorem ipsum dolor sit amet " * 400  # hoisted to the shared section, > 1,024 cacheable tokens
    review = {
        "cues": ["draft"],
        "model": "claude-sonnet-4-5",
        "tempo": "moderato",
        "prompt": "Review {{ cues.draft }} against:\n{{ inputs.doc }}",
    }
    program = score(
        {
            "draft": {
                "prompt": "Draft it.",
                "speculate": True,
                "fermata": {"check": {"judge": {"criteria": "good", "tier": "mid"}}, "retries": 2},
            },
            "r1": review,
            "r2": review,
        },
        inputs={"doc": {"type": "text", "default": doc}},
    )
    models = _FirstTokenModels()
    events: list[Event] = []
    performer = Performer(
        program, lambda spec: models, inputs={"doc": doc}, judge_provider=_PromptJudge(), observers=[events.append]
    )

    async def scenario() -> RunResult | None:
        try:
            return await asyncio.wait_for(performer.run(), 10)
        except TimeoutError:
            return None

    result = asyncio.run(scenario())
    stuck = {key: prefix.leader for key, prefix in performer.listening._on_way.items()}
    assert result is not None, f"the run hung; prefixes still on their way (leader): {stuck}"
    assert result.status == "completed"
    assert all(e.data["leader"] != e.station for e in events if e.kind == "listen"), "a station listened to itself"


# -- 2. redaction of JSON text misses every secret that JSON escapes -------------------------------

PEM = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"  # a multi-line private key
QUOTED = 'pa"ss\\w0rd-2024'  # a password with a quote and a backslash


def test_secrets_that_json_escapes_are_redacted_in_the_l5_store_and_the_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APP_PRIVATE_KEY", PEM)
    monkeypatch.setenv("DB_PASSWORD", QUOTED)
    echoed = f"the key is {PEM} and the password {QUOTED}"
    db = connect(home=tmp_path)
    try:
        ResultCache(db).put("k", CallResult(echoed, "gpt-4o-mini", 1, 1, 0.0, 0.0))
        (stored,) = db.execute("SELECT output FROM cache WHERE key = 'k'").fetchone()
        journal = Journal.start(db, "run1", "s", None, "hct: 1", RunConfig(inputs={"password": QUOTED}))
        journal.finish("completed", 0.0, {"agents": {"a": {"error": echoed}}})
        (result,) = db.execute("SELECT result FROM runs WHERE run_id = 'run1'").fetchone()
        config = find_run(db, "run1").config
    finally:
        db.close()
    leaks = {
        "L5 store": json.loads(stored),
        "journaled inputs": str(config.inputs["password"]),
        "journaled result": json.loads(result)["agents"]["a"]["error"],
    }
    assert {where: (PEM in text, QUOTED in text) for where, text in leaks.items()} == dict.fromkeys(
        leaks, (False, False)
    )


def test_a_numeric_secret_does_not_corrupt_the_journaled_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEPLOY_KEY", "20240611")
    db = connect(home=tmp_path)
    try:
        Journal.start(db, "run1", "s", None, "hct: 1", RunConfig(seed=20240611))
        config = find_run(db, "run1").config
    finally:
        db.close()
    assert config.seed == 20240611  # the number is a number, not a secret's name


# -- 3. simulated costs depend on --time-scale: the allegro bound is in wall seconds ----------------


def _allegro_run(time_scale: float) -> tuple[int, float]:
    base = load_score(SHARED_CONTEXT)
    agents = {n: replace(a, tempo="allegro") if n in REVIEWERS else a for n, a in base.agents.items()}
    allegro = replace(base, agents=MappingProxyType(agents))
    provider = SimulatedProvider(0, time_scale=time_scale)
    performer = Performer(compile_score(allegro), lambda spec: provider, inputs=resolve_inputs(allegro, {}))
    result = asyncio.run(performer.run())
    assert result.status == "completed"
    return sum(r.cached_tokens for r in result.agents.values()), round(result.cost_usd, 8)


def test_simulated_costs_of_allegro_followers_do_not_depend_on_the_time_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.2 s instead of 2 s keeps the test short: the leader's first token comes after ~2.8 s of
    # simulated time, i.e. 0.28 s at a time scale of 0.1 and 0.028 s at 0.01.
    monkeypatch.setattr(listening_module, "ALLEGRO_WAIT_S", 0.2)
    assert _allegro_run(0.1) == _allegro_run(0.01)


# -- 4. distributed mode: a worker's own secrets leave it unredacted -------------------------------


class _Queue:
    worker = "w1"


class _EchoesKey:
    def __init__(self, key: str, *, fails: bool) -> None:
        self.key = key
        self.fails = fails

    async def call(self, request: CallRequest) -> CallResult:
        if self.fails:
            raise ProviderError(f"401 invalid x-api-key {self.key}")
        return CallResult(f"the key is {self.key}", request.model, 1, 1, 0.0, 0.0)


@pytest.mark.parametrize("fails", [True, False], ids=["provider-error", "echoed-output"])
def test_a_worker_redacts_its_own_secrets_before_a_result_leaves_it(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    key = "sk-ant-only-on-the-worker-0123456789"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    worker = Worker(_Queue())  # type: ignore[arg-type]
    mode = Mode("models")
    worker._providers[mode.key] = _EchoesKey(key, fails=fails)
    request = CallRequest(Agent(name="a", index=0), "claude-sonnet-4-5", "frontier", "hi")
    message = asyncio.run(worker._call(Work("run", request, mode)))
    assert key not in f"{message.output} {message.error}"


# -- 5. a shallow copy of a read-only view is refused as a write ------------------------------------


def test_a_python_agent_that_shallow_copies_its_view_is_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "review_s6_agent.py").write_text(
        "import copy\n"
        "def tally(ctx):\n"
        "    inputs = copy.copy(ctx['inputs'])\n"
        "    inputs['n'] = len(inputs['items'])\n"
        "    items = copy.copy(ctx['inputs']['items'])\n"
        "    items.append('z')\n"
        "    return {'n': inputs['n'], 'items': items}\n",
        "utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agent = Agent(name="tally", index=0, kind="python", call="review_s6_agent:tally")
    context: dict[str, Any] = {"cues": {}, "inputs": {"items": ["x", "y"]}, "state": {}}
    request = CallRequest(agent, "python", None, "", context=context)
    result = asyncio.run(ExecProvider().call(request))
    assert result.output == {"n": 2, "items": ["x", "y", "z"]}
    assert context["inputs"]["items"] == ["x", "y"]  # and the agent's copy did not change what it read
    assert readonly({"a": 1}) == {"a": 1}
