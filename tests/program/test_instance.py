"""Simulated answers for typed outputs: every instance validates against its schema.

A property test over generated schemas (objects, arrays, strings with lengths and formats,
bounded numbers, enums, consts, ``anyOf``/``allOf`` and local ``$ref``), the same instance for
the same seed, and a clear error (never an invalid answer) for what cannot be made up.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hct_cli.program.instance import InstanceError, smallest_instance

_names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    lengths = st.integers(0, 12)
    strings = st.builds(
        lambda low, extra, fmt: {
            "type": "string",
            "minLength": low,
            **({"maxLength": low + extra} if extra is not None else {}),
            **({"format": fmt} if fmt else {}),
        },
        lengths,
        st.one_of(st.none(), st.integers(0, 5)),
        st.sampled_from([None, "date", "email", "uuid"]),
    )
    bounds = st.one_of(st.none(), st.integers(-50, 50))
    numbers = st.builds(
        lambda kind, low, span, step: {
            "type": kind,
            **({"minimum": low} if low is not None else {}),
            **({"maximum": low + span} if low is not None and span is not None else {}),
            **({"multipleOf": step} if step and low is None else {}),
        },
        st.sampled_from(["integer", "number"]),
        bounds,
        st.one_of(st.none(), st.integers(0, 20)),
        st.one_of(st.none(), st.integers(1, 7)),
    )
    exclusive = st.builds(
        lambda low: {"type": "integer", "exclusiveMinimum": low, "exclusiveMaximum": low + 2}, st.integers(-9, 9)
    )
    constant = st.builds(lambda v: {"const": v}, st.one_of(st.integers(), st.text(max_size=4), st.booleans()))
    choice = st.builds(lambda vs: {"enum": vs}, st.lists(st.integers(), min_size=1, max_size=4))
    simple = st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}, {"type": ["integer", "null"]}])
    return st.one_of(strings, numbers, exclusive, constant, choice, simple)


def _schema() -> st.SearchStrategy[dict[str, Any]]:
    def nest(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        objects = st.builds(
            lambda props, extra, closed: {
                "type": "object",
                "properties": props,
                "required": sorted(props)[: len(props) // 2 + 1] if props else [],
                **({"minProperties": min(extra, len(props)) if closed else extra} if extra is not None else {}),
                **({"additionalProperties": False} if closed else {}),
            },
            st.dictionaries(_names, children, max_size=4),
            st.one_of(st.none(), st.integers(0, 2)),
            st.booleans(),
        )
        arrays = st.builds(
            lambda items, low: {"type": "array", "items": items, "minItems": low}, children, st.integers(0, 3)
        )
        either = st.builds(lambda a, b: {"anyOf": [a, b]}, children, children)
        both = st.builds(
            lambda low: {"allOf": [{"type": "string", "minLength": low}, {"maxLength": low + 4}]}, st.integers(0, 6)
        )
        return st.one_of(objects, arrays, either, both)

    return st.recursive(_leaf(), nest, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_schema(), st.integers(0, 2**32))
def test_every_simulated_instance_validates_against_its_schema(schema: dict[str, Any], seed: int) -> None:
    value = smallest_instance(schema, seed)  # every generated schema is satisfiable: no InstanceError
    jsonschema.validate(value, schema)
    assert smallest_instance(schema, seed) == value  # the same answer for the same seed


def test_the_smallest_instance_has_only_what_is_required() -> None:
    schema = {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["path", "hunks"],
                    "properties": {"path": {"type": "string"}, "hunks": {"type": "array"}, "note": {"type": "string"}},
                },
            },
            "summary": {"type": "string"},
        },
    }
    value = smallest_instance(schema, 3)
    assert set(value) == {"files"} and len(value["files"]) == 1
    assert set(value["files"][0]) == {"path", "hunks"} and value["files"][0]["hunks"] == []
    assert isinstance(value["files"][0]["path"], str) and value["files"][0]["path"]


def test_seeds_pick_different_words_and_refs_resolve() -> None:
    schema = {
        "$defs": {"name": {"type": "string", "minLength": 3}},
        "type": "array",
        "minItems": 2,
        "items": {"$ref": "#/$defs/name"},
    }
    answers = {tuple(smallest_instance(schema, seed)) for seed in range(20)}
    assert len(answers) > 1
    for answer in answers:
        jsonschema.validate(list(answer), schema)


def test_unique_items_are_made_distinct() -> None:
    schema = {"type": "array", "minItems": 3, "uniqueItems": True, "items": {"type": "string"}}
    value = smallest_instance(schema, 1)
    assert len(set(value)) == 3
    jsonschema.validate(value, schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[0-9]{3}$"},
        False,
        {"type": "object", "required": ["a"], "properties": {"a": False}},
        {"$ref": "other.json"},
    ],
)
def test_what_cannot_be_made_up_is_a_clear_error_never_an_invalid_answer(schema: Any) -> None:
    with pytest.raises(InstanceError, match=r"simulate: \{output: \.\.\.\}|does not resolve|cannot"):
        smallest_instance(schema)
