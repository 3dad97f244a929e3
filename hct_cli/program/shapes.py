"""What a JSON Schema says about the shape of its values, read without any value: lint's view of
typed results.

:func:`reach` follows a template's field path (``cues.parse.files[0].path``) through the
producer's schema and says where the path cannot exist. :func:`misfit` says whether what a
writer produces can break the schema of a state key it writes. Both are lenient where a schema
leaves room (``anyOf`` of which one branch fits, ``additionalProperties`` left open, a ref
that does not resolve: lint reports that one elsewhere) and definite where it does not.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hct_cli.program.checks import RegexTimeout, SchemaRefs, search, time_limit

__all__ = ["Reach", "misfit", "reach", "types_of"]

_BRANCHES = ("allOf", "anyOf", "oneOf")
_REF_HOPS = 32


@dataclass(frozen=True)
class Reach:
    """Where a field path goes wrong: after ``depth`` of its steps, why, and what to do; or
    nothing (``ok``) when every step can exist. ``definite`` is False for a property the schema
    does not declare but does not forbid either."""

    depth: int = 0
    problem: str = ""
    hint: str = ""
    definite: bool = True

    @property
    def ok(self) -> bool:
        return not self.problem


def types_of(schema: Any) -> frozenset[str] | None:
    """The JSON types ``schema`` names at its top (``integer`` counted as a number too), or None
    when it names none."""
    if not isinstance(schema, dict) or "type" not in schema:
        return None
    named = schema["type"]
    found = set(named if isinstance(named, list) else [named])
    if "integer" in found:
        found.add("number")
    return frozenset(str(t) for t in found)


def _deref(node: Any, resolver: Any) -> tuple[Any, Any]:
    """``node`` with its ``$ref`` followed (hops bounded); a ref that does not resolve leaves
    an open schema (``True``)."""
    from referencing.exceptions import Unresolvable

    for _ in range(_REF_HOPS):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)) or resolver is None:
            return node, resolver
        try:
            resolved = resolver.lookup(node["$ref"])
        except Unresolvable:
            return True, resolver
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node, resolver = resolved.contents, resolved.resolver
        if siblings and isinstance(node, dict):
            node = {"allOf": [siblings, node]}  # a ref beside other keywords: both apply
    return True, resolver


def reach(refs: SchemaRefs, schema: Any, fields: Iterable[str | int]) -> Reach:
    """Whether the field path ``fields`` can exist in a value valid against ``schema``."""
    try:
        resolver = refs.resolver(schema)
    except Exception:  # a schema lint reports elsewhere (HCT282): nothing to say of its fields
        return Reach()
    return _reach(schema, resolver, tuple(fields), 0)


def _reach(node: Any, resolver: Any, fields: tuple[str | int, ...], depth: int) -> Reach:
    node, resolver = _deref(node, resolver)
    if depth >= len(fields):
        return Reach()
    if node is False:
        return Reach(depth, "its schema admits no value here", "Fix the producer's schema.")
    if not isinstance(node, dict):
        return Reach()
    branches = [b for key in _BRANCHES for b in node.get(key, ()) if isinstance(node.get(key), list)]
    if branches and not ({"properties", "items", "prefixItems", "type"} & node.keys()):
        results = [_reach(b, resolver, fields, depth) for b in branches]
        fitting = [r for r in results if r.ok]
        if fitting:
            return fitting[0]
        return max(results, key=lambda r: (r.definite, r.depth))
    step = fields[depth]
    types = types_of(node)
    if isinstance(step, str):
        if types is not None and "object" not in types:
            return Reach(depth, f"is {_a(types)} by its schema, with no field {step!r}", "Drop the field.")
        return _property(node, resolver, fields, depth)
    if types is not None and "array" not in types:
        return Reach(depth, f"is {_a(types)} by its schema, not a list", "Drop the index.")
    return _index(node, resolver, fields, depth)


def _property(node: dict[str, Any], resolver: Any, fields: tuple[str | int, ...], depth: int) -> Reach:
    step = fields[depth]
    assert isinstance(step, str)
    properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    assert isinstance(properties, dict)
    if step in properties:
        return _reach(properties[step], resolver, fields, depth + 1)
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict):
        for pattern, sub in patterns.items():
            try:
                with time_limit():
                    matched = search(pattern, step) is not None
            except (RegexTimeout, Exception):
                matched = True  # a pattern that cannot be decided: let it pass
            if matched:
                return _reach(sub, resolver, fields, depth + 1)
    extra = node.get("additionalProperties", True)
    if isinstance(extra, dict):
        return _reach(extra, resolver, fields, depth + 1)
    if not properties and extra is not False:
        return Reach()  # an object the schema says nothing more of
    close = difflib.get_close_matches(step, list(properties), n=1)
    declared = ", ".join(sorted(properties)) or "none"
    hint = f"Did you mean {close[0]!r}?" if close else f"Its schema declares: {declared}."
    if extra is False:
        return Reach(depth, f"has no property {step!r} (its schema allows no other)", hint)
    return Reach(depth, f"has no declared property {step!r}", hint, definite=False)


def _index(node: dict[str, Any], resolver: Any, fields: tuple[str | int, ...], depth: int) -> Reach:
    step = fields[depth]
    assert isinstance(step, int)
    maximum = node.get("maxItems")
    if isinstance(maximum, int) and step >= maximum:
        return Reach(depth, f"holds at most {maximum} items by its schema, so [{step}] never exists", _below(maximum))
    prefix = node.get("prefixItems")
    if isinstance(prefix, list) and step < len(prefix):
        return _reach(prefix[step], resolver, fields, depth + 1)
    items = node.get("items", True)
    if items is False and isinstance(prefix, list):
        return Reach(
            depth, f"holds at most {len(prefix)} items by its schema, so [{step}] never exists", _below(len(prefix))
        )
    return _reach(items, resolver, fields, depth + 1)


def _items(refs: SchemaRefs, schema: Any) -> tuple[bool, Any]:
    """Whether ``schema`` admits lists, and the schema of their items (``True``: anything)."""
    try:
        node, resolver = _deref(schema, refs.resolver(schema))
    except Exception:
        return True, True
    types = types_of(node)
    if types is not None and "array" not in types:
        return False, None
    items = node.get("items", True) if isinstance(node, dict) else True
    return True, _deref(items, resolver)[0]


def misfit(refs: SchemaRefs, produced: Any, wanted: Any, *, appended: bool = False) -> tuple[str, bool] | None:
    """Why what a writer commits (valid against ``produced``; ``None``: text) may break a state
    key's schema ``wanted``, written or (``appended``) added to its list; and whether it always
    does (the types are disjoint) or only may (an example value fails). None when it fits."""
    try:
        node = _deref(wanted, refs.resolver(wanted))[0]
    except Exception:
        return None
    if appended:
        admits_lists, node = _items(refs, wanted)
        if not admits_lists:
            top = types_of(_deref(wanted, refs.resolver(wanted))[0]) or frozenset()
            return f"the key is appended to, and its schema wants {_a(top)}, not a list", True
    wanted_types = types_of(node)
    produced_types = frozenset({"string"}) if produced is None else types_of(produced)
    if wanted_types is not None and produced_types is not None and not (produced_types & wanted_types):
        gives = "text (it declares no output:)" if produced is None else f"{_a(produced_types)} by its output: schema"
        return f"the agent gives {gives}, and the key's schema wants {_a(wanted_types)}", True
    if produced is None:
        return None
    from hct_cli.program.instance import InstanceError, smallest_instance

    try:
        example = smallest_instance(produced)
        _, validator, _ = refs.validator(wanted)
        error = _best(validator, [example] if appended else example)
    except (InstanceError, RegexTimeout):
        return None
    except Exception:  # a ref that does not resolve: reported elsewhere (HCT283)
        return None
    if error is None:
        return None
    return f"a value its output: schema allows breaks the key's schema ({error})", False


def _best(validator: Any, value: Any) -> str | None:
    from hct_cli.program.checks import jsonschema_module

    error = jsonschema_module().exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    return f"{error.message} at {error.json_path}" if error.json_path != "$" else str(error.message)


def _below(size: int) -> str:
    return f"Use an index below {size}." if size else "The list is always empty: drop the index."


def _a(types: frozenset[str]) -> str:
    shown = sorted(types - {"number"} if "integer" in types else types)
    words = [("an " if t[0] in "aeiou" else "a ") + t for t in shown]
    return " or ".join(words)
