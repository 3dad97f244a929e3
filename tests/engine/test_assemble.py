"""L1, the working context of one call: the window a call may fill, and how a call's layout
(the shared section, then the instructions) is fitted to it by paging out its material (lowest
priority first, then least recently produced), each piece replaced by a visible marker where it
is shown (in the instructions, or in its block of the shared section), the reference frame never
touched.

Everything here is pure: layouts are composed from pieces by a small function of the test's
own, and tokens are counted by :func:`estimate_tokens` (or a word counter, to show that the
counter given is the one obeyed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hct_cli.engine.context import block, pointer
from hct_cli.engine.paging import Assembly, Cut, Layout, Piece, assemble, fits_surely
from hct_cli.errors import AgentError, ContextError
from hct_cli.models import model_info
from hct_cli.program.window import Window, estimate_tokens, frame_text, window_for
from hct_cli.score.model import DYNAMICS
from hct_cli.score.template import Marker

pytestmark = pytest.mark.timeout(120)

TINY = "openai/tiny"  # not in litellm's price map: only a declared window gives it one
FRAME = frame_text({"audience": "maintainers of the cache layer", "rule": "Quote numbers exactly."})
#: What a chat call adds to its texts: 4 tokens a message, 3 priming the reply.
PER_MESSAGE, PER_REPLY = 4, 3
#: Where a call shows its pieces: all in the instructions, all in the shared section, or the first
#: of them (the highest ranked or the oldest in every test below) shared and the rest inline.
LAYOUTS = ("inline", "shared", "mixed")


def words(tag: str, n: int) -> str:
    """``n`` distinct words: ``n * (len(tag) + 4) / 4`` tokens by ``estimate_tokens``."""
    return " ".join(f"{tag}{i:03d}" for i in range(n))


def measured(system: str, layout: Layout, count: Callable[[str], int] = estimate_tokens) -> int:
    """The tokens of a call with these messages, as the spec counts them: the system message,
    then one user message holding the shared section and the instructions."""
    return (count(system) + PER_MESSAGE if system else 0) + count(layout.user) + PER_MESSAGE + PER_REPLY


class Prompt:
    """A call laid out from its pieces. A piece named in ``shared`` is a block of the shared
    section (``<ref>``...``</ref>``) and the instructions show a pointer to it under its heading;
    every other piece is shown under its heading in the instructions; a closing instruction ends
    them.

    Records every set of replacements it was composed with.
    """

    def __init__(
        self, pieces: Sequence[Piece], closing: str = "Answer in one sentence.", shared: Collection[str] = ()
    ) -> None:
        self.pieces = list(pieces)
        self.closing = closing
        self.shared = frozenset(shared)
        assert self.shared <= {p.ref for p in self.pieces}
        self.calls: list[dict[str, str]] = []

    def __call__(self, replacements: Mapping[str, str]) -> Layout:
        self.calls.append(dict(replacements))
        blocks = [block(p.ref, replacements.get(p.ref, p.text)) for p in self.pieces if p.ref in self.shared]
        parts = [
            f"{p.ref}:\n{pointer(p.ref) if p.ref in self.shared else replacements.get(p.ref, p.text)}"
            for p in self.pieces
        ]
        return Layout("\n\n".join(blocks), "\n\n".join([*parts, self.closing]))

    def section(self, layout: Layout, ref: str) -> str:
        """What ``layout`` shows of ``ref``: its block in the shared section (the instructions
        pointing to it), or what the instructions show under its heading."""
        if ref in self.shared:
            assert f"{ref}:\n{pointer(ref)}" in layout.prompt  # paging never touches the pointer
            start = layout.shared.index(f"<{ref}>\n") + len(ref) + 3
            return layout.shared[start : layout.shared.index(f"\n</{ref}>", start)]
        prompt = layout.prompt
        refs = [p.ref for p in self.pieces]
        start = prompt.index(f"{ref}:\n") + len(ref) + 2
        after = refs[refs.index(ref) + 1] if ref != refs[-1] else None
        end = prompt.index(f"\n\n{after}:\n") if after is not None else prompt.rindex(f"\n\n{self.closing}")
        return prompt[start:end]


def shared_of(pieces: Sequence[Piece], layout: str) -> tuple[str, ...]:
    """The refs a layout named in :data:`LAYOUTS` puts in the shared section."""
    refs = tuple(p.ref for p in pieces)
    return {"inline": (), "shared": refs, "mixed": refs[:1]}[layout]


def fit(
    pieces: Sequence[Piece], window: Window, system: str = FRAME, shared: Collection[str] = ()
) -> tuple[Assembly, Prompt]:
    compose = Prompt(pieces, shared=shared)
    return assemble(system, compose, pieces, window, estimate_tokens), compose


def need(pieces: Sequence[Piece], system: str = FRAME, shared: Collection[str] = ()) -> int:
    """The tokens of the call with nothing paged."""
    return measured(system, Prompt(pieces, shared=shared)({}))


def window_of(tokens: int, dynamics: str = "mf") -> Window:
    """A declared window of ``tokens`` (nothing held back for the answer)."""
    window = window_for(TINY, dynamics, 0, tokens)
    assert window is not None
    return window


def whole_marker(ref: str, of: int, window: Window) -> str:
    return f"[paged out: {ref}, {of:,} of {of:,} tokens, to fit {window.describe()}]"


# -- window_for ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5"])
@pytest.mark.parametrize("dynamics", list(DYNAMICS))
def test_a_known_models_window_is_its_input_window_times_the_dynamics_capped_by_it(model: str, dynamics: str) -> None:
    info = model_info(model)
    assert info is not None and info.max_input_tokens
    full = int(info.max_input_tokens)
    window = window_for(model, dynamics, 1024)
    assert window is not None
    assert (window.model, window.full, window.dynamics) == (model, full, dynamics)
    expected = {"pp": full // 4, "p": full // 2, "mf": full, "f": full, "ff": full}[dynamics]
    assert window.tokens == expected
    assert window.tokens <= window.full  # f and ff never promise more than the model holds


def test_the_price_maps_windows_are_the_ones_expected() -> None:
    """The figures the rest of this file leans on, from litellm's bundled map."""
    assert window_for("gpt-4o-mini", "mf", 1024) == Window(128_000, "gpt-4o-mini", 128_000, "mf")
    assert window_for("claude-sonnet-4-5", "pp", 1024) == Window(50_000, "claude-sonnet-4-5", 200_000, "pp")
    assert window_for("gpt-4o-mini", "p", 1024) == Window(64_000, "gpt-4o-mini", 128_000, "p")


@pytest.mark.parametrize(
    ("dynamics", "tokens"), [("pp", 224), ("p", 448), ("mf", 896), ("f", 896), ("ff", 896)], ids=list(DYNAMICS)
)
def test_a_declared_window_holds_back_the_answers_max_tokens(dynamics: str, tokens: int) -> None:
    """context_window 1024 less max_tokens 128 leaves 896 tokens, times the dynamics, capped."""
    assert window_for(TINY, dynamics, 128, 1024) == Window(tokens, TINY, 896, dynamics)


def test_a_declared_window_overrides_the_price_map() -> None:
    window = window_for("gpt-4o-mini", "mf", 100, 4096)
    assert window == Window(3996, "gpt-4o-mini", 3996, "mf")


def test_an_answer_as_large_as_the_declared_window_leaves_no_room() -> None:
    window = window_for(TINY, "ff", 2048, 1024)
    assert window is not None and window.tokens == 0 == window.full


def test_an_unknown_window_is_none_so_nothing_is_paged() -> None:
    assert window_for(TINY, "mf", 128) is None
    assert window_for("nobody/knows-this-model", "pp", 128) is None


def test_a_window_describes_its_figure_and_where_it_comes_from() -> None:
    assert window_of(896, "mf").describe() == "the 896-token input window of openai/tiny"
    assert window_of(896, "ff").describe() == "the 896-token input window of openai/tiny"
    soft = window_for(TINY, "pp", 128, 1024)
    assert soft is not None
    assert soft.describe() == "224 tokens (0.25 x the 896-token window of openai/tiny at pp)"
    big = window_for("claude-sonnet-4-5", "p", 1024)
    assert big is not None
    assert big.describe() == "100,000 tokens (0.5 x the 200,000-token window of claude-sonnet-4-5 at p)"


# -- the layout ------------------------------------------------------------------------------------


def test_a_layouts_user_message_is_the_shared_section_a_blank_line_then_the_instructions() -> None:
    layout = Layout("<inputs.diff>\nTEXT\n</inputs.diff>", "Review <inputs.diff> (above).")
    assert layout.user == "<inputs.diff>\nTEXT\n</inputs.diff>\n\nReview <inputs.diff> (above)."
    assert (layout.shared, layout.prompt) == layout  # a NamedTuple: shared first, the stable part
    # Nothing shared: the instructions alone, with no blank line before them.
    assert Layout("", "Review the diff.").user == "Review the diff."


def test_block_and_pointer_are_what_the_shared_section_and_the_instructions_show() -> None:
    assert block("inputs.diff", "TEXT") == "<inputs.diff>\nTEXT\n</inputs.diff>"
    assert pointer("cues.parse") == "<cues.parse> (above)"
    assert isinstance(pointer("cues.parse"), Marker)  # survives a key step like a paging marker


# -- counting --------------------------------------------------------------------------------------


def test_estimate_tokens_is_four_characters_a_token_rounded_up() -> None:
    assert [estimate_tokens(text) for text in ("", "a", "abcd", "abcde", "x" * 400)] == [0, 1, 1, 2, 100]


def test_fits_surely_bounds_every_tokenizer_by_utf8_bytes_plus_the_chat_overhead() -> None:
    """The bound is the bytes of the frame, the shared section, the blank line joining it to the
    instructions and the instructions, plus the chat overhead."""
    window = window_of(100)
    overhead = 2 * PER_MESSAGE + PER_REPLY
    room = 100 - overhead - 10 - 2  # the frame's 10 bytes, the blank line's 2
    assert fits_surely("s" * 10, Layout("a" * 30, "p" * (room - 30)), window)
    assert not fits_surely("s" * 10, Layout("a" * 30, "p" * (room - 29)), window)
    assert not fits_surely("s" * 10, Layout("a" * 31, "p" * (room - 30)), window)  # the shared part counts
    # Nothing shared: never more than the instructions' bytes and the overhead are needed...
    assert fits_surely("s" * 10, Layout("", "p" * room), window)
    # ...and never less.
    assert not fits_surely("s" * 10, Layout("", "p" * (100 - overhead - 10 + 1)), window)
    # Non-ASCII text is bounded by its bytes, not its characters: 'é' is two, in either part.
    assert fits_surely("", Layout("é" * 10, "é" * ((100 - overhead - 2) // 2 - 10)), window)
    assert not fits_surely("", Layout("é" * 11, "é" * ((100 - overhead - 2) // 2 - 10)), window)
    assert not fits_surely("", Layout("é" * 10, "é" * ((100 - overhead - 2) // 2 - 9)), window)


@settings(max_examples=200, deadline=None)
@given(
    system=st.text(max_size=60),
    shared=st.text(max_size=120),
    prompt=st.text(max_size=120),
    tokens=st.integers(0, 400),
)
def test_what_fits_surely_fits_by_any_count_up_to_one_token_a_byte(
    system: str, shared: str, prompt: str, tokens: int
) -> None:
    """No tokenizer makes more tokens of a text than its UTF-8 bytes: a layout that fits surely
    fits when every byte is counted as a token."""
    layout = Layout(shared, prompt)
    if fits_surely(system, layout, window_of(tokens)):
        assert measured(system, layout, lambda text: len(text.encode())) <= tokens


def test_frame_text_is_the_system_message_of_every_call() -> None:
    assert frame_text({}) == ""
    assert frame_text({"objective": "Find defects.", "limits": ["cite lines", "no guesses"], "n": 3}) == (
        "Reference frame (immutable; applies to every answer):\n"
        "- objective: Find defects.\n"
        '- limits: ["cite lines", "no guesses"]\n'
        "- n: 3"
    )
    assert frame_text({"café": ["é"]}).endswith('- café: ["é"]')


# -- assemble: what fits is left alone -------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layout_that_fits_is_sent_as_it_is(layout: str) -> None:
    pieces = [Piece("cues.notes", words("n", 40)), Piece("cues.logs", words("l", 40))]
    assembly, compose = fit(pieces, window_of(10_000), shared=shared_of(pieces, layout))
    assert compose.calls == [{}]  # composed once, nothing replaced
    assert assembly.cuts == ()
    assert isinstance(assembly.layout, Layout)
    assert assembly.layout == compose({})
    assert assembly.tokens == measured(FRAME, assembly.layout)
    assert "[paged out" not in assembly.layout.user
    for piece in pieces:
        assert compose.section(assembly.layout, piece.ref) == piece.text


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layout_exactly_at_the_window_is_not_paged(layout: str) -> None:
    pieces = [Piece("cues.notes", words("n", 40)), Piece("cues.logs", words("l", 40))]
    shared = shared_of(pieces, layout)
    exact = need(pieces, shared=shared)
    assert fit(pieces, window_of(exact), shared=shared)[0].cuts == ()
    assert fit(pieces, window_of(exact - 1), shared=shared)[0].cuts != ()


def test_the_shared_section_is_charged_to_the_window() -> None:
    """Instructions that fit alone are still paged when the shared section makes the call
    overflow, and what the assembly counts is the whole user message."""
    pieces = [Piece("inputs.diff", words("d", 200)), Piece("cues.parse", words("p", 200), produced=1)]
    compose = Prompt(pieces, shared=[p.ref for p in pieces])
    unpaged = compose({})
    assert measured(FRAME, Layout("", unpaged.prompt)) < 200
    window = window_of(need(pieces, shared=compose.shared) - 100)
    assembly = assemble(FRAME, compose, pieces, window, estimate_tokens)
    assert [cut.ref for cut in assembly.cuts] == ["inputs.diff"]
    assert assembly.tokens == measured(FRAME, assembly.layout) <= window.tokens
    assert assembly.layout.prompt == unpaged.prompt  # the instructions only point: nothing to page there


def test_a_shared_piece_is_paged_in_its_block_and_the_instructions_still_point_to_it() -> None:
    pieces = [Piece("inputs.diff", words("d", 200)), Piece("cues.notes", words("n", 20), rank=1)]
    window = window_of(need(pieces, shared=["inputs.diff"]) - 100)
    assembly, compose = fit(pieces, window, shared=["inputs.diff"])
    [cut] = assembly.cuts
    assert cut.ref == "inputs.diff" and 0 < cut.tokens < cut.of
    shared, prompt = assembly.layout
    # The block is still a whole block, first in the user message, and holds the head and the marker.
    assert shared.startswith("<inputs.diff>\n") and shared.endswith("\n</inputs.diff>")
    assert assembly.layout.user.startswith(shared + "\n\n")
    head, _, marker = compose.section(assembly.layout, "inputs.diff").rpartition("\n")
    assert head and pieces[0].text.startswith(head)
    assert marker.startswith("[paged out: the rest of inputs.diff, ")
    # The instructions are untouched: a pointer, and the unpaged piece inline.
    assert prompt == compose({}).prompt
    assert "[paged out" not in prompt
    assert compose.section(assembly.layout, "cues.notes") == pieces[1].text


# -- assemble: the order pieces are paged in -------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_lowest_rank_is_paged_first(layout: str) -> None:
    """Three pieces of 250 tokens, 100 too many: the lowest rank goes, however recent."""
    pieces = [
        Piece("cues.a", words("a", 200), rank=2, produced=1),
        Piece("cues.b", words("b", 200), rank=0, produced=9),
        Piece("cues.c", words("c", 200), rank=1, produced=0),
    ]
    shared = shared_of(pieces, layout)
    assembly, compose = fit(pieces, window_of(need(pieces, shared=shared) - 100), shared=shared)
    assert [cut.ref for cut in assembly.cuts] == ["cues.b"]
    assert compose.section(assembly.layout, "cues.a") == pieces[0].text
    assert compose.section(assembly.layout, "cues.c") == pieces[2].text
    assert "[paged out: the rest of cues.b," in compose.section(assembly.layout, "cues.b")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_among_equal_ranks_the_least_recently_produced_is_paged_first(layout: str) -> None:
    pieces = [
        Piece("cues.a", words("a", 200), produced=3),
        Piece("cues.b", words("b", 200), produced=1),
        Piece("cues.c", words("c", 200), produced=2),
    ]
    shared = shared_of(pieces, layout)
    assembly, compose = fit(pieces, window_of(need(pieces, shared=shared) - 100), shared=shared)
    assert [cut.ref for cut in assembly.cuts] == ["cues.b"]
    assert compose.section(assembly.layout, "cues.a") == pieces[0].text
    assert compose.section(assembly.layout, "cues.c") == pieces[2].text


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rank_outweighs_recency(layout: str) -> None:
    """The oldest piece, ranked higher, outlasts two newer ones."""
    pieces = [
        Piece("inputs.old", words("o", 200), rank=1, produced=0),
        Piece("cues.newer", words("n", 200), produced=5),
        Piece("cues.newest", words("w", 200), produced=7),
    ]
    shared = shared_of(pieces, layout)
    assembly, compose = fit(pieces, window_of(need(pieces, shared=shared) - 300), shared=shared)
    assert [cut.ref for cut in assembly.cuts] == ["cues.newer", "cues.newest"]
    assert compose.section(assembly.layout, "inputs.old") == pieces[0].text


@pytest.mark.parametrize("layout", LAYOUTS)
def test_paging_stops_as_soon_as_the_layout_fits(layout: str) -> None:
    """Pieces are paged one at a time, in order, and no further than needed."""
    pieces = [Piece(f"cues.p{i}", words(f"p{i}x", 200), produced=i) for i in range(5)]  # 350 tokens each
    shared = shared_of(pieces, layout)
    assembly, compose = fit(pieces, window_of(need(pieces, shared=shared) - 400), shared=shared)
    assert [cut.ref for cut in assembly.cuts] == ["cues.p0", "cues.p1"]
    for piece in pieces[2:]:
        assert compose.section(assembly.layout, piece.ref) == piece.text
    # The replacements grew one piece at a time, in paging order.
    firsts = [list(call) for call in compose.calls if call]
    assert firsts[0] == ["cues.p0"] and firsts[1] == ["cues.p0", "cues.p1"]


# -- assemble: the markers -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_whole_pieces_get_a_marker_saying_what_and_how_much_and_the_last_keeps_its_head(layout: str) -> None:
    """Two of three pieces must go: the first is replaced whole, the second keeps its head and
    says how much of it was cut; each marker stands where its piece is shown."""
    pieces = [Piece(f"cues.p{i}", words(f"p{i}x", 200), produced=i) for i in range(3)]  # 350 tokens each
    shared = shared_of(pieces, layout)
    window = window_of(need(pieces, shared=shared) - 400)
    assembly, compose = fit(pieces, window, shared=shared)
    first, last = assembly.cuts
    of = estimate_tokens(pieces[0].text)
    assert first == Cut("cues.p0", of, of)
    assert compose.section(assembly.layout, "cues.p0") == whole_marker("cues.p0", of, window)

    assert (last.ref, last.of) == ("cues.p1", estimate_tokens(pieces[1].text))
    assert 0 < last.tokens < last.of
    shown = compose.section(assembly.layout, "cues.p1")
    head, _, marker = shown.rpartition("\n")
    assert marker == (
        f"[paged out: the rest of cues.p1, {last.tokens:,} of {last.of:,} tokens, "
        f"to fit the {window.tokens}-token input window of openai/tiny]"
    )
    assert head and pieces[1].text.startswith(head)
    assert pieces[1].text[len(head)] == " "  # cut at a word, not inside one
    assert estimate_tokens(head) == last.of - last.tokens  # what was cut is exactly what is missing
    assert compose.section(assembly.layout, "cues.p2") == pieces[2].text
    assert assembly.tokens == measured(FRAME, assembly.layout) <= window.tokens
    # Markers are only where the pieces were: the instructions of a shared piece keep its pointer.
    in_prompt = assembly.layout.prompt.count("[paged out: ")
    assert in_prompt == sum(ref not in shared for ref in ("cues.p0", "cues.p1"))
    assert assembly.layout.shared.count("[paged out: ") == 2 - in_prompt


def test_markers_name_the_dynamics_share_of_the_window() -> None:
    window = window_for(TINY, "pp", 128, 1024)  # 224 tokens
    assert window is not None
    assembly, _ = fit([Piece("inputs.diff", words("d", 200))], window)
    assert "to fit 224 tokens (0.25 x the 896-token window of openai/tiny at pp)]" in assembly.layout.prompt


@pytest.mark.parametrize("layout", ["inline", "shared"])
def test_a_head_too_small_to_keep_goes_whole(layout: str) -> None:
    """When less than a useful head would fit, the last piece is replaced whole."""
    pieces = [Piece("cues.a", words("a", 100)), Piece("cues.b", words("b", 100), produced=1)]
    shared = shared_of(pieces, layout)
    probe = window_of(500)  # same number of digits as the window chosen below: the same markers
    of = estimate_tokens(pieces[0].text)
    paged = Prompt(pieces, shared=shared)({"cues.a": whole_marker("cues.a", of, probe)})
    tokens = measured(FRAME, paged) + 2 * PER_MESSAGE + 10  # room for 10 tokens of head: too few
    assert 100 <= tokens <= 999
    window = window_of(tokens)
    assembly, compose = fit(pieces, window, shared=shared)
    assert assembly.cuts == (Cut("cues.a", of, of),)
    assert compose.section(assembly.layout, "cues.a") == whole_marker("cues.a", of, window)
    assert "the rest of" not in assembly.layout.user


def test_compose_is_given_markers_that_survive_key_steps() -> None:
    """Replacements are :class:`Marker` text, so a template stepping into a paged value
    (``{{ cues.facts.summary }}``) still renders the marker."""
    pieces = [Piece("cues.facts", words("f", 300))]
    compose = Prompt(pieces)
    assemble(FRAME, compose, pieces, window_of(200), estimate_tokens)
    replaced = [text for call in compose.calls for text in call.values()]
    assert replaced and all(isinstance(text, Marker) for text in replaced)


def test_the_counter_given_is_the_one_obeyed() -> None:
    """With a word counter, the layout fits by words, not by four-character tokens."""

    def count(text: str) -> int:
        return len(text.split())

    pieces = [Piece("cues.a", words("a", 300)), Piece("cues.b", words("b", 300), produced=1)]
    compose = Prompt(pieces, shared=["cues.b"])
    window = window_of(400)
    assembly = assemble(FRAME, compose, pieces, window, count)
    assert [cut.ref for cut in assembly.cuts] == ["cues.a"]
    assert assembly.cuts[0].of == 300  # counted in words
    assert assembly.tokens == measured(FRAME, assembly.layout, count) <= window.tokens
    assert estimate_tokens(assembly.layout.user) > window.tokens  # by the other measure it would not fit


# -- assemble: the reference frame -----------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_frame_is_charged_to_the_window_but_never_paged(layout: str) -> None:
    """A larger frame leaves less room, so more material is paged; the frame itself is never
    offered to compose, never cut, and not part of the user message."""
    pieces = [Piece(f"cues.p{i}", words(f"p{i}x", 200), produced=i) for i in range(3)]
    shared = shared_of(pieces, layout)
    window = window_of(need(pieces, shared=shared) - 100)
    small, _ = fit(pieces, window, system=FRAME, shared=shared)
    large_frame = frame_text({"style": words("style", 120)})  # about 250 tokens more than FRAME
    large, compose = fit(pieces, window, system=large_frame, shared=shared)
    assert [cut.ref for cut in small.cuts] == ["cues.p0"]
    assert [cut.ref for cut in large.cuts] == ["cues.p0", "cues.p1"]
    assert all(set(call) <= {p.ref for p in pieces} for call in compose.calls)
    assert large_frame not in large.layout.user and "Reference frame" not in large.layout.user
    assert large.tokens == measured(large_frame, large.layout) <= window.tokens


def test_a_frame_and_literal_prompt_that_overflow_raise_context_error() -> None:
    """Even with every piece paged, the frame and the prompt's own text need more than the
    window: the frame is not cut to make room, the call is refused."""
    window = window_of(300)
    large_frame = frame_text({"style": words("style", 200)})  # about 400 tokens alone
    pieces = [Piece("cues.notes", words("n", 50))]
    with pytest.raises(ContextError) as caught:
        fit(pieces, window, system=large_frame)
    error = caught.value
    assert isinstance(error, AgentError)
    found = re.search(r"need ([\d,]+) tokens with every cue, input and state value paged out", error.message)
    assert found is not None and int(found[1].replace(",", "")) > window.tokens
    assert error.message.endswith(f"the call may take {window.describe()}")
    assert "reference frame" in error.message
    assert "Shorten the prompt or the reference frame" in error.hint


def test_a_literal_prompt_too_long_for_the_window_raises_with_no_pieces_to_page() -> None:
    compose = Prompt([], closing=words("rule", 300))
    with pytest.raises(ContextError, match="the call may take the 100-token input window of openai/tiny"):
        assemble("", compose, [], window_of(100), estimate_tokens)


def test_a_shared_section_that_overflows_with_every_piece_paged_raises_context_error() -> None:
    """The shared section is charged even when everything in it is paged: its blocks (their tags
    and markers) can overflow a window that the instructions alone fit, and the call is refused."""
    pieces = [Piece(f"cues.piece{i}", words(f"p{i}x", 100), produced=i) for i in range(12)]
    compose = Prompt(pieces, shared=[p.ref for p in pieces])
    window = window_of(measured("", Layout("", compose({}).prompt)) + 20)  # the instructions alone fit
    with pytest.raises(ContextError) as caught:
        assemble("", compose, pieces, window, estimate_tokens)
    found = re.search(r"need ([\d,]+) tokens with every cue, input and state value paged out", caught.value.message)
    assert found is not None and int(found[1].replace(",", "")) > window.tokens
    assert compose.calls[-1].keys() == {p.ref for p in pieces}  # it tried paging every piece first


# -- assemble: whatever it is given ----------------------------------------------------------------


piece_specs = st.lists(
    st.tuples(st.integers(1, 400), st.integers(-2, 2), st.integers(0, 20), st.booleans()), min_size=0, max_size=5
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=piece_specs, tokens=st.integers(20, 1500), frame_words=st.integers(0, 150))
def test_an_assembly_always_fits_and_pages_in_order(
    specs: list[tuple[int, int, int, bool]], tokens: int, frame_words: int
) -> None:
    """For any pieces, any of them shared, and any window: either the result fits (and only a
    prefix of the paging order was touched, all but the last whole, the rest verbatim, each
    marker where its piece is shown) or ContextError says why."""
    pieces = [Piece(f"cues.p{i}", words(f"p{i}x", n), rank, produced) for i, (n, rank, produced, _) in enumerate(specs)]
    shared = [p.ref for p, spec in zip(pieces, specs, strict=True) if spec[3]]
    system = frame_text({"style": words("s", frame_words)}) if frame_words else ""
    window = window_of(tokens)
    compose = Prompt(pieces, shared=shared)
    try:
        assembly = assemble(system, compose, pieces, window, estimate_tokens)
    except ContextError as error:
        found = re.search(r"need ([\d,]+) tokens", error.message)
        assert found is not None and int(found[1].replace(",", "")) > window.tokens
        return
    assert assembly.tokens == measured(system, assembly.layout) <= window.tokens
    order = [p.ref for p in sorted(pieces, key=lambda p: (p.rank, p.produced))]
    cut = [c.ref for c in assembly.cuts]
    assert cut == order[: len(cut)]
    for c in assembly.cuts[:-1]:
        assert c.tokens == c.of
    by_ref = {p.ref: p for p in pieces}
    for c in assembly.cuts:
        assert c.of == estimate_tokens(by_ref[c.ref].text) and 0 < c.tokens <= c.of
        assert f"cues.{c.ref.split('.')[1]}, " in compose.section(assembly.layout, c.ref)
    for ref in order[len(cut) :]:
        assert compose.section(assembly.layout, ref) == by_ref[ref].text
    # The instructions of a shared piece only ever point to it.
    assert assembly.layout.prompt.count("[paged out: ") == sum(ref not in shared for ref in cut)
