from __future__ import annotations

from pathlib import Path

import pytest

from hct_cli.errors import ScoreError
from hct_cli.score.findings import Pos
from hct_cli.score.load import MAX_ALIAS_NODES, load_document, load_text

pytestmark = pytest.mark.timeout(30)


def _codes(text: str | bytes) -> list[tuple[str, int, int]]:
    with pytest.raises(ScoreError) as info:
        load_text(text, "s.yaml")
    return [(f.code, f.line, f.col) for f in info.value.findings]


def test_positions_of_keys_and_values() -> None:
    doc = load_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "s.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}]}
    assert doc.pos(("a",), key=True) == Pos(1, 1)
    assert doc.pos(("a",)) == Pos(1, 4)
    assert doc.pos(("b", 1, "c")) == Pos(4, 9)
    assert doc.pos(("b", 9, "missing")) == Pos(3, 3)  # nearest known ancestor


def test_core_scalars() -> None:
    doc = load_text("i: 0x1f\nf: 1.5\nb: true\nn: null\nd: 2024-01-01\ns: 'x'\no: 0o17\n", "s")
    assert doc.data == {"i": 31, "f": 1.5, "b": True, "n": None, "d": "2024-01-01", "s": "x", "o": 15}


def test_merge_keys_and_small_aliases_are_fine() -> None:
    doc = load_text("base: &b {tempo: presto}\nx:\n  <<: *b\n  dynamics: pp\ny: *b\n", "s")
    assert doc.data["x"] == {"dynamics": "pp", "tempo": "presto"}
    assert doc.data["y"] == {"tempo": "presto"}


def test_duplicate_key_points_at_second_occurrence() -> None:
    assert _codes("a: 1\nb: 2\na: 3\n") == [("HCT005", 3, 1)]


def test_alias_bomb_refused_at_the_alias_that_crosses_the_limit() -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcdef", "abcde", strict=True):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    codes = _codes("\n".join(rows) + "\n")
    assert len(codes) == 1 and codes[0][0] == "HCT006"
    assert codes[0][1] <= len(rows)
    assert MAX_ALIAS_NODES < 10**6


def test_recursive_alias_refused() -> None:
    assert _codes("a: &a [1, *a]\n")[0][0] == "HCT006"


def test_object_constructing_tags_refused() -> None:
    assert _codes("a: !!python/object/apply:os.system [ls]\n") == [("HCT007", 1, 4)]
    assert _codes("a: !custom 1\n") == [("HCT007", 1, 4)]


def test_encoding_error_at_first_bad_byte() -> None:
    assert _codes(b"a: 1\nb: ok \xff\n") == [("HCT002", 2, 7)]


def test_bom_is_accepted() -> None:
    assert load_text(b"\xef\xbb\xbfa: 1\n", "s").data == {"a": 1}


def test_yaml_errors_at_problem_mark() -> None:
    assert _codes("a:\n\tb: 1\n") == [("HCT004", 2, 1)]
    assert _codes("a: [1, 2\n")[0][0] == "HCT004"
    assert _codes("a: 1\n---\nb: 2\n") == [("HCT004", 2, 1)]


def test_control_character_is_positioned() -> None:
    assert _codes("a: 1\nb: x\x01\n") == [("HCT004", 2, 5)]


def test_deep_nesting_refused() -> None:
    assert _codes("a: " + "[" * 500 + "]" * 500 + "\n")[0][0] == "HCT004"


def test_empty_and_comment_only_files() -> None:
    assert _codes("") == [("HCT008", 1, 1)]
    assert _codes("# nothing here\n") == [("HCT008", 1, 1)]


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ScoreError) as info:
        load_document(tmp_path / "missing.yaml")
    assert info.value.findings[0].code == "HCT001"
    with pytest.raises(ScoreError) as info:
        load_document(tmp_path)
    assert info.value.findings[0].code == "HCT001"


def test_block_scalar_lines_map_into_the_file() -> None:
    doc = load_text("p: |\n  one\n  two {{ x }}\n", "s")
    assert doc.text_pos(("p",), 2) == Pos(3, 3)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: .nan\n", (1, 4)),
        ("a: .NaN\n", (1, 4)),
        ("a:\n  b: [1, -.inf]\n", (2, 10)),
        ("a: +.Inf\n", (1, 4)),
        ("a: 1e400\n", (1, 4)),  # overflows to infinity
        ("a: !!float .nan\n", (1, 4)),
        ("a: {b: &x .inf, c: *x}\n", (1, 8)),
    ],
)
def test_non_finite_numbers_are_refused_where_they_stand(text: str, where: tuple[int, int]) -> None:
    assert _codes(text)[0] == ("HCT009", *where)


def test_finite_numbers_and_words_like_nan_stay() -> None:
    doc = load_text("a: 1e300\nb: nan\nc: 'inf'\nd: -0.0\n", "s")
    assert doc.data == {"a": 1e300, "b": "nan", "c": "inf", "d": -0.0}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('a: "x\\ud800y"\n', (1, 4)),
        ('a:\n  - ok\n  - "\\udfff"\n', (3, 5)),
        ('"k\\udc00": 1\n', (1, 1)),
        ('a: "\\ude00\\ud83d"\n', (1, 4)),  # a pair in the wrong order is two lone halves
    ],
)
def test_lone_surrogates_are_refused_where_they_stand(text: str, where: tuple[int, int]) -> None:
    assert _codes(text) == [("HCT010", *where)]


def test_a_surrogate_pair_escape_is_the_character_it_encodes() -> None:
    # As in JSON, of which YAML is a superset: "\ud83d\ude00" is one character.
    assert load_text('a: "\\ud83d\\ude00"\n', "s").data == {"a": "\U0001f600"}
