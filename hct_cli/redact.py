"""Secrets never leave hct in what it writes or shows.

A secret is the value of an environment variable whose name ends in ``_KEY``, ``_TOKEN``,
``_SECRET`` or ``_PASSWORD`` (every provider's API key among them), when the value is 8
characters or more. :class:`Redactor` replaces each occurrence by ``[redacted NAME]``. The engine
redacts every call's result and every event before anyone observes them, so the journal, the
TUI, the plain log, traces and ``--json`` only ever hold the redacted text; the CLI redacts error
messages and the journaled run configuration as well.

An input that held a secret is journaled redacted, with a keyed hash of its real value beside it
(:func:`seal`: HMAC-SHA256 under a random salt, never the value). A resume takes the value back
(:func:`unseal`) from the secret's variable, or from the value given again, and runs on it only
if its hash is the journaled one. A secret given on the command line rather than in the
environment is remembered (:meth:`Redactor.remember`), so it is redacted all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_SUFFIXES", "Redactor", "placeholders", "seal", "unseal"]

SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_MIN_LENGTH = 8
_PLACEHOLDER = re.compile(r"\[redacted ([A-Za-z_][A-Za-z0-9_]*)\]")
#: Secrets this process knows besides its environment's (given again on a resume).
_REMEMBERED: dict[str, str] = {}


class Redactor:
    """Replaces known secret values in text and in JSON-like data."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        found = sorted(((v, n) for n, v in secrets.items() if len(v) >= _MIN_LENGTH), key=lambda p: -len(p[0]))
        self._names = {value: name for value, name in found}
        self._pattern = re.compile("|".join(re.escape(value) for value, _ in found)) if found else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        env = os.environ if environ is None else environ
        found = {name: value for name, value in env.items() if name.upper().endswith(SECRET_SUFFIXES)}
        return cls({**_REMEMBERED, **found})

    @staticmethod
    def remember(name: str, value: str) -> None:
        """Redact ``value`` as ``[redacted NAME]`` in this process from now on."""
        _REMEMBERED[name] = value

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: f"[redacted {self._names[m.group(0)]}]", text)

    def data(self, value: Any) -> Any:
        """``value`` with every string in it redacted (dicts and lists are copied when changed)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def placeholders(value: Any) -> list[str]:
    """The names of the secrets redacted in ``value``, in order of first appearance."""
    names = [m.group(1) for text in _strings(value) for m in _PLACEHOLDER.finditer(text)]
    return list(dict.fromkeys(names))


def seal(value: Any, salt: str | None = None) -> str:
    """``salt:digest``, a keyed hash of ``value`` that recognises it again without keeping it."""
    salt = salt if salt is not None else secrets.token_hex(16)
    text = json.dumps(value, sort_keys=True, default=str)
    return f"{salt}:{hmac.new(bytes.fromhex(salt), text.encode(), hashlib.sha256).hexdigest()}"


def _sealed_by(value: Any, sealed: str) -> bool:
    salt, _, _ = sealed.partition(":")
    try:
        return hmac.compare_digest(seal(value, salt), sealed)
    except ValueError:  # not a salt this module wrote
        return False


def unseal(redacted: Any, sealed: str, environ: Mapping[str, str], given: Any = None) -> Any | None:
    """The real value of an input journaled ``redacted``: ``given`` (the value given again), else
    ``redacted`` with each placeholder filled from ``environ``; None unless it has the hash
    ``sealed``. The secrets it holds are remembered for redaction."""
    if given is None:
        if any(name not in environ for name in placeholders(redacted)):
            return None
        given = _fill(redacted, environ)
    if not _sealed_by(given, sealed):
        return None
    _remember_in(redacted, given)
    return given


def _fill(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: environ[m.group(1)], value)
    if isinstance(value, Mapping):
        return {_fill(k, environ): _fill(v, environ) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, environ) for item in value]
    return value


def _remember_in(redacted: Any, real: Any) -> None:
    """Learn each secret of ``real`` from where ``redacted`` has its placeholder."""
    for template, text in zip(_strings(redacted), _strings(real), strict=False):
        names = [m.group(1) for m in _PLACEHOLDER.finditer(template)]
        if not names:
            continue
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else "(.+?)" for i, part in enumerate(_PLACEHOLDER.split(template))
        )
        match = re.fullmatch(pattern, text, re.DOTALL)
        if match is not None:
            for name, secret in zip(names, match.groups(), strict=True):
                Redactor.remember(name, secret)
