"""Real calls count tokens as litellm does, offline, and L1 pages with those counts.

Calls go through litellm itself with ``mock_response``; a stand-in for ``litellm.acompletion``
records the messages it was given, so the test measures what a model would really have received:
the reference frame as the system message, then one user message holding the shared section (the
long input, as an ``<inputs.notes>`` block) and the instructions that point to it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.engine import Hands
from hct_cli.engine.context import HOIST_CHARS, Tokenizer, pointer
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score_text
from hct_cli.program.window import estimate_tokens
from hct_cli.providers import litellm_provider
from hct_cli.providers.litellm_provider import LiteLLMProvider, load_litellm, token_counter

pytestmark = [
    pytest.mark.timeout(60),
    # litellm's Ollama types make pydantic warn, on first use, that ReadOnly TypedDict items are
    # not protected; under filterwarnings=error that warning would become the call's failure.
    pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

TINY = "openai/tiny"
WINDOW = 896  # context_window 1024 less max_tokens 128, at mf
NOBODY_LISTENS = "http://127.0.0.1:9"
SCORE = f"""\
hct: 1
name: real-paging
reference_frame:
  audience: maintainers of the cache layer
inputs:
  notes: {{type: text}}
routing:
  tiers:
    local: {{model: {TINY}, context_window: 1024}}
  table:
    largo: {{mf: local}}
agents:
  summarise:
    tempo: largo
    dynamics: mf
    max_tokens: 128
    prompt: |-
      Notes:
      {{{{ inputs.notes }}}}

      Summarise them in one sentence.
"""
#: Digits and punctuation: far fewer than four characters a token, so chars/4 undercounts.
NOTES = "\n".join(
    f"2024-05-{i % 28 + 1:02d} node {i} evicted user:{i * 7919} after {i * 13 % 997} ms" for i in range(150)
)
#: The instructions as sent: the notes are long and quoted whole, so they are a block before them.
INSTRUCTIONS = f"Notes:\n{pointer('inputs.notes')}\n\nSummarise them in one sentence."


class Wire:
    """Stands in for ``litellm.acompletion``: records each call's arguments, then lets litellm answer."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, **arguments: Any) -> Any:
        self.sent.append(dict(arguments))
        return await self.real(**arguments)


class Mocked(LiteLLMProvider):
    """A real provider whose every call litellm answers itself (``mock_response``)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "mock": lambda model, attempt: {"mock_response": "Nodes evict cold keys."}})


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call here is mocked; should one not be, it goes to a refused loopback port."""
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "OLLAMA_API_BASE"):
        monkeypatch.setenv(name, NOBODY_LISTENS)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    litellm = load_litellm()
    stand_in = Wire(litellm.acompletion)
    monkeypatch.setattr(litellm, "acompletion", stand_in)
    return stand_in


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Any attempt to open a network connection fails the test."""
    attempts: list[object] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError(f"network connection attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert attempts == []


def notes_block(user: str) -> str:
    """What the user message's ``<inputs.notes>`` block holds; the instructions follow it, unpaged."""
    opening, closing = "<inputs.notes>\n", f"\n</inputs.notes>\n\n{INSTRUCTIONS}"
    assert user.startswith(opening) and user.endswith(closing), user[:80] + " ... " + user[-200:]
    return user[len(opening) : -len(closing)]


def sent_tokens(messages: list[dict[str, str]], model: str = TINY) -> int:
    """What the model would count for these messages, by litellm's own reckoning."""
    return int(load_litellm().token_counter(model=model, messages=messages))


def program() -> Program:
    return compile_score(load_score_text(SCORE, "<real-paging>"))


def perform(tokenizer: Tokenizer | None) -> RunResult:
    provider = Mocked()
    performer = Performer(program(), Hands(lambda spec: provider, tokenizer=tokenizer), inputs={"notes": NOTES})
    return asyncio.run(performer.run())


def test_token_counter_counts_as_litellm_does_without_the_network(offline: list[object]) -> None:
    count = token_counter("gpt-4o-mini")
    assert count("") == 0
    assert count("hello world") == 2
    assert count(NOTES) == load_litellm().token_counter(model="gpt-4o-mini", text=NOTES)
    assert count(NOTES) > estimate_tokens(NOTES)  # this text is denser than four characters a token
    assert token_counter(TINY)("hello world") == 2  # a model litellm does not know still counts


def test_a_real_call_is_paged_by_litellms_counts_to_fit_a_declared_window(wire: Wire) -> None:
    """With ``tokenizer=token_counter`` the input is paged so that the messages litellm
    receives fit the tier's window by the model's own count; counted by chars/4 instead,
    the same call would have overflowed it."""
    result = perform(token_counter)
    assert result.status == "completed", result.agents["summarise"].error
    [sent] = wire.sent
    assert sent["model"] == TINY and sent["max_tokens"] == 128
    system, user = sent["messages"]
    assert system == {
        "role": "system",
        "content": "Reference frame (immutable; applies to every answer):\n- audience: maintainers of the cache layer",
    }
    assert sent_tokens(sent["messages"]) <= WINDOW
    assert len(NOTES) >= HOIST_CHARS and user["role"] == "user"
    # The notes keep their head in their block, then the marker; the instructions are untouched.
    head, _, marker = notes_block(user["content"]).rpartition("\n")
    assert head and NOTES.startswith(head)
    assert marker.startswith("[paged out: the rest of inputs.notes, ")
    assert marker.endswith("896-token input window of openai/tiny]")
    [cut] = result.agents["summarise"].paged
    assert cut["ref"] == "inputs.notes"
    assert cut["of"] == token_counter(TINY)(NOTES) != estimate_tokens(NOTES)  # counted by litellm
    assert result.agents["summarise"].output == "Nodes evict cold keys."

    # The control: the same run counting about four characters a token sends too much.
    wire.sent.clear()
    estimated = perform(None)
    assert estimated.status == "completed"
    [overfull] = wire.sent
    assert estimated.agents["summarise"].paged  # it was paged, but by the wrong measure
    assert "[paged out: the rest of inputs.notes, " in notes_block(overfull["messages"][1]["content"])
    assert sent_tokens(overfull["messages"]) > WINDOW


def test_hct_perform_without_simulate_counts_with_litellm(
    tmp_path: Path, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's real-call path hands the Performer litellm's counter (spied on here), and the
    messages that reach litellm fit the window."""
    asked: list[str] = []

    def spy(model: str) -> Callable[[str], int]:
        asked.append(model)
        return token_counter(model)

    monkeypatch.setattr(litellm_provider, "LiteLLMProvider", Mocked)
    monkeypatch.setattr(litellm_provider, "token_counter", spy)
    path = tmp_path / "real-paging.yaml"
    path.write_text(SCORE, "utf-8")
    (tmp_path / "notes.txt").write_text(NOTES, "utf-8")
    monkeypatch.chdir(tmp_path)  # input files must lie under the working directory

    result = CliRunner().invoke(app, ["perform", str(path), "--input", "notes=@notes.txt", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [cut] = data["agents"]["summarise"]["paged"]
    assert cut["ref"] == "inputs.notes" and cut["of"] == token_counter(TINY)(NOTES)
    assert TINY in asked
    [sent] = wire.sent
    assert sent_tokens(sent["messages"]) <= WINDOW
    assert "[paged out: the rest of inputs.notes, " in notes_block(sent["messages"][-1]["content"])
