"""JSON in and out: hct writes only valid JSON and reads numbers and strings as JSON defines them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hct_cli.jsonio import dumps, loads, non_finite

pytestmark = pytest.mark.timeout(30)


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} written")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_dumps_writes_a_non_finite_number_as_null(number: float) -> None:
    value = {"a": [1.5, number, {"b": (number, "text")}], "c": 2}
    for options in ({}, {"indent": 2}, {"compact": True, "ensure_ascii": False}):
        assert _strict(dumps(value, **options)) == {"a": [1.5, None, {"b": [None, "text"]}], "c": 2}


def test_dumps_keeps_finite_numbers_and_writes_other_objects_as_text() -> None:
    assert _strict(dumps({"x": 1e300, "y": -0.0, "z": frozenset()})) == {"x": 1e300, "y": -0.0, "z": "frozenset()"}


@pytest.mark.parametrize(
    "text",
    ['{"x": NaN}', "[Infinity]", '{"x": -Infinity}', "[1e400]", '"a\\ud800b"', '["\\udc00"]', '{"\\ude00\\ud83d": 1}'],
)
def test_loads_refuses_what_json_is_not(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_loads_reads_json() -> None:
    assert loads('{"x": [1, 2.5e10, "NaN", "\\ud83d\\ude00"], "y": null}') == {
        "x": [1, 2.5e10, "NaN", "\U0001f600"],
        "y": None,
    }


def test_non_finite_says_where() -> None:
    assert non_finite({"a": [1, {"b": float("nan")}]}) == "a[1].b"
    assert non_finite(float("inf")) == "the value"
    assert non_finite({"a": [1, "inf"]}) is None
