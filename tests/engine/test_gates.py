"""Fermata gates: every kind of check passing and failing, and every ``on_fail``.

Deterministic kinds (regex, json_schema, min/max_length, contains) decide at once; a python
predicate, an LLM judge and a person take time and hold the result (a ``fermata`` event) until
they decide. Scores go through the real loader (schema and lint) and the compiler; calls go to a
scripted fake provider, the simulated provider, or litellm with a mock response (no network).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest

from hct_cli.engine import EngineOptions
from hct_cli.engine.gates import Gatekeeper
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.providers.approvals import record_verdict
from hct_cli.providers.human import HumanDesk
from hct_cli.providers.litellm_provider import LiteLLMProvider
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.store.home import connect
from tests.engine.fakes import Recording, Scripted, conduct, eventually, index_of, kinds, performer, run, score, seen
from tests.engine.fakes import gatechecks as gatechecks  # the autouse fixture

pytestmark = pytest.mark.timeout(60)


# -- helpers ------------------------------------------------------------------------------------


def gated(check: Mapping[str, Any], **fermata: Any) -> dict[str, Any]:
    """Agent ``a`` with a fermata, and ``b`` that cues it."""
    return {
        "a": {"prompt": "answer", "fermata": {"check": dict(check), **fermata}},
        "b": {"prompt": "use {{ cues.a }}", "cues": ["a"]},
    }


# -- deterministic kinds ------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}

DETERMINISTIC = [
    # check, an output that passes, one that fails, the failure's reason
    ({"regex": r"^\d+$"}, "42", "forty-two", r"no match for /^\d+$/"),
    ({"json_schema": SCHEMA}, '{"x": 1}', '{"x": "one"}', "not valid against the JSON Schema"),
    ({"json_schema": SCHEMA}, '{"x": 7, "y": 2}', "not json at all", "not valid against the JSON Schema"),
    ({"min_length": 5}, "hello world", "hi", "2 characters, fewer than 5"),
    ({"max_length": 5}, "hi", "hello world", "11 characters, more than 5"),
    ({"contains": "alpha"}, "an alpha", "a beta", "does not contain 'alpha'"),
    ({"contains": ["alpha", "beta"]}, "alpha and beta", "alpha only", "does not contain 'beta'"),
    ({"regex": "ok", "min_length": 4}, "ok, fine", "ok", "2 characters, fewer than 4"),
]
IDS = ["regex", "json_schema", "json_schema_not_json", "min_length", "max_length", "contains", "contains_all", "both"]
PASSING = [(check, good) for check, good, _, _ in DETERMINISTIC]
FAILING = [(check, bad, reason) for check, _, bad, reason in DETERMINISTIC]


@pytest.mark.parametrize(("check", "good"), PASSING, ids=IDS)
def test_a_deterministic_check_passes_at_once_and_the_result_commits(check: dict[str, Any], good: str) -> None:
    provider, events, result = Scripted.perform(score(gated(check, retries=0)), {"a": good})
    assert result.status == "completed"
    a = result.agents["a"]
    assert (a.status, a.output, a.version, a.calls) == ("done", good, 1, 1)
    [gate] = kinds(events, "gate", "a")
    assert gate.data["passed"] is True and gate.data["reason"] == "passed"
    assert not seen(events, "fermata", "a"), "a deterministic check held the result"
    assert index_of(events, "gate", "a") < index_of(events, "cue", "a") < index_of(events, "issue", "b")
    assert result.agents["b"].operands == {"a": 1}
    assert provider.of("b")[0].context["cues"]["a"] == good


@pytest.mark.parametrize(("check", "bad", "reason"), FAILING, ids=IDS)
def test_a_deterministic_check_fails_at_once_and_the_agent_fails(check: dict[str, Any], bad: str, reason: str) -> None:
    provider, events, result = Scripted.perform(score(gated(check, retries=0)), {"a": bad})
    assert result.status == "failed"
    a = result.agents["a"]
    assert a.status == "failed"
    assert a.error is not None and a.error.startswith("fermata failed 1 times: ") and reason in a.error
    [gate] = kinds(events, "gate", "a")
    assert gate.data["passed"] is False and reason in gate.data["reason"]
    assert not seen(events, "fermata", "a")
    assert not seen(events, "cue", "a")
    assert result.agents["b"].status == "skipped"
    assert provider.of("b") == []


def test_under_simulation_a_deterministic_check_with_a_pass_rate_is_a_draw() -> None:
    """With ``simulate.pass_rate`` and a simulate seed, the check's own outcome does not matter."""
    always = {"prompt": "x", "simulate": {"pass_rate": 1.0}, "fermata": {"check": {"regex": "never"}, "retries": 0}}
    never = {"prompt": "x", "simulate": {"pass_rate": 0.0}, "fermata": {"check": {"regex": "."}, "retries": 0}}
    program = score({"always": always, "never": never})
    _, events, result = Scripted.perform(program, gates=Gatekeeper(tiers=program.tiers, simulate_seed=7))
    assert result.agents["always"].status == "done"
    assert result.agents["never"].status == "failed"
    for name, passed in (("always", True), ("never", False)):
        [gate] = kinds(events, "gate", name)
        assert gate.data["passed"] is passed
        assert gate.data["reason"].startswith("simulated check (pass rate")
    # Without a simulate seed the same score checks the outputs for real.
    real = run(program, Scripted())
    assert real.agents["always"].status == "failed"
    assert real.agents["never"].status == "done"


# -- python predicates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "output", "passed", "reason"),
    [
        ("long_enough", "a long enough answer", True, "gatechecks:long_enough returned True"),
        ("long_enough", "short", False, "gatechecks:long_enough returned False"),
        ("needs_number", "the answer is 42", True, "has a number"),
        ("needs_number", "no digits here", False, "needs a number"),
        ("explode", "anything", False, "gatechecks:explode raised ValueError: boom"),
        ("async_has_done", "all DONE", True, "gatechecks:async_has_done returned True"),
        ("async_has_done", "not yet", False, "gatechecks:async_has_done returned False"),
    ],
    ids=["pass", "fail", "tuple_pass", "tuple_fail", "raises", "async_pass", "async_fail"],
)
def test_a_python_predicate_holds_the_result_then_decides(
    gatechecks: ModuleType, predicate: str, output: str, passed: bool, reason: str
) -> None:
    program = score(gated({"python": f"gatechecks:{predicate}"}, retries=0))
    _, events, result = Scripted.perform(program, {"a": output}, allow_exec=True)
    assert gatechecks.seen == [output], "the predicate was not called once with the output"
    [held] = kinds(events, "fermata", "a")
    assert held.data["hold"] == "gate"
    [gate] = kinds(events, "gate", "a")
    assert gate.data == {"passed": passed, "reason": reason}
    assert index_of(events, "fermata", "a") < index_of(events, "gate", "a")
    a = result.agents["a"]
    if passed:
        assert result.status == "completed"
        assert (a.status, a.output) == ("done", output)
        assert result.agents["b"].operands == {"a": 1}
        assert index_of(events, "gate", "a") < index_of(events, "issue", "b")
    else:
        assert result.status == "failed"
        assert a.status == "failed" and a.error == f"fermata failed 1 times: {reason}"
        assert result.agents["b"].status == "skipped"


def test_a_python_predicate_needs_allow_exec(gatechecks: ModuleType) -> None:
    program = score(gated({"python": "gatechecks:long_enough"}, retries=0))
    result = run(program, Scripted({"a": "a long enough answer"}))  # the default Gatekeeper
    assert result.status == "failed"
    assert result.agents["a"].status == "failed"
    assert "needs --allow-exec" in (result.agents["a"].error or "")
    assert gatechecks.seen == [], "the predicate ran without --allow-exec"


def test_a_python_predicate_that_cannot_be_imported_fails_the_check() -> None:
    program = score(gated({"python": "gatechecks:no_such_function"}, retries=0))
    result = run(program, Scripted({"a": "anything"}), allow_exec=True)
    assert result.agents["a"].status == "failed"
    assert "cannot import gatechecks:no_such_function" in (result.agents["a"].error or "")


def test_a_python_predicate_that_never_answers_fails_at_the_fermata_timeout(gatechecks: ModuleType) -> None:
    program = score(gated({"python": "gatechecks:forever"}, retries=0, timeout_s=0.05))
    result = run(program, Scripted({"a": "anything"}), allow_exec=True)
    assert gatechecks.seen == ["anything"]
    assert result.agents["a"].status == "failed"
    assert "gatechecks:forever took longer than 0.05s" in (result.agents["a"].error or "")


def test_deterministic_kinds_are_decided_before_the_predicate_runs(gatechecks: ModuleType) -> None:
    program = score(gated({"python": "gatechecks:long_enough", "contains": "needle"}, retries=0))
    result = run(program, Scripted({"a": "a long answer without it"}), allow_exec=True)
    assert result.agents["a"].status == "failed"
    assert "does not contain 'needle'" in (result.agents["a"].error or "")
    assert gatechecks.seen == []


# -- LLM judge ----------------------------------------------------------------------------------


def judged(pass_rate: float, retries: int = 0) -> dict[str, Any]:
    return {
        "a": {
            "prompt": "write a haiku",
            "simulate": {"pass_rate": pass_rate, "latency_ms": 1},
            "fermata": {"check": {"judge": {"criteria": "is a haiku"}}, "retries": retries},
        },
        "b": {"prompt": "use {{ cues.a }}", "cues": ["a"], "simulate": {"latency_ms": 1}},
    }


@pytest.mark.parametrize("simulate_seed", [None, 0], ids=["no_seed", "simulate_seed"])
def test_a_simulated_judge_passes_at_pass_rate_one_and_its_call_is_a_priced_check(simulate_seed: int | None) -> None:
    program = score(judged(1.0))
    provider = Recording(SimulatedProvider(0, time_scale=0.0))
    events: list[Event] = []
    # No judge_provider: the judge goes to the first model provider (here the simulated one).
    result = run(program, provider, events, gates=Gatekeeper(tiers=program.tiers, simulate_seed=simulate_seed))
    assert result.status == "completed"
    a = result.agents["a"]
    assert a.status == "done"
    judges = [r for r in provider.requests if r.purpose == "judge"]
    assert len(judges) == 1 and judges[0].agent.name == "a"
    assert judges[0].model == "gpt-4o-mini" and judges[0].tier == "mid"  # the judge's default tier
    assert "is a haiku" in judges[0].prompt and str(a.output) in judges[0].prompt
    [check] = a.checks
    assert check.result.cost_usd > 0
    assert a.result is not None and a.result.result.cost_usd > 0
    assert a.cost_usd == pytest.approx(a.result.result.cost_usd + check.result.cost_usd)
    assert a.calls == 2
    assert result.cost_usd == pytest.approx(a.cost_usd + result.agents["b"].cost_usd)
    [judge_event] = [e for e in events if e.kind == "result" and e.data.get("purpose") == "judge"]
    assert judge_event.station == "a" and judge_event.data["cost_usd"] == check.result.cost_usd
    [gate] = kinds(events, "gate", "a")
    assert gate.data["passed"] is True and gate.data["reason"].startswith("judge scored ")
    assert seen(events, "fermata", "a")
    assert result.agents["b"].operands == {"a": 1}


def test_a_simulated_judge_fails_at_pass_rate_zero_and_every_judge_call_is_paid() -> None:
    program = score(judged(0.0, retries=1))
    provider = Recording(SimulatedProvider(0, time_scale=0.0))
    events: list[Event] = []
    result = run(program, provider, events)
    assert result.status == "failed"
    a = result.agents["a"]
    assert a.status == "failed" and a.version == 2
    assert a.error is not None and a.error.startswith("fermata failed 2 times: judge scored ")
    assert "(threshold 0.7)" in a.error
    assert len(a.checks) == 2 and all(check.result.cost_usd > 0 for check in a.checks)
    assert [r.version for r in provider.requests if r.purpose == "judge"] == [1, 2]
    paid = [m.result.cost_usd for m in a.all_calls()]
    assert len(paid) == 4  # two answers, two judges
    assert a.cost_usd == pytest.approx(sum(paid))
    assert result.cost_usd == pytest.approx(a.cost_usd)
    assert [e.data["passed"] for e in kinds(events, "gate", "a")] == [False, False]
    assert result.agents["b"].status == "skipped"


def mocked_judge(answer: str) -> LiteLLMProvider:
    return LiteLLMProvider(retries=0, mock=lambda model, attempt: {"mock_response": answer})


@pytest.mark.parametrize(
    ("answer", "threshold", "passed", "reason"),
    [
        ('{"score": 0.9, "reason": "ok"}', None, True, "judge scored 0.90 (threshold 0.7): ok"),
        ('{"score": 0.2, "reason": "vague"}', None, False, "judge scored 0.20 (threshold 0.7): vague"),
        ('{"score": 0.9, "reason": "ok"}', 0.95, False, "judge scored 0.90 (threshold 0.95): ok"),
        ("I cannot score this.", None, False, "gave no score"),
    ],
    ids=["pass", "fail", "threshold", "no_score"],
)
def test_a_litellm_judge_with_a_mock_response_decides_the_gate(
    answer: str, threshold: float | None, passed: bool, reason: str
) -> None:
    judge: dict[str, Any] = {"criteria": "answers the question"}
    if threshold is not None:
        judge["threshold"] = threshold
    program = score(gated({"judge": judge}, retries=0))
    provider = Scripted({"a": "an answer"})
    judge_provider = mocked_judge(answer)
    events: list[Event] = []
    result = run(program, provider, events, judge_provider=judge_provider)
    assert judge_provider.calls == 1
    assert not any(r.purpose == "judge" for r in provider.requests), "the judge went to the agent's provider"
    a = result.agents["a"]
    [check] = a.checks
    assert check.result.output == answer and check.result.model == "gpt-4o-mini"
    assert a.cost_usd == pytest.approx(provider.cost + check.result.cost_usd)
    [gate] = kinds(events, "gate", "a")
    assert gate.data["passed"] is passed and reason in gate.data["reason"]
    assert a.status == ("done" if passed else "failed")
    assert result.agents["b"].status == ("done" if passed else "skipped")


# -- a person -----------------------------------------------------------------------------------


def human(timeout_s: float = 60.0, default: str = "reject", retries: int = 0) -> Program:
    return score(
        gated({"human": True}, timeout_s=timeout_s, default=default, retries=retries),
    )


@pytest.mark.parametrize(
    ("verdict", "note", "status", "reason"),
    [
        ("approve", "", "done", "approved: decided in the conductor"),
        ("reject", "not good", "failed", "rejected: not good"),
    ],
)
def test_a_person_decides_through_the_desk_while_the_result_is_held(
    verdict: str, note: str, status: str, reason: str
) -> None:
    program = human()
    desk = HumanDesk("run-desk", poll_s=0.01)
    provider = Scripted({"a": "please approve me"})
    events: list[Event] = []
    p = performer(program, provider, events, gates=Gatekeeper(tiers=program.tiers, desk=desk))

    async def cues() -> None:
        await eventually(lambda: "a" in desk.waiting, "the desk waits for a decision on a")
        assert desk.waiting["a"].output == "please approve me" and desk.waiting["a"].version == 1
        assert p.records["a"].status == "held"
        assert provider.of("b") == [], "b started before the person decided"
        assert not seen(events, "gate", "a")
        desk.decide("a", 1, verdict, note)

    result = conduct(p, cues)
    assert "a" not in desk.waiting
    [gate] = kinds(events, "gate", "a")
    assert gate.data == {"passed": verdict == "approve", "reason": reason}
    assert result.agents["a"].status == status
    if verdict == "approve":
        assert result.status == "completed"
        assert result.agents["b"].operands == {"a": 1}
    else:
        assert result.agents["a"].error == f"fermata failed 1 times: {reason}"
        assert result.agents["b"].status == "skipped"


@pytest.mark.parametrize(("default", "status"), [("approve", "done"), ("reject", "failed")])
def test_without_a_decision_the_hold_times_out_to_its_default(default: str, status: str) -> None:
    program = human(timeout_s=0.05, default=default)
    desk = HumanDesk("run-timeout", poll_s=0.01)
    events: list[Event] = []
    result = run(program, Scripted(), events, gates=Gatekeeper(tiers=program.tiers, desk=desk))
    [gate] = kinds(events, "gate", "a")
    word = "approved" if default == "approve" else "rejected"
    assert gate.data == {
        "passed": default == "approve",
        "reason": f"{word}: no decision within 0.05s: {default} by default",
    }
    assert result.agents["a"].status == status
    assert result.agents["b"].status == ("done" if default == "approve" else "skipped")


@pytest.mark.parametrize(("verdict", "status"), [("approve", "done"), ("reject", "failed")])
def test_a_person_decides_from_another_shell_through_the_database(verdict: str, status: str) -> None:
    program = human()
    db = connect()
    desk = HumanDesk("run-db", db, poll_s=0.01)
    events: list[Event] = []
    p = performer(
        program,
        Scripted(),
        events,
        gates=Gatekeeper(tiers=program.tiers, desk=desk),
        options=EngineOptions(run_id="run-db"),
    )

    async def cues() -> None:
        await eventually(lambda: "a" in desk.waiting, "the desk waits for a decision on a")
        # A decision on another run, or on another agent, is not this one.
        opposite = "reject" if verdict == "approve" else "approve"
        record_verdict(db, "another-run", "a", opposite)
        record_verdict(db, "run-db", "b", opposite)
        await asyncio.sleep(0.05)  # several polls: none of them may decide
        assert not seen(events, "gate", "a")
        record_verdict(db, "run-db", "a", verdict, "from the other shell")

    try:
        result = conduct(p, cues)
    finally:
        db.close()
    [gate] = kinds(events, "gate", "a")
    word = "approved" if verdict == "approve" else "rejected"
    assert gate.data == {"passed": verdict == "approve", "reason": f"{word}: from the other shell"}
    assert result.agents["a"].status == status


def test_a_human_check_without_a_desk_fails_instead_of_hanging() -> None:
    result = run(human(), Scripted())
    assert result.agents["a"].status == "failed"
    assert "needs a person's approval" in (result.agents["a"].error or "")


def test_hold_approval_asks_a_person_after_the_deterministic_check_passes() -> None:
    program = score(gated({"min_length": 3}, hold="approval", timeout_s=60, retries=0))
    desk = HumanDesk("run-hold", poll_s=0.01)
    provider = Scripted({"a": "long enough"})
    p = performer(program, provider, gates=Gatekeeper(tiers=program.tiers, desk=desk))

    async def cues() -> None:
        await eventually(lambda: "a" in desk.waiting, "the desk waits for a decision on a")
        assert provider.of("b") == []
        desk.decide("a", 1, "approve")

    result = conduct(p, cues)
    assert result.agents["a"].status == "done" and result.agents["b"].status == "done"

    # A result that fails the deterministic part is rejected without asking anyone.
    quick = performer(program, Scripted({"a": "no"}), gates=Gatekeeper(tiers=program.tiers, desk=desk))
    rejected = asyncio.run(quick.run())
    assert rejected.agents["a"].status == "failed"
    assert "fewer than 3" in (rejected.agents["a"].error or "")


# -- on_fail ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regex", "python"])
def test_retry_runs_a_new_version_whose_prompt_carries_the_failure_reason(kind: str) -> None:
    check = {"regex": r"\d"} if kind == "regex" else {"python": "gatechecks:needs_number"}
    reason = r"no match for /\d/" if kind == "regex" else "needs a number"
    program = score(gated(check, on_fail="retry", retries=2))
    provider, events, result = Scripted.perform(program, {"a": ["no digits here", "the answer is 42"]}, allow_exec=True)
    assert result.status == "completed"
    a = result.agents["a"]
    assert (a.status, a.version, a.output) == ("done", 2, "the answer is 42")
    assert [m.result.output for m in a.earlier] == ["no digits here"]
    first, second = provider.of("a")
    assert (first.version, second.version) == (1, 2)
    assert "did not pass" not in first.prompt
    assert second.prompt.startswith(first.prompt)
    assert f"Your previous answer did not pass its check ({reason}). Answer again." in second.prompt
    assert [(e.version, e.data["passed"]) for e in kinds(events, "gate", "a")] == [(1, False), (2, True)]
    # The dependent never saw the failed version: it fired once, on a@2.
    assert [r.context["cues"]["a"] for r in provider.of("b")] == ["the answer is 42"]
    assert result.agents["b"].operands == {"a": 2}
    cues = [e.version for e in events if e.kind == "cue" and e.station == "a"]
    assert cues == [2]


def test_retry_fails_the_agent_once_its_retries_are_spent() -> None:
    program = score(gated({"regex": r"\d"}, retries=2))
    provider = Scripted({"a": "never a digit"})
    result = run(program, provider)
    a = result.agents["a"]
    assert a.status == "failed" and a.version == 3 and len(provider.of("a")) == 3
    assert a.error == r"fermata failed 3 times: no match for /\d/"
    assert result.agents["b"].status == "skipped"
    assert result.status == "failed"


def test_escalate_sends_each_retry_one_tier_up() -> None:
    agents = gated({"regex": r"\d"}, on_fail="escalate", retries=3)
    agents["a"]["dynamics"] = "pp"  # moderato x pp routes to the local tier
    program = score(agents)
    provider, events, result = Scripted.perform(program, {"a": ["none", "still none", "42"]})
    assert result.status == "completed"
    routes = [(r.version, r.tier, r.model) for r in provider.of("a")]
    assert routes == [(1, "local", "ollama/llama3.1"), (2, "mid", "gpt-4o-mini"), (3, "frontier", "claude-sonnet-4-5")]
    a = result.agents["a"]
    assert (a.tier, a.model, a.route_model) == ("frontier", "claude-sonnet-4-5", "claude-sonnet-4-5")
    boosts = [(e.version, e.data["tier"]) for e in events if e.kind == "boost" and e.station == "a"]
    assert boosts == [(2, "mid"), (3, "frontier")]
    # Without escalate the retry stays on the agent's tier.
    retry = gated({"regex": r"\d"}, on_fail="retry", retries=3)
    retry["a"]["dynamics"] = "pp"
    plain = Scripted({"a": ["none", "42"]})
    run(score(retry), plain)
    assert [r.tier for r in plain.of("a")] == ["local", "local"]


def test_caesura_on_fail_stops_the_run_without_retrying() -> None:
    program = score(gated({"regex": r"\d"}, on_fail="caesura", retries=3))
    provider, events, result = Scripted.perform(program, {"a": "no digits"})
    assert result.status == "caesura"
    assert len(provider.of("a")) == 1
    a = result.agents["a"]
    assert a.status == "squashed" and a.error == r"fermata failed: no match for /\d/"
    assert result.agents["b"].status == "skipped"
    assert result.caesura is not None and result.caesura["agent"] == "a" and result.caesura["checkpoint"] == 0
    assert seen(events, "caesura", "a")


# -- the run's clock ------------------------------------------------------------------------------


class _Imports:
    """A meta path finder that finds nothing: it records every module imported anew while on."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.on = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if self.on:
            self.names.append(name)


def test_a_run_loads_what_its_checks_need_before_its_clock_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first check a run decided used to import the regex engine on the conductor's loop:
    milliseconds idle, tens of them on a loaded machine, paid by the first result to commit, so
    that agent's next call went later by as much and which of two close results committed first
    (collab-writing's planner against its editor) depended on the load. Everything the checks
    need loads when the Performer is built; the run itself imports nothing."""
    program = score(
        {
            "planner": {"prompt": "plan", "vamp": {"max": 2, "until": {"contains": "FINAL"}}},
            "writer": {"prompt": "write", "fermata": {"check": {"regex": "^<writer", "min_length": 3}}},
            "editor": {
                "prompt": "edit {{ cues.writer }}",
                "cues": ["writer"],
                "tacet_if": {"cue": "writer", "contains": "SKIP"},
            },
        }
    )
    # Loading this score compiled its pattern; one whose checks have none (collab-writing's
    # are all ``contains``) has not imported the regex engine when its run starts.
    for name in [name for name in sys.modules if name == "regex" or name.startswith("regex.")]:
        monkeypatch.delitem(sys.modules, name)
    imports = _Imports()
    monkeypatch.setattr(sys, "meta_path", [imports, *sys.meta_path])
    events: list[Event] = []
    p = performer(program, Scripted(), events)
    imports.on = True
    result = asyncio.run(p.run())
    imports.on = False
    assert result.status == "completed"
    assert len(kinds(events, "vamp", "planner")) == 1 and seen(events, "gate", "writer")  # the checks ran
    assert imports.names == []
