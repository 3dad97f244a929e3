"""Typed results (``output:``): answers checked against their schema, kept as JSON, fields reached.

Scores go through the real loader and compiler; calls go to litellm with ``mock_response`` (its
own pre-call callback shows what it was asked), to the simulated provider, or to a scripted fake.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from hct_cli.events import Event
from hct_cli.providers.litellm_provider import LiteLLMProvider
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import Recording, Scripted, kinds, run, score
from tests.providers.test_litellm_tools import Received, received

assert received  # the fixture, imported for this module's tests

pytestmark = pytest.mark.timeout(60)

FILES = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["path", "hunks"],
                "properties": {"path": {"type": "string"}, "hunks": {"type": "array"}},
            },
        }
    },
}


def agents(**output: Any) -> dict[str, Any]:
    return {
        "parse": {"prompt": "List the files of the diff.", "output": {"schema": FILES, **output}},
        "review": {"prompt": "Review {{ cues.parse.files[0].path }}.", "cues": ["parse"]},
    }


VALID = '{"files": [{"path": "src/app.py", "hunks": []}]}'


def test_a_valid_answer_commits_as_json_and_its_fields_reach_the_next_prompt() -> None:
    provider = Recording(Scripted({"parse": "```json\n" + VALID + "\n```"}))
    result = run(score(agents()), provider)
    assert result.status == "completed"
    parse = result.agents["parse"]
    assert parse.output == {"files": [{"path": "src/app.py", "hunks": []}]}  # data, not text
    assert provider.request("review", 1).prompt == "Review src/app.py."


def test_an_invalid_answer_is_asked_again_with_the_error_then_fails_with_it() -> None:
    bad = '{"files": [{"path": 3}]}'
    provider = Recording(Scripted({"parse": [bad, "no json here", VALID]}))
    events: list[Event] = []
    result = run(score(agents()), provider, events)  # one retry by default
    parse = result.agents["parse"]
    assert parse.status == "failed" and result.agents["review"].status == "skipped"
    assert parse.error is not None and parse.error.startswith("output failed 2 times: the answer is not JSON")
    gates = kinds(events, "gate", "parse")
    assert [g.data["passed"] for g in gates] == [False, False] and gates[0].data["check"] == "output"
    assert "'hunks' is a required property" in gates[0].data["reason"] and "$.files[0]" in gates[0].data["reason"]
    again = provider.request("parse", 2).prompt
    assert "did not pass its check" in again and "'hunks' is a required property" in again

    provider = Recording(Scripted({"parse": [bad, VALID]}))
    result = run(score(agents(retries=1)), provider)
    assert result.agents["parse"].status == "done" and result.agents["parse"].version == 2


def test_on_fail_caesura_stops_the_run() -> None:
    result = run(score(agents(on_fail="caesura")), Scripted({"parse": "[]"}))
    assert result.status == "caesura"
    assert result.agents["parse"].error is not None and "output failed" in result.agents["parse"].error


def test_the_simulated_model_answers_a_valid_instance_and_its_tokens_follow_it() -> None:
    results = [run(score(agents()), SimulatedProvider(seed)) for seed in (1, 1, 2)]
    outputs = [r.agents["parse"].output for r in results]
    for output in outputs:
        jsonschema.validate(output, FILES)
    assert outputs[0] == outputs[1]  # the same seed, the same answer
    parse = results[0].agents["parse"]
    assert parse.result is not None
    assert parse.result.result.completion_tokens == max(1, len(__import__("json").dumps(outputs[0])) // 4)
    pinned = agents()
    pinned["parse"]["simulate"] = {"output": {"files": [{"path": "pinned.py", "hunks": [1]}]}}
    result = run(score(pinned), SimulatedProvider(0))
    assert result.agents["parse"].output == {"files": [{"path": "pinned.py", "hunks": [1]}]}


def test_litellm_is_asked_for_the_schema_and_each_answer_is_checked(received: Received) -> None:
    replies = iter(['{"files": []}', VALID])
    provider = LiteLLMProvider(retries=0, mock=lambda model, attempt: {"mock_response": next(replies)})
    result = run(score(agents()), provider)
    assert result.agents["parse"].status == "done" and result.agents["parse"].version == 2
    assert result.agents["parse"].output == {"files": [{"path": "src/app.py", "hunks": []}]}
    asked = [call for call in received.seen if "List the files" in str(call["messages"])]
    assert len(asked) == 2
    formats = [call.get("response_format") or call.get("optional_params", {}).get("response_format") for call in asked]
    assert all(f is not None for f in formats), asked[0].keys()
    assert "JSON Schema" in str(asked[0]["messages"][-1]["content"])
    assert (
        "should be non-empty" in str(asked[1]["messages"])
        or "minItems" in str(asked[1]["messages"])
        or ("did not pass its check" in str(asked[1]["messages"]))
    )


FINDING = {"type": "object", "required": ["file", "severity"], "properties": {"severity": {"enum": ["low", "high"]}}}


def test_a_write_or_append_that_breaks_a_state_schema_is_asked_again_then_fails() -> None:
    state = {
        "summary": {"initial": "", "schema": {"type": "string", "maxLength": 12}},
        "findings": {"initial": [], "schema": {"type": "array", "items": FINDING, "maxItems": 2}},
    }
    typed = {"type": "object", "required": ["file"]}
    agents = {
        "writer": {"prompt": "Sum up.", "writes": ["summary"]},
        "finder": {"prompt": "Find.", "appends": ["findings"], "output": {"schema": typed}},
    }
    good = '{"file": "a.py", "severity": "high"}'
    scripts = {"writer": ["much too long a summary", "short"], "finder": ['{"file": "a.py", "severity": "dire"}', good]}
    provider = Recording(Scripted(scripts))
    events: list[Event] = []
    result = run(score(agents, state=state), provider, events)
    assert result.status == "completed", result.agents
    assert result.state == {"summary": "short", "findings": [{"file": "a.py", "severity": "high"}]}
    gates = kinds(events, "gate", "finder")
    assert gates[0].data["check"] == "state" and "state key 'findings'" in gates[0].data["reason"]
    assert "'dire' is not one of" in provider.request("finder", 2).prompt
    assert "is too long" in provider.request("writer", 2).prompt  # text is checked as a string

    scripts = {"writer": ["much too long a summary"], "finder": [good]}
    result = run(score(agents, state=state), Scripted(scripts))
    writer = result.agents["writer"]
    assert writer.status == "failed" and writer.error is not None
    assert writer.error.startswith("state failed 2 times: state key 'summary'") and result.state["summary"] == ""
