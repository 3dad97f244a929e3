"""The layout of a call, stable part first: the reference frame (system message), then the
shared section (long values quoted whole, as ``<ref>`` blocks), then the agent's own
instructions, which point to the blocks. Agents fanning out from the same material send the same
prefix and differ only after it.

Scores go through the real loader and compiler and are performed on the simulated provider (no
latency: ``time_scale=0``), wrapped to record exactly what each call was sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from hct_cli.engine import RunResult
from hct_cli.engine.context import HOIST_CHARS, block, pointer
from hct_cli.program.compile import Program
from hct_cli.program.window import estimate_tokens, frame_text
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import Recording, run, score

pytestmark = pytest.mark.timeout(60)

FRAME = {"audience": "maintainers of the cache layer", "rule": "Cite the line of every defect."}
KINDS = ("security", "performance", "correctness", "concurrency", "style", "API")
NO_LATENCY = {"simulate": {"latency_ms": 0}}


def lines(tag: str, n: int) -> str:
    return "\n".join(f"+ {tag} {i}: cache.put(key_{i * 7919}, ttl={i * 13 % 997})" for i in range(n))


DIFF = lines("hunk", 40)  # about 1,700 characters: long enough to share
assert len(DIFF) >= HOIST_CHARS


def perform(program: Program, seed: int = 0, **options: Any) -> tuple[Recording, RunResult]:
    provider = Recording(SimulatedProvider(seed, time_scale=0))
    result = run(program, provider, [], **options)
    assert result.status == "completed", {name: r.error for name, r in result.agents.items() if r.error}
    return provider, result


def calls(provider: Recording, names: tuple[str, ...] | list[str]) -> list[CallRequest]:
    """The first call of each agent named, in that order."""
    return [provider.request(name, 1) for name in names]


def user_message(request: CallRequest) -> str:
    """The call's user message, checked to follow the frame's system message."""
    assert request.messages == [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.user_text},
    ]
    return request.user_text


def fan_out(source: str, text: str = DIFF, prompt: str = "List {kind} defects in: {{{{ {ref} }}}}") -> Program:
    """Six reviewers with different instructions quoting one value: the output of a producer
    they cue (``source`` "cues") or an input of the run ("inputs")."""
    ref = "cues.parse" if source == "cues" else "inputs.diff"
    cued: dict[str, Any] = {"cues": ["parse"]} if source == "cues" else {}
    agents: dict[str, Any] = {
        f"r_{kind.lower()}": {"prompt": prompt.format(kind=kind, ref=ref), **cued} for kind in KINDS
    }
    if source == "cues":
        agents["parse"] = {"prompt": "Split the change into hunks.", "simulate": {"latency_ms": 0, "output": text}}
        return score(agents, reference_frame=FRAME, defaults=NO_LATENCY)
    return score(agents, reference_frame=FRAME, inputs={"diff": {"type": "text"}}, defaults=NO_LATENCY)


def inputs_of(source: str, text: str = DIFF) -> dict[str, Any]:
    return {"inputs": {"diff": text}} if source == "inputs" else {}


REVIEWERS = tuple(f"r_{kind.lower()}" for kind in KINDS)


# -- six agents, one value ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["cues", "inputs"])
def test_six_agents_quoting_one_long_value_send_the_same_prefix_and_differ_only_after_it(source: str) -> None:
    ref = "cues.parse" if source == "cues" else "inputs.diff"
    provider, _ = perform(fan_out(source), **inputs_of(source))
    sent = calls(provider, REVIEWERS)
    # The stable part is identical across the six: the frame, then the value's block.
    assert {r.system for r in sent} == {frame_text(FRAME)}
    assert {r.shared for r in sent} == {block(ref, DIFF)}
    assert len({r.prefix for r in sent}) == 1
    # The instructions differ, point to the block, and do not repeat the value.
    assert [r.prompt for r in sent] == [f"List {kind} defects in: {pointer(ref)}" for kind in KINDS]
    assert len({r.prompt for r in sent}) == 6
    for request in sent:
        user = user_message(request)
        assert DIFF not in request.prompt
        assert user.count(DIFF) == 1
        # The shared block comes first in the user message, the instructions after it.
        assert user == f"<{ref}>\n{DIFF}\n</{ref}>\n\n{request.prompt}"
        assert user.index(f"</{ref}>") < user.index("List ") == len(user) - len(request.prompt)


SMALL_ROUTING = {
    "tiers": {"local": {"model": "openai/tiny", "context_window": 512}},  # 384 tokens at mf, max_tokens 128
    "table": {"moderato": {"mf": "local"}},
}


def paged_fan_out(prompts: dict[str, str]) -> tuple[Recording, RunResult, list[CallRequest]]:
    """Agents quoting inputs.diff whole on a window too small for it."""
    program = score(
        {name: {"prompt": prompt, "max_tokens": 128} for name, prompt in prompts.items()},
        reference_frame=FRAME,
        inputs={"diff": {"type": "text"}},
        routing=SMALL_ROUTING,
        defaults=NO_LATENCY,
    )
    provider, result = perform(program, inputs={"diff": DIFF})
    sent = calls(provider, list(prompts))
    assert {r.model for r in sent} == {"openai/tiny"}
    for request in sent:
        assert [c.ref for c in request.paged] == ["inputs.diff"] and result.agents[request.agent.name].paged
        assert "[paged out" not in request.prompt and pointer("inputs.diff") in request.prompt
        assert estimate_tokens(request.system) + 4 + estimate_tokens(user_message(request)) + 4 + 3 <= 384
    return provider, result, sent


def test_six_agents_paged_the_same_way_still_share_their_prefix() -> None:
    """On a small window the value is paged in its block, the marker in place of the rest of the
    text; six agents whose instructions are as long as each other's page it alike, so their
    blocks are still one and the same."""
    _, _, sent = paged_fan_out({f"r{i}": f"List defects of kind {i} in: {{{{ inputs.diff }}}}" for i in range(1, 7)})
    assert len({r.prompt for r in sent}) == 6
    [shared] = {r.shared for r in sent}
    assert shared.startswith("<inputs.diff>\n") and shared.endswith("\n</inputs.diff>")
    assert DIFF not in shared and "[paged out: the rest of inputs.diff, " in shared
    head = shared.removeprefix("<inputs.diff>\n").rpartition("\n[paged out: ")[0]
    assert head and DIFF.startswith(head)


@pytest.mark.xfail(
    strict=True,
    reason="a shared block that is paged keeps a head sized by the room each agent's own instructions "
    "leave, so agents whose instructions differ in length send different blocks: the prefix that the "
    "layout is for is no longer shared once the value is paged",
)
def test_agents_with_instructions_of_different_lengths_page_a_shared_value_alike() -> None:
    _, _, sent = paged_fan_out(
        {
            "brief": "Defects: {{ inputs.diff }}",
            "thorough": "List every security defect, with the line it is on and why it matters, in: {{ inputs.diff }}",
        }
    )
    brief, thorough = sent
    assert brief.shared == thorough.shared


# -- what stays inline ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["cues", "inputs"])
@pytest.mark.parametrize(("length", "shared"), [(HOIST_CHARS - 1, False), (HOIST_CHARS, True)], ids=["999", "1000"])
def test_a_value_shorter_than_hoist_chars_stays_inline(source: str, length: int, shared: bool) -> None:
    ref = "cues.parse" if source == "cues" else "inputs.diff"
    text = (DIFF * 2)[:length]
    provider, _ = perform(fan_out(source, text), **inputs_of(source, text))
    for request in calls(provider, REVIEWERS[:2]):
        user = user_message(request)
        if shared:
            assert request.shared == block(ref, text)
            assert request.prompt.endswith(pointer(ref))
        else:
            assert request.shared == "" and user == request.prompt
            assert request.prompt.endswith(f"defects in: {text}")
            assert pointer(ref) not in request.prompt


@pytest.mark.parametrize(
    ("prompt", "shown"),
    [
        ("Review: {{ cues.parse.diff }}", DIFF),  # a key step
        ("Review: {{ cues.parse | upper }}", DIFF.upper()),  # a filter
        ("Review ({{ cues.parse | wordcount }} words): {{ cues.parse }}", DIFF),  # whole once, filtered once
    ],
    ids=["key-step", "filter", "whole-and-filtered"],
)
def test_a_long_value_quoted_with_a_key_step_or_a_filter_stays_inline(prompt: str, shown: str) -> None:
    output: Any = {"diff": DIFF} if "parse.diff" in prompt else DIFF
    program = score(
        {
            "parse": {"prompt": "Split the change into hunks.", "simulate": {"output": output}},
            "review": {"prompt": prompt, "cues": ["parse"]},
            "whole": {"prompt": "Also review: {{ cues.parse }}", "cues": ["parse"]},
        },
        reference_frame=FRAME,
        defaults=NO_LATENCY,
    )
    provider, _ = perform(program)
    review = provider.request("review", 1)
    assert review.shared == "" and user_message(review) == review.prompt
    assert pointer("cues.parse") not in review.prompt
    assert shown in review.prompt
    # The same value quoted whole by another agent is shared there: the choice is per prompt.
    whole = provider.request("whole", 1)
    assert whole.shared.startswith("<cues.parse>\n") and whole.prompt == f"Also review: {pointer('cues.parse')}"


# -- the order of the blocks ----------------------------------------------------------------------


LONG_A, LONG_B = lines("spec", 30), lines("hunk", 30)


def ordering(agents: dict[str, Any], **sections: Any) -> tuple[Recording, CallRequest]:
    program = score(
        {
            "parse": {"prompt": "Split the change into hunks.", "simulate": {"output": LONG_B}},
            **agents,
        },
        reference_frame=FRAME,
        defaults=NO_LATENCY,
        **sections,
    )
    provider, _ = perform(program, inputs={name: LONG_A for name in sections.get("inputs", {})})
    return provider, provider.request("main", 1)


def refs_of(request: CallRequest) -> list[str]:
    """The refs of the blocks of the call's shared section, in order."""
    return [line[1:-1] for line in request.shared.split("\n") if line.startswith("<") and not line.startswith("</")]


@pytest.mark.parametrize(
    "prompt",
    ["Spec: {{ inputs.spec }}\nDiff: {{ cues.parse }}", "Diff: {{ cues.parse }}\nSpec: {{ inputs.spec }}"],
    ids=["inputs-mentioned-first", "cues-mentioned-first"],
)
def test_blocks_with_as_many_readers_go_inputs_first_then_cues(prompt: str) -> None:
    _, main = ordering(
        {"main": {"prompt": prompt, "cues": ["parse"]}},
        inputs={"spec": {"type": "text"}},
    )
    assert refs_of(main) == ["inputs.spec", "cues.parse"]
    assert main.shared == f"{block('inputs.spec', LONG_A)}\n\n{block('cues.parse', LONG_B)}"


def test_the_block_more_agents_read_goes_first_whatever_its_namespace() -> None:
    """Three agents read cues.parse and one inputs.spec: the cue's block leads, so that the
    three share the longest prefix."""
    _, main = ordering(
        {
            "main": {"prompt": "Spec: {{ inputs.spec }}\nDiff: {{ cues.parse }}", "cues": ["parse"]},
            "second": {"prompt": "Style of {{ cues.parse }}", "cues": ["parse"]},
            "third": {"prompt": "Tests for {{ cues.parse }}", "cues": ["parse"]},
        },
        inputs={"spec": {"type": "text"}},
    )
    assert refs_of(main) == ["cues.parse", "inputs.spec"]


def test_readers_are_counted_by_agents_that_mention_the_value_not_by_mentions() -> None:
    """One agent quoting inputs.spec three times is one reader; two agents reading cues.parse
    are two."""
    provider, main = ordering(
        {
            "main": {
                "prompt": "Spec: {{ inputs.spec }}\nAgain: {{ inputs.spec }}\nOnce more: {{ inputs.spec }}\n"
                "Diff: {{ cues.parse }}",
                "cues": ["parse"],
            },
            "second": {"prompt": "Style of {{ cues.parse }}", "cues": ["parse"]},
        },
        inputs={"spec": {"type": "text"}},
    )
    assert refs_of(main) == ["cues.parse", "inputs.spec"]
    assert main.shared.count(LONG_A) == 1 and main.prompt.count(pointer("inputs.spec")) == 3
    assert provider.request("second", 1).shared == block("cues.parse", LONG_B)  # a prefix of main's


def test_state_goes_after_inputs_and_before_cues() -> None:
    _, main = ordering(
        {
            "main": {
                "prompt": "Diff: {{ cues.parse }}\nNotes: {{ state.notes }}\nSpec: {{ inputs.spec }}",
                "cues": ["parse"],
                "reads": ["notes"],
            },
        },
        inputs={"spec": {"type": "text"}},
        state={"notes": {"initial": lines("note", 30)}},
    )
    assert refs_of(main) == ["inputs.spec", "state.notes", "cues.parse"]


def test_blocks_of_one_namespace_and_as_many_readers_go_by_name() -> None:
    _, main = ordering(
        {"main": {"prompt": "Beta: {{ inputs.beta }}\nAlpha: {{ inputs.alpha }}"}},
        inputs={"beta": {"type": "text"}, "alpha": {"type": "text"}},
    )
    assert refs_of(main) == ["inputs.alpha", "inputs.beta"]
    # One more reader of beta puts it first.
    _, main = ordering(
        {
            "main": {"prompt": "Beta: {{ inputs.beta }}\nAlpha: {{ inputs.alpha }}"},
            "other": {"prompt": "Summarise {{ inputs.beta }}"},
        },
        inputs={"beta": {"type": "text"}, "alpha": {"type": "text"}},
    )
    assert refs_of(main) == ["inputs.beta", "inputs.alpha"]


# -- the simulated draw ---------------------------------------------------------------------------


def figures(result: RunResult) -> dict[str, tuple[Any, int, int]]:
    return {name: (r.output, r.prompt_tokens, r.completion_tokens) for name, r in result.agents.items()}


def test_the_simulated_draw_is_a_pure_function_of_the_messages() -> None:
    """Same seed, same messages: the same answers. The draw reads the whole user message, the
    shared section included, and not how it is split between the section and the instructions."""
    program = fan_out("inputs")
    first_provider, first = perform(program, seed=3, inputs={"diff": DIFF})
    _, again = perform(program, seed=3, inputs={"diff": DIFF})
    assert figures(first) == figures(again)
    _, other_seed = perform(program, seed=4, inputs={"diff": DIFF})
    assert figures(other_seed) != figures(first)  # the answers are drawn, not fixed
    # Another shared section, the same instructions: other draws.
    _, other_diff = perform(program, seed=3, inputs={"diff": lines("other", 40)})
    assert [r.prompt for r in calls(first_provider, REVIEWERS)] == [
        f"List {kind} defects in: {pointer('inputs.diff')}" for kind in KINDS
    ]
    assert [other_diff.agents[n].output for n in REVIEWERS] != [first.agents[n].output for n in REVIEWERS]
    # The same messages laid out as instructions alone draw exactly as the call sent.
    simulated = SimulatedProvider(3, time_scale=0)
    for request in calls(first_provider, REVIEWERS):
        assert request.shared
        folded = CallRequest(
            request.agent,
            request.model,
            request.tier,
            request.user_text,
            request.system,
            request.version,
            request.attempt,
            request.context,
        )
        assert folded.messages == request.messages
        planned = simulated.plan(request)
        assert planned.output == first.agents[request.agent.name].output
        assert (simulated.plan(folded).output, simulated.plan(folded).latency_s) == (
            planned.output,
            planned.latency_s,
        )
