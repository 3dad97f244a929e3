"""JSON in and out, strictly: hct never writes NaN or infinity, and never reads them as numbers.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no JSON reader accepts
(SQLite's ``json_extract`` among them: the journal's own queries would fail), and reads them
back without a word. So every JSON hct writes goes through :func:`dumps` and every JSON that
comes from outside (a model's answer, an ``--input``) through :func:`loads`.

Values are checked where they enter (a score's numbers at load, answers here), so :func:`dumps`
meets a non-finite number only from code that computed one; rather than fail the write (and
with it the journal or the run), it writes such a number as ``null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = ["dumps", "encoder", "finite", "loads", "non_finite", "writable_text"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str) -> Any:
    """Parse JSON as the standard defines it: ``NaN``, ``Infinity``, numbers that overflow to
    infinity (``1e400``) and escapes of lone surrogates (``"\\ud800"``, which no UTF-8 text can
    hold) raise :class:`ValueError` (``json.JSONDecodeError`` for bad syntax)."""
    data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):  # pairs are fine: only these can be lone
        try:
            dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"a string holds a lone surrogate U+{ord(exc.object[exc.start]):04X}") from exc
    return data


@cache
def encoder(
    *, indent: int | None = None, ensure_ascii: bool = True, compact: bool = False, sort_keys: bool = False
) -> Callable[[Any], str]:
    """A function writing values as :func:`dumps` does, for a hot path (built once)."""
    # hct's data has no cycles (it comes from JSON and YAML), so the check is not paid for.
    encode = json.JSONEncoder(
        default=str,
        allow_nan=False,
        check_circular=False,
        ensure_ascii=ensure_ascii,
        indent=indent,
        sort_keys=sort_keys,
        separators=(",", ":") if compact else None,
    ).encode

    def write(value: Any) -> str:
        try:
            return encode(value)
        except ValueError:  # a NaN or an infinity somewhere: the rare case pays for the walk
            return encode(finite(value))

    return write


def dumps(
    value: Any, *, indent: int | None = None, ensure_ascii: bool = True, compact: bool = False, sort_keys: bool = False
) -> str:
    """``value`` as valid JSON: what JSON cannot hold becomes text (``default=str``), a
    non-finite number ``null``."""
    return encoder(indent=indent, ensure_ascii=ensure_ascii, compact=compact, sort_keys=sort_keys)(value)


def finite(value: Any) -> Any:
    """``value`` with every non-finite number (in lists, tuples and mappings) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {finite(k) if isinstance(k, float) else k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def non_finite(value: Any, where: str = "") -> str | None:
    """Where in ``value`` a non-finite number stands (``x.items[2]``), or None when there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where or "the value"
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = non_finite(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def writable_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: UTF-16 pairs joined into their character, a lone surrogate
    (a provider's JSON may escape half a pair) replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
