"""Checks of an output: the deterministic kinds (a fermata, a vamp's ``until``, a ``tacet_if``).

Evaluated here, at once: ``regex``, ``contains``, ``min_length``, ``max_length`` and
``json_schema``. ``python``, ``judge`` and ``human`` take time and run in
:mod:`hct_cli.engine.gates`; :func:`needs_gate` says whether a check has such a kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hct_cli.jsonio import dumps, loads
from hct_cli.score.model import Check

__all__ = ["Verdict", "evaluate", "needs_gate"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def needs_gate(check: Check) -> bool:
    """Whether ``check`` has a kind this module cannot decide alone."""
    return bool(check.python or check.judge or check.human)


def _text(output: Any) -> str:
    return output if isinstance(output, str) else dumps(output, ensure_ascii=False)


def evaluate(check: Check, output: Any) -> Verdict:
    """Every deterministic kind given must pass (python, judge and human are not looked at)."""
    text = _text(output)
    if check.regex is not None and re.search(check.regex, text) is None:
        return Verdict(False, f"no match for /{check.regex}/")
    for needle in check.contains:
        if needle not in text:
            return Verdict(False, f"does not contain {needle!r}")
    if check.min_length is not None and len(text) < check.min_length:
        return Verdict(False, f"{len(text)} characters, fewer than {check.min_length}")
    if check.max_length is not None and len(text) > check.max_length:
        return Verdict(False, f"{len(text)} characters, more than {check.max_length}")
    if check.json_schema is not None:
        import jsonschema

        try:
            data = loads(output) if isinstance(output, str) else output
            jsonschema.validate(data, check.json_schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            return Verdict(False, f"not valid against the JSON Schema: {str(exc).splitlines()[0]}")
    return Verdict(True, "passed")
