"""Validate loaded score data against the score JSON Schema, as positioned findings."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from hct_cli.score.findings import Finding, Pos, Severity
from hct_cli.score.load import Document, JsonPath

__all__ = ["schema", "schema_reference", "schema_text", "validate"]


def schema_text() -> str:
    """The score JSON Schema, as shipped in the package."""
    return resources.files("hct_cli").joinpath("schemas/score.schema.json").read_text("utf-8")


def schema_reference(directory: Path) -> str:
    """What a ``$schema=`` modeline of a score written in ``directory`` should say.

    An editor must find the schema without a network: inside a checkout that carries this very
    schema under ``schemas/``, a path relative to the score (which stays right when the checkout
    moves); anywhere else, the absolute path of the schema installed with the package.
    """
    shipped = resources.files("hct_cli").joinpath("schemas/score.schema.json")
    here = directory.resolve()
    for parent in (here, *here.parents):
        candidate = parent / "schemas" / "score.schema.json"
        if candidate.is_file() and candidate.read_text("utf-8") == schema_text():
            return Path(os.path.relpath(candidate, here)).as_posix()
    return Path(str(shipped)).resolve().as_posix()


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _where(path: JsonPath) -> str:
    return ".".join(str(p) for p in path) or "the score"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """Replace a oneOf/anyOf failure by the most relevant failure of its branches."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        yield from _leaves(best_match(error.context))
    else:
        yield error


class _Reporter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def finding(self, pos: Pos, code: str, message: str, hint: str) -> Finding:
        return Finding(self.doc.file, pos, Severity.ERROR, code, message, hint)

    def findings(self, error: ValidationError) -> Iterator[Finding]:
        path: JsonPath = tuple(error.absolute_path)
        where = _where(path)
        kind = error.validator
        value = error.instance
        if kind == "additionalProperties" and isinstance(value, dict):
            allowed = sorted(error.schema.get("properties", {}))
            for key in value:
                if key in allowed:
                    continue
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"Did you mean {close[0]!r}?" if close else ""
                hint = hint or (f"Allowed here: {', '.join(allowed)}." if allowed else "")
                yield self.finding(
                    self.doc.pos((*path, key), key=True),
                    "HCT101",
                    f"unknown key {key!r} in {where}",
                    hint or "Remove the key.",
                )
        elif "propertyNames" in error.schema_path:
            yield from self._property_name(error, path)
        elif kind == "required":
            for key in error.validator_value:
                if isinstance(value, dict) and key not in value:
                    yield self.finding(
                        self.doc.pos(path, key=True),
                        "HCT102",
                        f"{where} is missing the required key {key!r}",
                        f"Add {key}: (see `hct schema` for what it takes).",
                    )
        elif kind == "type":
            wanted = error.validator_value
            names = [wanted] if isinstance(wanted, str) else list(wanted)
            expected = " or ".join(_TYPE_WORDS.get(n, n) for n in names)
            yield self.finding(
                self.doc.pos(path),
                "HCT103",
                f"{where} must be {expected}, not {_type_name(value)}",
                f"Write {where} as {expected}.",
            )
        elif kind == "propertyNames":
            yield from self._property_name(error, path)
        else:
            yield self.finding(self.doc.pos(path), "HCT104", f"{where}: {self._describe(error)}", self._hint(error))

    def _property_name(self, error: ValidationError, path: JsonPath) -> Iterator[Finding]:
        name = error.instance
        for leaf in error.context or [error]:
            inner = leaf.validator
            if inner == "enum":
                choices = ", ".join(map(str, leaf.validator_value))
                message = f"{name!r} is not allowed as a key in {_where(path)}"
                hint = f"Use one of: {choices}."
            else:
                message = f"{name!r} is not a valid name in {_where(path)}"
                hint = "Names start with a letter, then letters, digits or underscores (64 at most)."
            yield self.finding(self.doc.pos((*path, str(name)), key=True), "HCT104", message, hint)
            return

    @staticmethod
    def _describe(error: ValidationError) -> str:
        kind, limit, value = error.validator, error.validator_value, error.instance
        if kind == "enum":
            return f"{value!r} is not one of {', '.join(map(repr, limit))}"
        if kind == "const":
            return f"must be {limit!r}, not {value!r}"
        if kind == "pattern":
            return f"{value!r} has the wrong form"
        if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            words = {
                "minimum": "at least",
                "exclusiveMinimum": "more than",
                "maximum": "at most",
                "exclusiveMaximum": "less than",
            }
            return f"{value!r} must be {words[kind]} {limit}"
        if kind in ("minItems", "minProperties", "minLength"):
            return f"needs at least {limit} {'item' if kind != 'minLength' else 'character'}(s)"
        if kind in ("maxItems", "maxProperties", "maxLength"):
            return f"takes at most {limit} {'item' if kind != 'maxLength' else 'character'}(s)"
        if kind == "uniqueItems":
            return "lists the same name twice"
        return str(error.message)

    @staticmethod
    def _hint(error: ValidationError) -> str:
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        if error.validator == "uniqueItems":
            return "Remove the repeated name."
        if isinstance(description, str):
            return description
        return "See `hct schema` for the allowed values."


def validate(doc: Document) -> list[Finding]:
    """Every schema violation in ``doc``, positioned at the offending node, in file order."""
    reporter = _Reporter(doc)
    seen: set[tuple[Pos, str, str]] = set()
    findings: list[Finding] = []
    for error in _validator().iter_errors(doc.data):
        for leaf in _leaves(error):
            for finding in reporter.findings(leaf):
                key = (finding.pos, finding.code, finding.message)
                if key not in seen:
                    seen.add(key)
                    findings.append(finding)
    findings.sort(key=lambda f: (f.pos, f.code))
    return findings
