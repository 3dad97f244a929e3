"""Checks of an output: the deterministic kinds (a fermata, a vamp's ``until``, a ``tacet_if``).

Evaluated here, at once: ``regex``, ``contains``, ``min_length``, ``max_length`` and
``json_schema``. ``python``, ``judge`` and ``human`` take time and run in
:mod:`hct_cli.engine.gates`; :func:`needs_gate` says whether a check has such a kind.

A check's regular expressions run under a time limit, and its JSON Schema's ``$ref`` resolve
only where hct allows, through :mod:`hct_cli.program.checks` (the static side, which ``hct
lint`` shares); this module gives an output its :class:`Verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hct_cli.jsonio import dumps, loads
from hct_cli.program.checks import (
    RegexTimeout,
    SchemaRefs,
    clip,
    is_a_container,
    jsonschema_module,
    search,
    time_limit,
)
from hct_cli.score.model import Check

__all__ = ["Verdict", "evaluate", "needs_gate", "schema_verdict", "typed_output", "valid"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def needs_gate(check: Check) -> bool:
    """Whether ``check`` has a kind this module cannot decide alone."""
    return bool(check.python or check.judge or check.human)


def _text(output: Any) -> str:
    return output if isinstance(output, str) else dumps(output, ensure_ascii=False)


def schema_verdict(refs: SchemaRefs, schema: Any, output: Any) -> Verdict:
    """Whether ``output`` (JSON text, or data) is valid against ``schema``."""
    try:
        data = loads(output) if isinstance(output, str) else output
    except ValueError as exc:
        return Verdict(False, f"not valid against the JSON Schema: {exc}")
    return _against(refs, schema, data)


def _against(refs: SchemaRefs, schema: Any, data: Any) -> Verdict:
    _, validator, owned = refs.validator(schema)
    from referencing.exceptions import Unresolvable

    try:
        error = jsonschema_module().exceptions.best_match(validator.iter_errors(data))
    except Unresolvable as exc:
        failure = refs.failure(exc, validator.schema)
        return Verdict(False, clip(f"{failure.message}. {failure.hint}"))
    except RecursionError:
        return Verdict(False, "the JSON Schema refers to itself without end; break the $ref loop")
    if error is None:
        return Verdict(True, "passed")
    at = error.json_path
    if is_a_container(error.schema) and id(error.schema) not in owned:
        # The failing part came from a referenced document: name it, do not quote it.
        where = refs.where(error.schema, None)
        return Verdict(False, clip(f"not valid against the JSON Schema at {at}: fails {error.validator!r} of {where}"))
    suffix = f" (at {at})" if at != "$" else ""
    return Verdict(False, clip(f"not valid against the JSON Schema: {error.message}{suffix}"))


def typed_output(refs: SchemaRefs, schema: Any, output: Any) -> tuple[Verdict, Any]:
    """A typed result (``output:``): its verdict against ``schema``, and the answer as JSON data.

    Text is parsed as JSON (inside a Markdown code fence if the model wrapped it in one); data
    (a simulated answer) is checked as it is. The reason of a failure names the path and the
    message, so the model asked again knows what to fix."""
    data = output
    if isinstance(output, str):
        text = output.strip()
        if text.startswith("```"):
            text = text.split("\n", 1)[1] if "\n" in text else ""
            text = text.rsplit("```", 1)[0]
        try:
            data = loads(text)
        except ValueError as exc:
            return Verdict(False, clip(f"the answer is not JSON: {exc}")), output
    return valid(refs, schema, data), data


def valid(refs: SchemaRefs, schema: Any, data: Any) -> Verdict:
    """``data`` (JSON data, never parsed again: text is a string) against ``schema``; a
    pattern that takes too long fails it."""
    try:
        return _against(refs, schema, data)
    except RegexTimeout as exc:
        return Verdict(False, f"not valid against the JSON Schema: {exc.reason}")


# -- evaluation -------------------------------------------------------------------------------


def evaluate(check: Check, output: Any, refs: SchemaRefs | None = None) -> Verdict:
    """Every deterministic kind given must pass (python, judge and human are not looked at).

    ``refs`` resolves the JSON Schema's ``$ref`` (without it, only refs inside the schema do).
    """
    import regex

    text = _text(output)
    with time_limit():
        try:
            if check.regex is not None and search(check.regex, text) is None:
                return Verdict(False, f"no match for /{check.regex}/")
        except RegexTimeout as exc:
            return Verdict(False, exc.reason)
        except regex.error as exc:
            return Verdict(False, f"the regex /{check.regex}/ does not compile: {exc}")
        for needle in check.contains:
            if needle not in text:
                return Verdict(False, f"does not contain {needle!r}")
        if check.min_length is not None and len(text) < check.min_length:
            return Verdict(False, f"{len(text)} characters, fewer than {check.min_length}")
        if check.max_length is not None and len(text) > check.max_length:
            return Verdict(False, f"{len(text)} characters, more than {check.max_length}")
        if check.json_schema is not None:
            try:
                return schema_verdict(refs or SchemaRefs(None), check.json_schema, output)
            except RegexTimeout as exc:
                return Verdict(False, f"not valid against the JSON Schema: {exc.reason}")
            except regex.error as exc:
                return Verdict(False, f"not valid against the JSON Schema: a pattern does not compile: {exc}")
    return Verdict(True, "passed")
