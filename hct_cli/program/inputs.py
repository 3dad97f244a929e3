"""Resolve a score's inputs from defaults, default files and ``--input`` values."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hct_cli.errors import InputError
from hct_cli.jsonio import loads
from hct_cli.score.model import InputSpec, Score

__all__ = ["MAX_INPUT_BYTES", "Ask", "ask_on_terminal", "confined_file", "parse_input_args", "resolve_inputs"]

MAX_INPUT_BYTES = 4 * 1024 * 1024

#: Asks a person for the value of an input the command line did not give (``NAME=@file`` allowed).
Ask = Callable[[InputSpec], str]


def parse_input_args(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", "f=@path"]`` -> ``{"k": "v", "f": "@path"}``."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InputError(
                f"--input {pair!r} is not NAME=VALUE", hint="Write --input diff=@change.diff or --input q=text."
            )
        parsed[name.strip()] = value
    return parsed


def confined_file(path: Path, base: Path, *, allow_path: bool, what: str, keep: str = "input files") -> Path:
    """The regular file ``path`` names relative to ``base``, symlinks followed, refused (InputError)
    when it lies outside ``base`` without ``allow_path``, is no regular file or is too large.

    Nothing is opened: a refused file is never read. ``keep`` names such files in the hint.
    """
    target = (base / path).resolve()
    root = base.resolve()
    if not allow_path and os.path.commonpath([root, target]) != str(root):
        raise InputError(
            f"{what} {path} lies outside {root}",
            hint=f"Keep {keep} inside that directory, or pass --allow-path.",
        )
    if not target.is_file():
        raise InputError(f"{what} {path} is not a regular file", hint="Check the path.")
    if target.stat().st_size > MAX_INPUT_BYTES:
        raise InputError(f"{what} {path} is larger than {MAX_INPUT_BYTES:,} bytes", hint="Pass a smaller file.")
    return target


def _read(path: Path, base: Path, *, allow_path: bool, what: str) -> str:
    target = confined_file(path, base, allow_path=allow_path, what=what)
    try:
        return target.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}", hint="Inputs are UTF-8 text files.") from exc


def _check_text(name: str, raw: str) -> None:
    """A command-line value must be text: Python hands over bytes of argv that are not UTF-8 as
    lone surrogates (U+DC80-U+DCFF), which no prompt, digest or journal can encode."""
    if raw.isascii():
        return
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(raw[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise InputError(
            f"--input {name} is not UTF-8 text: {what} at character {exc.start + 1}",
            hint=f"Pass UTF-8 text, or the text in a UTF-8 file as --input {name}=@FILE.",
        ) from exc


def _convert(spec: InputSpec, raw: Any) -> Any:
    if not isinstance(raw, str) or spec.type == "text":
        return raw
    try:
        if spec.type == "json":
            return loads(raw)
        if spec.type == "integer":
            return int(raw)
        if spec.type == "number":
            number = float(raw)
            if not math.isfinite(number):  # JSON, where every input ends up, has no NaN or infinity
                raise ValueError(raw)
            return number
        lowered = raw.strip().lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ValueError(raw)
    except ValueError as exc:
        raise InputError(
            f"input {spec.name!r} must be {spec.type}, got {raw[:40]!r}",
            hint=f"Pass --input {spec.name}=<{spec.type}>.",
        ) from exc


def ask_on_terminal(spec: InputSpec) -> str:
    """Ask for ``spec``'s value on stderr, read the answer from stdin (both a terminal)."""
    about = f" ({spec.description})" if spec.description else ""
    kind = "" if spec.type == "text" else f" [{spec.type}]"
    sys.stderr.write(f"input {spec.name}{about}{kind}, or @FILE: ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise InputError(
            f"no value for input {spec.name!r}: the terminal closed",
            hint=f"Pass --input {spec.name}=VALUE (or {spec.name}=@FILE).",
        )
    return line.rstrip("\r\n")


def resolve_inputs(
    score: Score,
    given: Mapping[str, str],
    *,
    cwd: Path | None = None,
    allow_path: bool = False,
    ask: Ask | None = None,
    missing_hint: str = "",
) -> dict[str, Any]:
    """The value of every declared input; ``given`` comes from ``--input``.

    An input with no default (required or not) must be given: ``ask`` is asked for each one
    missing (a person at a terminal); without ``ask`` they are all named in one error, before
    anything runs (``missing_hint`` replaces the error's hint where there is no ``--input``). An
    empty value is never made up for one.
    """
    unknown = sorted(set(given) - set(score.inputs))
    if unknown:
        raise InputError(
            f"unknown input {unknown[0]!r}",
            hint=f"This score's inputs: {', '.join(score.inputs) or 'none'}.",
        )
    unset = [
        name
        for name, spec in score.inputs.items()
        if name not in given and spec.default_file is None and not spec.has_default
    ]
    if unset and ask is None:
        flags = " ".join(f"--input {name}=VALUE" for name in unset)
        raise InputError(
            f"input{'s' if len(unset) > 1 else ''} {', '.join(map(repr, unset))} "
            f"{'have' if len(unset) > 1 else 'has'} no value and no default",
            hint=missing_hint
            or f"Pass {flags} (or NAME=@FILE), or give the score a default: for {'them' if len(unset) > 1 else 'it'}.",
        )
    values: dict[str, Any] = {}
    here = cwd or Path.cwd()
    for name, spec in score.inputs.items():
        if name in given or name in unset:
            if name in given:
                raw: Any = given[name]
            else:
                assert ask is not None  # an unset input without someone to ask was refused above
                raw = ask(spec)
            if raw.startswith("@"):
                raw = _read(Path(raw[1:]), here, allow_path=allow_path, what=f"--input {name}")
            else:
                _check_text(name, raw)
        elif spec.default_file is not None:
            raw = _read(
                Path(spec.default_file), score.base_dir, allow_path=allow_path, what=f"default_file of {name!r}"
            )
        else:
            raw = spec.default
        values[name] = _convert(spec, raw)
    return values
