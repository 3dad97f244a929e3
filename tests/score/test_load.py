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
