"""The smallest valid instance of a JSON Schema: what a simulated model answers for a typed output.

:func:`smallest_instance` builds, without search, a value that a schema accepts: only the
required properties, the fewest items, the shortest strings and the number nearest zero that
the bounds allow, the first ``enum`` value, the first ``anyOf``/``oneOf`` branch that works.
The seed picks the words strings are made of, so two agents' simulated answers differ while
each stays the same from run to run. The result is validated before it is returned; a schema
it cannot satisfy (a ``pattern``, a contradiction) raises :class:`InstanceError`, whose message
says to pin an answer with ``simulate: {output: ...}``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["InstanceError", "smallest_instance"]

_WORDS = ("alpha", "brio", "coda", "dolce", "forte", "largo", "lento", "presto", "rondo", "tempo", "tutti", "vivo")
_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "a@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_DEPTH = 32


class InstanceError(ValueError):
    """No instance could be built for the schema."""


def smallest_instance(schema: Any, seed: int = 0) -> Any:
    """A value ``schema`` accepts (see the module's docstring); raises :class:`InstanceError`."""
    from hct_cli.program.checks import jsonschema_module

    builder = _Builder(schema, random.Random(seed))
    value = builder.build(schema, 0)
    jsonschema = jsonschema_module()
    validator = jsonschema.validators.validator_for(schema if isinstance(schema, Mapping) else {})(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise InstanceError(
            f"cannot make up a valid answer for this schema ({error.message} at {error.json_path}); "
            "pin one with simulate: {output: ...}"
        )
    return value


class _Builder:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def build(self, schema: Any, depth: int) -> Any:
        if depth > _DEPTH:
            raise InstanceError(
                "the schema nests deeper than a simulated answer may; pin one with simulate: {output: ...}"
            )
        if schema is True or schema is None or schema == {}:
            return None
        if schema is False:
            raise InstanceError("the schema accepts nothing (false); pin an answer with simulate: {output: ...}")
        if not isinstance(schema, Mapping):
            return None
        if "$ref" in schema:
            return self.build(self._resolve(str(schema["$ref"])), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self._resolved(part))
            return self.build(merged, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = {k: v for k, v in schema.items() if k != key}
                return self.build(_merge(rest, self._resolved(schema[key][0])), depth + 1)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return _number(schema, kind == "integer")
        if kind == "boolean":
            return False
        return None

    def _resolved(self, schema: Any) -> Any:
        if isinstance(schema, Mapping) and "$ref" in schema and len(schema) == 1:
            return self._resolve(str(schema["$ref"]))
        return schema

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise InstanceError(f"cannot follow {ref!r} to make up an answer; pin one with simulate: {{output: ...}}")
        node = self.root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InstanceError(f"{ref!r} does not resolve inside the schema")
        return node

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        names = list(schema.get("required") or ())
        wanted = int(schema.get("minProperties", 0))
        for name in properties:  # more than the required ones only when minProperties asks
            if len(names) >= wanted:
                break
            if name not in names:
                names.append(name)
        value = {name: self.build(properties.get(name, {}), depth + 1) for name in names}
        extra = schema.get("additionalProperties", {})
        while len(value) < wanted and extra is not False:  # minProperties beyond what is declared
            value[f"{self.rng.choice(_WORDS)}_{len(value)}"] = self.build(extra, depth + 1)
        return value

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or ())
        count = int(schema.get("minItems", 0))
        items = schema.get("items", {})
        values = [self.build(part, depth + 1) for part in prefix[:count]]
        while len(values) < count:
            values.append(self.build(items if isinstance(items, Mapping | bool) else {}, depth + 1))
        if schema.get("uniqueItems") and len(values) > 1:
            values = [_distinct(value, index) for index, value in enumerate(values)]
        return values

    def _string(self, schema: Mapping[str, Any]) -> str:
        if "pattern" in schema:
            raise InstanceError("cannot make up a string for a pattern; pin an answer with simulate: {output: ...}")
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        shaped = _FORMATS.get(str(schema.get("format")))
        if shaped is not None and low <= len(shaped) <= (len(shaped) if high is None else int(high)):
            return shaped
        text = self.rng.choice(_WORDS)
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        if high is not None:
            text = text[: max(int(high), low)]
        return text[: max(low, len(text))]


def _kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        return str(kind[0]) if kind else None
    if kind is not None:
        return str(kind)
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    above = schema.get("exclusiveMinimum")
    below = schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")
    value: float = 0
    if low is not None and value < low:
        value = low
    if above is not None and value <= above:
        value = above + (1 if integer or step else (abs(above) * 1e-9 or 1e-9))
    if high is not None and value > high:
        value = high
    if below is not None and value >= below:
        value = below - (1 if integer or step else (abs(below) * 1e-9 or 1e-9))
    if step:
        value = math.ceil(value / step) * step
    if integer:
        return math.ceil(value)
    return value


def _merge(a: Mapping[str, Any], b: Any) -> dict[str, Any]:
    """Two schemas that must both hold, as one (for the keywords the builder reads)."""
    merged = dict(a)
    if not isinstance(b, Mapping):
        return merged
    for key, value in b.items():
        if key == "properties" and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        elif key == "required":
            merged[key] = list(dict.fromkeys([*merged.get(key, ()), *value]))
        elif key in ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum") and key in merged:
            merged[key] = max(merged[key], value)
        elif key in ("maximum", "maxLength", "maxItems", "exclusiveMaximum") and key in merged:
            merged[key] = min(merged[key], value)
        else:
            merged.setdefault(key, value)
    return merged


def _distinct(value: Any, index: int) -> Any:
    """The ``index``-th item made different from the others (for ``uniqueItems``)."""
    if isinstance(value, str):
        return f"{value} {index}" if index else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value + index
    return value
