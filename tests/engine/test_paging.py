"""L1 through the engine: a call routed to a model with a small window gets messages that fit
it, its material paged out by priority and recency behind visible markers, the reference frame
intact in the system message; a page event says what was cut; an agent whose frame and prompt
cannot fit fails before any call.

A value of at least ``HOIST_CHARS`` characters quoted whole is laid out in the request's shared
section (a ``<cues.logs>`` block before the instructions, which point to it); when such a value
is paged, its marker is in that block. A value quoted with a key step stays in the instructions,
and so does its marker.

Scores go through the real loader and compiler and are performed on the simulated provider
(no latency), wrapped to record exactly what each call was sent. The simulated provider counts
about four characters a token, as the engine's estimate does, so "fits" is measured here with
:func:`estimate_tokens` on the messages actually sent (the system message, then one user message
holding the shared section and the instructions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.engine import RunResult
from hct_cli.engine.context import HOIST_CHARS, block, pointer
from hct_cli.errors import ScoreError
from hct_cli.events import Event
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score, load_score_text
from hct_cli.program.window import estimate_tokens, frame_text
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import Recording, index_of, kinds, program_of, run, score

pytestmark = pytest.mark.timeout(60)

SCORES = Path(__file__).resolve().parents[1] / "resources" / "scores" / "paging"
PAGING = SCORES / "paging.yaml"
TINY = "openai/tiny"
#: The local tier declares 1024 tokens; an agent at mf with max_tokens 128 may send 896.
WINDOW = 896
ROUTING: dict[str, Any] = {
    "tiers": {"local": {"model": TINY, "context_window": 1024}},
    "table": {"largo": {"mf": "local"}},  # largo x mf goes to the small local model
}
SMALL = {"tempo": "largo", "dynamics": "mf", "max_tokens": 128}  # an agent routed to it
NO_LATENCY = {"simulate": {"latency_ms": 0}}
FRAME = {"audience": "maintainers of the cache layer", "rule": "Quote numbers exactly as given."}

runner = CliRunner()


def lines(tag: str, n: int) -> str:
    return "\n".join(
        f"{tag} {i}: the cache node {i} evicted key user:{i * 7919} after {i * 13 % 997} ms." for i in range(n)
    )


def tokens_sent(request: CallRequest) -> int:
    """The tokens of the messages a call carried, as the engine counts them for the window."""
    system = estimate_tokens(request.system) + 4 if request.system else 0
    return system + estimate_tokens(request.user_text) + 4 + 3


def user_message(request: CallRequest) -> str:
    """The user message the call carried, checked to be the shared section then the instructions,
    after the reference frame's system message."""
    messages = request.messages
    assert messages[-1] == {"role": "user", "content": request.user_text}
    assert messages[:-1] == ([{"role": "system", "content": request.system}] if request.system else [])
    assert request.user_text == (f"{request.shared}\n\n{request.prompt}" if request.shared else request.prompt)
    return request.user_text


def shared_block(request: CallRequest, ref: str) -> str:
    """What the block of ``ref`` in the call's shared section holds; the instructions point to it."""
    assert pointer(ref) in request.prompt
    start = request.shared.index(f"<{ref}>\n") + len(ref) + 3
    return request.shared[start : request.shared.index(f"\n</{ref}>", start)]


def perform(program: Program, **options: Any) -> tuple[Recording, list[Event], RunResult]:
    provider = Recording(SimulatedProvider(0, time_scale=0))
    events: list[Event] = []
    return provider, events, run(program, provider, events, **options)


def paging_score(priorities: str | None = "{notes: 5}") -> Program:
    """The resource score, with the summariser's priorities replaced (None: none at all)."""
    text = PAGING.read_text("utf-8")
    assert "    priorities: {notes: 5}\n" in text
    text = text.replace("    priorities: {notes: 5}\n", f"    priorities: {priorities}\n" if priorities else "")
    return compile_score(load_score_text(text, str(PAGING), base=PAGING))


def outputs(program: Program) -> tuple[str, str]:
    """What the notes and logs agents answer (fixed by the score)."""
    notes, logs = (program.stations[name].agent.simulate.output for name in ("notes", "logs"))
    assert isinstance(notes, str) and isinstance(logs, str)
    return notes, logs


def section(prompt: str, start: str, end: str) -> str:
    return prompt[prompt.index(start) + len(start) : prompt.index(end)]


# -- a small window ------------------------------------------------------------------------------


def test_a_small_window_model_gets_a_prompt_that_fits_with_a_marker_and_the_frame_intact() -> None:
    program = compile_score(load_score(PAGING))
    notes, logs = outputs(program)
    provider, _, result = perform(program)
    assert result.status == "completed"

    sent = provider.request("summarise", 1)
    assert (sent.model, sent.tier) == (TINY, "local")
    # Unpaged, the material would not have fitted; as sent, it does.
    assert estimate_tokens(sent.system) + estimate_tokens(notes) + estimate_tokens(logs) > WINDOW
    assert tokens_sent(sent) <= WINDOW
    assert result.agents["summarise"].prompt_tokens <= WINDOW  # what the provider was charged for
    # The reference frame is the system message, word for word.
    assert sent.system == frame_text(program.score.reference_frame)
    assert "maintainers of the cache layer" in sent.system and "Quote numbers exactly as given." in sent.system
    assert "[paged out" not in sent.system
    # Both cues are long: each is a block of the shared section, the instructions point to them
    # and carry no marker.
    assert min(len(notes), len(logs)) >= HOIST_CHARS
    user = user_message(sent)
    assert sent.prompt == (
        "Notes:\n<cues.notes> (above)\n\nLogs:\n<cues.logs> (above)\n\nSummarise both in one sentence."
    )
    assert user.endswith("\n\n" + sent.prompt)
    # notes (priority 5) is whole; logs keeps its head, then says what was cut and why, in its block.
    assert shared_block(sent, "cues.notes") == notes
    shown = shared_block(sent, "cues.logs")
    head, _, marker = shown.rpartition("\n")
    assert head and logs.startswith(head) and len(head) < len(logs)
    [cut] = result.agents["summarise"].paged
    assert cut["ref"] == "cues.logs" and cut["of"] == estimate_tokens(logs)
    assert 0 < cut["tokens"] == cut["of"] - estimate_tokens(head)
    assert marker == (
        f"[paged out: the rest of cues.logs, {cut['tokens']:,} of {cut['of']:,} tokens, "
        f"to fit the {WINDOW}-token input window of {TINY}]"
    )
    # The agents on the large mid-tier model were not touched.
    assert result.agents["notes"].paged == [] and result.agents["logs"].paged == []
    assert provider.request("logs", 1).model == "gpt-4o-mini"


def test_the_same_material_on_a_large_window_is_not_paged() -> None:
    """Route the summariser to gpt-4o-mini (128k tokens): nothing is cut, no page event."""
    text = PAGING.read_text("utf-8").replace("    largo: {mf: local}\n", "    largo: {mf: mid}\n")
    program = compile_score(load_score_text(text, str(PAGING), base=PAGING))
    notes, logs = outputs(program)
    provider, events, result = perform(program)
    sent = provider.request("summarise", 1)
    assert sent.model == "gpt-4o-mini"
    # Laid out as on the small model (the blocks in order of readers, namespace, then name), whole.
    assert sent.shared == f"{block('cues.logs', logs)}\n\n{block('cues.notes', notes)}"
    assert (
        sent.prompt == "Notes:\n<cues.notes> (above)\n\nLogs:\n<cues.logs> (above)\n\nSummarise both in one sentence."
    )
    assert "[paged out" not in user_message(sent)
    assert result.agents["summarise"].paged == []
    assert kinds(events, "page") == []


# -- which cue goes first ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priorities", "paged", "kept"),
    [
        ("{notes: 5}", "logs", "notes"),  # priority beats recency: the newer logs go
        (None, "notes", "logs"),  # equal ranks: the least recently produced (notes) goes
        ("{notes: -1, logs: -2}", "logs", "notes"),  # only the order of ranks matters
    ],
    ids=["priority-keeps-the-older-cue", "no-priorities-least-recent-first", "negative-ranks"],
)
def test_priorities_decide_which_cue_is_paged_first(priorities: str | None, paged: str, kept: str) -> None:
    program = paging_score(priorities)
    texts = dict(zip(("notes", "logs"), outputs(program), strict=True))
    provider, _, result = perform(program)
    assert result.status == "completed"
    # logs cues notes, so notes was committed first.
    assert result.agents["notes"].finished_s <= result.agents["logs"].started_s  # type: ignore[operator]
    sent = provider.request("summarise", 1)
    assert [cut["ref"] for cut in result.agents["summarise"].paged] == [f"cues.{paged}"]
    user = user_message(sent)
    assert shared_block(sent, f"cues.{kept}") == texts[kept]
    assert texts[paged] not in user
    assert f"[paged out: the rest of cues.{paged}, " in shared_block(sent, f"cues.{paged}")
    assert user.count("[paged out: ") == 1 and f"cues.{kept}, " not in user  # no marker names the kept cue
    assert "[paged out" not in sent.prompt  # the instructions only point to the blocks
    assert tokens_sent(sent) <= WINDOW


def test_a_page_event_says_what_was_cut_before_the_call_is_made() -> None:
    program = compile_score(load_score(PAGING))
    _, logs = outputs(program)
    _, events, result = perform(program)
    [page] = kinds(events, "page")
    assert (page.station, page.version) == ("summarise", 1)
    assert page.data["model"] == TINY
    [cut] = page.data["cuts"]
    assert set(cut) == {"ref", "tokens", "of"}
    assert cut["ref"] == "cues.logs" and cut["of"] == estimate_tokens(logs) and 0 < cut["tokens"] < cut["of"]
    assert page.data["cuts"] == result.agents["summarise"].paged
    assert index_of(events, "page", "summarise") < index_of(events, "result", "summarise")
    json.dumps(page.data)  # journaled as it is


def test_perform_json_shows_what_each_agent_had_paged() -> None:
    result = runner.invoke(app, ["perform", str(PAGING), "--simulate", "--time-scale", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    agents = data["agents"]
    assert agents["notes"]["paged"] == [] and agents["logs"]["paged"] == []
    [cut] = agents["summarise"]["paged"]
    assert cut["ref"] == "cues.logs" and 0 < cut["tokens"] < cut["of"]
    assert agents["summarise"]["model"] == TINY
    assert agents["summarise"]["prompt_tokens"] <= WINDOW


# -- what cannot fit -----------------------------------------------------------------------------


def overflowing_frame() -> dict[str, str]:
    return {**FRAME, "style": " ".join(["Always write plainly, cite the line, and never guess."] * 80)}


def test_lint_refuses_a_frame_and_prompt_that_overflow_the_window() -> None:
    """HCT271: the frame alone overflows the small model's window, whatever the cues hold."""
    agents = {"draft": {"prompt": "Write a line.", **SMALL}}
    with pytest.raises(ScoreError, match=r"the prompt of 'draft' and the reference frame take about") as caught:
        score(agents, reference_frame=overflowing_frame(), routing=ROUTING, defaults=NO_LATENCY)
    assert [(f.code, f.severity.value) for f in caught.value.findings] == [("HCT271", "error")]


def test_an_agent_whose_frame_and_prompt_cannot_fit_fails_before_any_call() -> None:
    """Compiled past lint (as a journaled or programmatic score may be), the station fails with
    a message naming the window; no call is made; its dependent is skipped; others run on."""
    program = program_of(
        {
            "draft": {"prompt": "Write a line.", **SMALL},
            "review": {"prompt": "Review: {{ cues.draft }}", "cues": ["draft"]},
            "other": {"prompt": "Say hello."},  # routed to gpt-4o-mini: its window is ample
        },
        reference_frame=overflowing_frame(),
        routing=ROUTING,
        defaults=NO_LATENCY,
    )
    provider, events, result = perform(program)
    assert result.status == "failed"
    draft = result.agents["draft"]
    assert draft.status == "failed" and draft.calls == 0
    assert draft.error is not None
    assert draft.error.startswith("the reference frame and the prompt need ")
    assert f"the call may take the {WINDOW}-token input window of {TINY}" in draft.error
    assert "Shorten the prompt or the reference frame" in draft.error  # the hint comes along
    assert [r.agent.name for r in provider.requests if r.agent.name == "draft"] == []
    assert not any(e.station == "draft" and e.kind in ("issue", "page") for e in events)
    assert result.agents["review"].status == "skipped"
    assert result.agents["other"].status == "done"
    assert [r.agent.name for r in provider.requests] == ["other"]


# -- what else is paged --------------------------------------------------------------------------


def test_a_vamps_previous_output_can_be_paged() -> None:
    big = lines("draft", 90)  # over a thousand tokens: more than the window
    program = score(
        {"draft": {"prompt": "Write the draft.", "vamp": {"until": {"contains": "DONE"}, "max": 3}, **SMALL}},
        routing=ROUTING,
        defaults={"simulate": {"latency_ms": 0, "output": big}},
    )
    provider, events, result = perform(program)
    assert result.status == "completed"
    first, second, third = provider.requests
    assert "previous output" not in first.prompt
    for sent in (second, third):
        assert sent.shared == ""  # the previous output is the vamp's own: it stays in the instructions
        assert user_message(sent) == sent.prompt
        assert tokens_sent(sent) <= WINDOW
        assert big not in sent.prompt
        before, _, shown = sent.prompt.partition("Your previous output (pass ")
        assert before == "Write the draft.\n\n"
        assert shown.endswith("\nImprove on it.")
        body = shown.split(":\n", 1)[1].removesuffix("\nImprove on it.")
        head, _, marker = body.rpartition("\n")
        assert head and big.startswith(head)
        assert marker.startswith("[paged out: the rest of previous output, ")
    pages = kinds(events, "page", "draft")
    assert [p.version for p in pages] == [2, 3]
    assert all(p.data["cuts"][0]["ref"] == "previous output" for p in pages)
    assert all(p.data["cuts"][0]["of"] == estimate_tokens(big) for p in pages)


def test_a_cue_is_paged_before_the_vamps_own_previous_output() -> None:
    """Equal ranks: the previous output is the most recent material a vamp has, so a cue
    goes first, and paging it is enough here."""
    notes = lines("note", 30)
    previous = lines("draft", 25)
    program = score(
        {
            "notes": {"prompt": "List the notes.", "simulate": {"latency_ms": 0, "output": notes}},
            "draft": {
                "prompt": "Notes:\n{{ cues.notes }}\n\nWrite the draft.",
                "cues": ["notes"],
                "vamp": {"until": {"contains": "DONE"}, "max": 2},
                "simulate": {"latency_ms": 0, "output": previous},
                **SMALL,
            },
        },
        routing=ROUTING,
    )
    provider, _, result = perform(program)
    assert result.status == "completed"
    first, second = [r for r in provider.requests if r.agent.name == "draft"]
    assert len(notes) >= HOIST_CHARS  # the notes are a block of the shared section, the previous output is not
    assert shared_block(first, "cues.notes") == notes and first.paged == ()  # pass 1 fits as it is
    assert first.prompt == "Notes:\n<cues.notes> (above)\n\nWrite the draft."
    assert f"Your previous output (pass 1):\n{previous}\nImprove on it." in second.prompt
    assert notes not in user_message(second)
    assert "[paged out: the rest of cues.notes, " in shared_block(second, "cues.notes")
    assert "[paged out" not in second.prompt
    assert [cut.ref for cut in second.paged] == ["cues.notes"]
    assert result.agents["draft"].paged == [cut.to_data() for cut in second.paged]  # the last call's
    assert tokens_sent(second) <= WINDOW


def test_inputs_and_shared_state_are_paged_too() -> None:
    """An input is older than anything committed during the run, so at equal ranks it is paged
    before a state value; here paging it is enough."""
    diff = lines("hunk", 30)
    findings = lines("finding", 30)

    def judged(prompt: str) -> tuple[CallRequest, RunResult]:
        program = score(
            {
                "find": {"prompt": "Find problems.", "writes": ["findings"], "simulate": {"output": findings}},
                "judge": {"prompt": prompt, "cues": ["find"], "reads": ["findings"], **SMALL},
            },
            inputs={"diff": {"type": "text"}},
            state={"findings": {"initial": ""}},
            routing=ROUTING,
            defaults=NO_LATENCY,
        )
        provider, _, result = perform(program, inputs={"diff": diff})
        assert result.status == "completed"
        return provider.request("judge", 1), result

    assert min(len(diff), len(findings)) >= HOIST_CHARS
    for prompt in (
        "Diff:\n{{ inputs.diff }}\n\nFindings:\n{{ state.findings }}\n\nRank them.",
        "Findings:\n{{ state.findings }}\n\nDiff:\n{{ inputs.diff }}\n\nRank them.",  # order of mention is moot
    ):
        sent, result = judged(prompt)
        assert tokens_sent(sent) <= WINDOW
        [cut] = result.agents["judge"].paged
        assert cut["ref"] == "inputs.diff" and cut["of"] == estimate_tokens(diff)
        assert shared_block(sent, "state.findings") == findings and diff not in user_message(sent)
        assert "[paged out: the rest of inputs.diff, " in shared_block(sent, "inputs.diff")
        assert "[paged out" not in sent.prompt
        # Inputs before state in the shared section, whatever the order of mention.
        assert sent.shared.index("<inputs.diff>") < sent.shared.index("<state.findings>")


def test_a_key_step_into_a_paged_value_renders_the_marker() -> None:
    """``{{ cues.facts.summary }}`` into a paged JSON value still renders: as the marker."""
    summary_text = lines("fact", 80)
    facts = {"summary": summary_text, "count": 80}
    program = score(
        {
            "facts": {"prompt": "Collect the facts.", "simulate": {"output": facts}},
            "use": {
                "prompt": "Summary: {{ cues.facts.summary }}\nCount: {{ cues.facts.count }}\nAnswer.",
                "cues": ["facts"],
                **SMALL,
            },
        },
        routing=ROUTING,
        defaults=NO_LATENCY,
    )
    provider, _, result = perform(program)
    assert result.status == "completed", result.agents["use"].error
    sent = provider.request("use", 1)
    assert tokens_sent(sent) <= WINDOW
    assert [cut["ref"] for cut in result.agents["use"].paged] == ["cues.facts"]
    # Quoted through key steps, the value stays in the instructions, and so does its marker.
    assert sent.shared == "" and user_message(sent) == sent.prompt
    summary = section(sent.prompt, "Summary: ", "\nCount: ")
    assert "[paged out: " in summary and "cues.facts, " in summary
    assert summary_text not in sent.prompt


@pytest.mark.parametrize("filter_name", ["first", "sort"])
def test_a_filtered_paged_value_still_shows_its_marker(filter_name: str) -> None:
    findings = [lines("finding", 60), lines("other", 60)]
    program = score(
        {
            "find": {"prompt": "Find problems.", "simulate": {"output": findings}},
            "use": {"prompt": f"Top: {{{{ cues.find | {filter_name} }}}}\nAnswer.", "cues": ["find"], **SMALL},
        },
        routing=ROUTING,
        defaults=NO_LATENCY,
    )
    provider, _, result = perform(program)
    assert result.status == "completed"
    assert result.agents["use"].paged  # the value was paged...
    sent = provider.request("use", 1)
    assert tokens_sent(sent) <= WINDOW
    assert sent.shared == ""  # quoted through a filter: inline
    assert "[paged out: " in sent.prompt  # ...and the prompt should say so


def test_a_measured_paged_value_does_not_turn_into_a_false_number() -> None:
    program = score(
        {
            "find": {"prompt": "Find problems.", "simulate": {"output": [lines("finding", 30), lines("other", 30)]}},
            "notes": {"prompt": "List the notes.", "cues": ["find"], "simulate": {"output": lines("note", 70)}},
            "use": {
                "prompt": "There are {{ cues.find | length }} findings.\nNotes:\n{{ cues.notes }}\nAnswer.",
                "cues": ["find", "notes"],
                **SMALL,
            },
        },
        routing=ROUTING,
        defaults=NO_LATENCY,
    )
    provider, _, result = perform(program)
    assert result.status == "completed"
    sent = provider.request("use", 1)
    assert tokens_sent(sent) <= WINDOW
    first_line = sent.prompt.splitlines()[0]
    assert first_line == "There are 2 findings." or "[paged out: " in first_line, first_line


def test_a_judge_call_on_a_small_window_tier_is_not_sent_over_its_window() -> None:
    program = score(
        {
            "draft": {
                "prompt": "Write the draft.",
                "max_tokens": 128,
                "simulate": {"output": lines("draft", 90)},
                "fermata": {"check": {"judge": {"criteria": "Is specific.", "tier": "local"}}, "retries": 0},
            }
        },
        routing=ROUTING,
        defaults=NO_LATENCY,
    )
    provider, _, _ = perform(program)
    judges = [r for r in provider.requests if r.purpose == "judge"]
    assert judges and all(r.model == TINY for r in judges)
    # Whatever the fix (page the answer, or fail the gate), nothing over the model's 1,024 tokens is sent.
    assert all(tokens_sent(r) <= 1024 for r in judges), [tokens_sent(r) for r in judges]
