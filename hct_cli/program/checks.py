"""The static side of a score's checks: its regular expressions and its JSON Schemas' ``$ref``.

A score is data from anywhere, so two things are bounded here:

* every regular expression of a score (``regex``, and a JSON Schema's ``pattern`` and
  ``patternProperties``) compiles and runs through this module: :func:`regex_problem` says
  whether one compiles, :func:`search` runs it with the ``regex`` package and a time limit of
  :data:`REGEX_TIMEOUT_S` for one evaluation (:func:`time_limit`): a pattern that backtracks for
  ever fails its check instead of hanging the run (and deferring Ctrl-C with it);
* a JSON Schema's ``$ref`` resolves through :class:`SchemaRefs`: inside the schema, to the
  metaschemas jsonschema bundles, or to a JSON file beside the score under the rules of
  ``--input @file`` (no escape without ``--allow-path``). Nothing is ever fetched: a ref with a
  scheme or a host is refused, and so is a file outside the score's directory, before it is
  opened. Messages name refs and paths, never the content of a file.

:meth:`SchemaRefs.problems` finds the problems of a schema without an output, for ``hct lint``
(HCT281-283) and for ``hct perform`` before anything runs (:meth:`SchemaRefs.preload`). What
an output's verdict is, is the engine's (:mod:`hct_cli.engine.checks`).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from hct_cli.errors import CheckError, InputError
from hct_cli.jsonio import loads
from hct_cli.score.findings import Severity
from hct_cli.score.model import Check

if TYPE_CHECKING:
    import regex
    from referencing import Resource

__all__ = [
    "REGEX_TIMEOUT_S",
    "RegexTimeout",
    "SchemaProblem",
    "SchemaRefs",
    "clip",
    "is_a_container",
    "jsonschema_module",
    "regex_problem",
    "search",
    "time_limit",
]

#: Wall-clock seconds all the regular expressions of one check evaluation may take together.
#: An honest pattern decides in microseconds; one that backtracks exponentially never does.
REGEX_TIMEOUT_S = 1.0

_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
#: Keywords whose value is data, not a schema: a "$ref" in there is not a reference.
_DATA = frozenset({"const", "enum", "default", "examples"})
#: Keywords whose value maps names (properties, patterns, definitions) to schemas.
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_MAX_REASON = 400


def clip(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


# -- regular expressions ----------------------------------------------------------------------


class RegexTimeout(Exception):
    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern

    @property
    def reason(self) -> str:
        return (
            f"the regex /{self.pattern}/ took longer than {REGEX_TIMEOUT_S:g} s on this output and was stopped; "
            "simplify the pattern (nested repetition such as (a|a)+ backtracks exponentially)"
        )


#: When the evaluation under way must be done (time.monotonic); None outside an evaluation.
_deadline: ContextVar[float | None] = ContextVar("hct_regex_deadline", default=None)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    import regex

    return regex.compile(pattern)


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` does not compile, or None when it does."""
    import regex

    try:
        _compiled(pattern)
    except regex.error as exc:
        return str(exc)
    return None


def search(pattern: str, text: str) -> regex.Match[str] | None:
    """The first match of ``pattern`` in ``text``, within the time left to the evaluation under
    way (:data:`REGEX_TIMEOUT_S` when none is); raises ``RegexTimeout`` past it.

    The ``regex`` package checks its timeout inside the match loop, so the call returns in time
    and a signal (Ctrl-C, SIGTERM) waits at most that long; it releases the GIL meanwhile.
    """
    compiled = _compiled(pattern)
    deadline = _deadline.get()
    left = REGEX_TIMEOUT_S if deadline is None else deadline - time.monotonic()
    if left <= 0:
        raise RegexTimeout(pattern)
    try:
        return compiled.search(text, timeout=left, concurrent=True)
    except TimeoutError as exc:
        raise RegexTimeout(pattern) from exc


@contextmanager
def time_limit() -> Iterator[None]:
    token = _deadline.set(time.monotonic() + REGEX_TIMEOUT_S)
    try:
        yield
    finally:
        _deadline.reset(token)


class _TimedRe:
    """What jsonschema's keyword modules see as ``re``: while a check is evaluated, ``search``
    (all they call, for ``pattern``, ``patternProperties`` and the keywords that look at
    patterns to decide which properties are left) goes through :func:`search`; otherwise, and
    for everything else, it is ``re`` itself. jsonschema offers no hook for its regex engine,
    and these keywords are spread over several modules and dialects, hence this one seam."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def search(pattern: str, string: str, flags: int = 0) -> Any:
        if _deadline.get() is None or flags:
            return re.search(pattern, string, flags)
        return search(pattern, string)


@functools.cache
def jsonschema_module() -> Any:
    """jsonschema, with its keyword modules' regexes under the time limit (imported lazily:
    only a score with a ``json_schema`` check needs it)."""
    import jsonschema
    import jsonschema._keywords
    import jsonschema._legacy_keywords
    import jsonschema._utils

    timed = _TimedRe()
    for module in (jsonschema._keywords, jsonschema._legacy_keywords, jsonschema._utils):
        if getattr(module, "re", None) is re:
            module.re = timed
    return jsonschema


# -- JSON Schema references -------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaProblem:
    """A problem of one ``json_schema``; ``path`` leads from the schema to the offending node
    (its key when ``key``)."""

    path: tuple[str | int, ...]
    code: str
    severity: Severity
    message: str
    hint: str
    key: bool = False


class _Refused(Exception):
    """A retrieval hct refuses; ``outside`` when only ``--allow-path`` stands in the way."""

    def __init__(self, message: str, hint: str, *, outside: bool = False, verb: str = "is refused") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.outside = outside
        self.verb = verb


@dataclass(frozen=True)
class _Failure:
    """Why a ref does not resolve, in words that quote no document."""

    message: str
    hint: str
    outside: bool = False


_NO_FETCH_HINT = (
    "Copy the schema into the check (under $defs, referred to as #/$defs/NAME) or into a JSON file "
    "beside the score, referred to by a relative path."
)


class SchemaRefs:
    """Resolves the ``$ref`` of a score's JSON Schemas: inside the schema, to a bundled
    metaschema, or to a JSON file under ``score_dir`` (anywhere with ``allow_path``); never the
    network. Files are read once, when first referred to."""

    def __init__(self, score_dir: Path | None, *, allow_path: bool = False) -> None:
        self.score_dir = score_dir.resolve() if score_dir is not None else None
        self.allow_path = allow_path
        self._files: dict[str, Resource[Any]] = {}
        self._validators: dict[int, tuple[Any, Any, frozenset[int]]] = {}

    @property
    def _base(self) -> str:
        """The URI relative refs resolve against: the score's directory, so ``..`` means what it
        says on disk (a relative base would quietly drop a ``..`` too many)."""
        return self.score_dir.as_uri() + "/" if self.score_dir is not None else ""

    # -- retrieval ---------------------------------------------------------------------------

    def _display(self, target: Path) -> str:
        if self.score_dir is not None and target.is_relative_to(self.score_dir):
            return str(target.relative_to(self.score_dir))
        return str(target)

    def _path_of(self, uri: str) -> Path:
        """The file ``uri`` names: relative to the score's directory, or absolute (a file URL)."""
        parts = urlsplit(uri)
        if parts.query or parts.netloc not in ("", "localhost") or parts.scheme not in ("", "file"):
            raise _Refused(f"it names {uri}, and hct never fetches a schema", _NO_FETCH_HINT)
        if self.score_dir is None:
            raise _Refused(
                "it names a file, and this check has no score directory to find it in",
                "Perform the score from its file, with the schema file beside it.",
            )
        if parts.scheme == "file":
            path = Path(unquote(parts.path))  # a POSIX file URL's path, as url2pathname gives it
            return path.relative_to(self.score_dir) if path.is_relative_to(self.score_dir) else path
        return Path(unquote(parts.path))

    def _retrieve(self, uri: str) -> Resource[Any]:
        """The JSON file ``uri`` names, confined as input files are (nothing outside the score's
        directory is opened without ``allow_path``); raises ``_Refused``."""
        from referencing import Resource
        from referencing.jsonschema import DRAFT202012

        from hct_cli.program.inputs import confined_file

        found = self._files.get(uri)
        if found is not None:
            return found
        path = self._path_of(uri)
        assert self.score_dir is not None
        try:
            target = confined_file(
                path, self.score_dir, allow_path=self.allow_path, what="the schema file", keep="schema files"
            )
        except InputError as exc:
            outside = not self.allow_path and not (self.score_dir / path).resolve().is_relative_to(self.score_dir)
            verb = "is refused" if outside else "cannot be resolved"
            raise _Refused(exc.message, exc.hint, outside=outside, verb=verb) from None
        shown = self._display(target)
        try:
            data = loads(target.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise _Refused(
                f"the schema file {shown} cannot be read ({type(exc).__name__})",
                "Check the file.",
                verb="cannot be resolved",
            ) from None
        except json.JSONDecodeError as exc:
            # The position only: the decoder's message never quotes the document, and neither may we.
            raise _Refused(
                f"the schema file {shown} is not JSON (line {exc.lineno}, column {exc.colno})",
                "A referenced schema is a JSON file.",
                verb="cannot be resolved",
            ) from None
        resource: Resource[Any] = Resource.from_contents(data, default_specification=DRAFT202012)
        self._files[uri] = resource
        return resource

    def _registry(self) -> Any:
        from referencing import Registry
        from referencing.jsonschema import SchemaRegistry

        registry: SchemaRegistry = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        return registry

    def _rooted(self, schema: Any, validator_class: Any) -> Any:
        """``schema`` with the score's directory as its base URI, unless it names its own."""
        if not isinstance(schema, dict) or not self._base:
            return schema
        key = "id" if validator_class.__name__ in ("Draft3Validator", "Draft4Validator") else "$id"
        if key in schema:
            return schema
        return {**schema, key: self._base}

    def where(self, part: Any, root: Any) -> str:
        """Which document ``part`` (a node of a schema) belongs to, for a message."""
        if part is root:
            return "the schema"
        for uri, resource in self._files.items():
            if resource.contents is part or _holds(resource.contents, part):
                return self._display((self.score_dir or Path()) / self._path_of(uri))
        return "the referenced schema"

    def failure(self, exc: BaseException, root: Any) -> _Failure:
        """Why a ref did not resolve. referencing's own messages quote the whole document a
        pointer missed, so they are never shown."""
        from referencing.exceptions import NoSuchAnchor, PointerToNowhere

        wrapped = getattr(exc, "_wrapped", exc)
        ref = getattr(wrapped, "ref", "?")
        chain: list[BaseException] = []
        cause: BaseException | None = wrapped
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        refused = next((c for c in chain if isinstance(c, _Refused)), None)
        if refused is not None:
            return _Failure(f"$ref {ref!r} {refused.verb}: {refused.message}", refused.hint, refused.outside)
        if isinstance(wrapped, PointerToNowhere):
            return _Failure(
                f"$ref cannot be resolved: {wrapped.ref} does not exist in {self.where(wrapped.resource.contents, root)}",
                "Point the ref at an existing part of the schema (#/$defs/NAME).",
            )
        if isinstance(wrapped, NoSuchAnchor):
            where = self.where(wrapped.resource.contents, root)
            return _Failure(
                f"$ref {ref!r} cannot be resolved: anchor {wrapped.anchor!r} does not exist in {where}",
                "Declare the $anchor, or refer to #/$defs/NAME.",
            )
        return _Failure(f"$ref {ref!r} cannot be resolved", "Refer to #/$defs/NAME or to a JSON file beside the score.")

    # -- validation --------------------------------------------------------------------------

    def validator(self, schema: Any) -> tuple[Any, Any, frozenset[int]]:
        """The validator for ``schema``, the schema it validates with, and the ids of the
        containers the score itself wrote (the ones a message may quote)."""
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached
        jsonschema = jsonschema_module()
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        rooted = self._rooted(schema, validator_class)
        validator = validator_class(rooted, registry=self._registry())
        owned = frozenset(_containers(schema)) | {id(rooted)}
        self._validators[id(schema)] = (schema, validator, owned)
        return schema, validator, owned

    def resolver(self, schema: Any) -> Any:
        """A ``referencing`` resolver for ``schema``'s refs, as its validator resolves them
        (``lookup`` raises ``referencing.exceptions.Unresolvable`` for one that does not)."""
        from referencing import Resource
        from referencing.jsonschema import DRAFT202012

        jsonschema = jsonschema_module()
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        rooted = self._rooted(schema, validator_class)
        root = Resource.from_contents(rooted, default_specification=DRAFT202012)
        registry = jsonschema.validators.SPECIFICATIONS.combine(self._registry())
        return registry.with_resource(root.id() or "", root).resolver(base_uri=root.id() or "")

    # -- static problems (lint, and perform before anything runs) ------------------------------

    def problems(self, schema: Any) -> Iterator[SchemaProblem]:
        """Every problem of ``schema`` found without an output: an unknown ``$schema``, a
        schema its metaschema rejects, a pattern that does not compile, a ref that is refused
        or does not resolve."""
        jsonschema = jsonschema_module()
        validators = jsonschema.validators
        if isinstance(schema, dict) and "$schema" in schema and schema["$schema"] not in validators._META_SCHEMAS:
            known = ", ".join(sorted(validators._META_SCHEMAS))
            yield SchemaProblem(
                ("$schema",),
                "HCT282",
                Severity.ERROR,
                f"unknown JSON Schema dialect {schema['$schema']!r}",
                f"Use one of: {known}; or leave $schema out (2020-12).",
            )
            return
        validator_class = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        yield from self._against_metaschema(schema, validator_class)
        for path, failure in self._ref_failures(schema, validator_class):
            yield SchemaProblem(
                path,
                "HCT283",
                Severity.WARNING if failure.outside else Severity.ERROR,
                failure.message,
                "hct perform refuses it unless --allow-path is given; keep schema files beside the score."
                if failure.outside
                else failure.hint,
            )

    @staticmethod
    def _against_metaschema(schema: Any, validator_class: Any) -> Iterator[SchemaProblem]:
        jsonschema = jsonschema_module()
        import regex

        formats = jsonschema.FormatChecker(formats=())
        formats.checks("regex", raises=regex.error)(_compiles)
        meta = validator_class(validator_class.META_SCHEMA, format_checker=formats)
        seen: set[tuple[str | int, ...]] = set()
        for error in sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path]):
            path = tuple(error.absolute_path)
            if error.validator == "format" and error.validator_value == "regex":
                named = _node(schema, path)
                key = isinstance(named, dict) and error.instance in named
                where = (*path, error.instance) if key else path
                if where in seen:
                    continue
                seen.add(where)
                yield SchemaProblem(
                    where,
                    "HCT281",
                    Severity.ERROR,
                    f"pattern {error.instance!r} does not compile: {error.cause}",
                    "Fix the pattern (Python regular expression syntax); escape a literal ( [ { with a backslash.",
                    key=key,
                )
                continue
            if path in seen:
                continue
            seen.add(path)
            yield SchemaProblem(
                path,
                "HCT282",
                Severity.ERROR,
                clip(f"not a valid JSON Schema: {error.message}"),
                "Fix the schema; see https://json-schema.org/understanding-json-schema/ for its keywords.",
            )

    def _ref_failures(self, schema: Any, validator_class: Any) -> Iterator[tuple[tuple[str | int, ...], _Failure]]:
        """Every ref of ``schema`` (and of the files it reaches) that is refused or does not
        resolve, with where the chain starts in ``schema``."""
        from referencing import Resource
        from referencing.exceptions import Unresolvable
        from referencing.jsonschema import DRAFT202012

        rooted = self._rooted(schema, validator_class)
        root = Resource.from_contents(rooted, default_specification=DRAFT202012)
        root_uri = root.id() or ""
        registry = jsonschema_module().validators.SPECIFICATIONS.combine(self._registry())
        registry = registry.with_resource(root_uri, root).crawl()
        visited: set[str] = set()
        # (where in the score's schema the chain started, the document walked, its base URI)
        todo: list[tuple[tuple[str | int, ...] | None, Any, str]] = [(None, rooted, root_uri)]
        while todo:
            origin, node, base = todo.pop()
            for path, ref_base, ref in _refs_in(node, base):
                at = origin if origin is not None else path
                if origin is None and (urlsplit(ref).scheme == "file" or ref.startswith("//")):
                    # Even a file URL into the score's directory: the rule is "no scheme", by the letter.
                    yield (
                        at,
                        _Failure(
                            f"$ref {ref!r} is refused: it names a file by URL or a host, and hct never fetches a schema",
                            _NO_FETCH_HINT,
                        ),
                    )
                    continue
                try:
                    registry.resolver(base_uri=ref_base).lookup(ref)
                except Unresolvable as exc:
                    yield at, self.failure(exc, rooted)
                    continue
                document = urljoin(ref_base, ref).partition("#")[0]
                if document in self._files and document not in visited:
                    visited.add(document)
                    todo.append((at, self._files[document].contents, document))

    def preload(self, checks: Iterable[Check]) -> None:
        """Read every file the checks' schemas refer to, before a run; raises CheckError for the
        first ref that is refused or does not resolve."""
        jsonschema = jsonschema_module()
        for check in checks:
            if check.json_schema is None:
                continue
            validator_class = jsonschema.validators.validator_for(
                check.json_schema, default=jsonschema.Draft202012Validator
            )
            for _, failure in self._ref_failures(check.json_schema, validator_class):
                raise CheckError(failure.message, hint=failure.hint)


def _compiles(instance: Any) -> bool:
    return not isinstance(instance, str) or _compiled(instance) is not None


def is_a_container(value: Any) -> bool:
    return isinstance(value, dict | list)


def _containers(value: Any) -> Iterator[int]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield id(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            yield id(node)
            stack.extend(node)


def _holds(document: Any, part: Any) -> bool:
    return id(part) in set(_containers(document))


def _node(schema: Any, path: tuple[str | int, ...]) -> Any:
    node = schema
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _refs_in(schema: Any, base: str) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Every ``$ref`` (and dynamic ref) in ``schema``: where it sits, the base URI it resolves
    against (moved by each ``$id`` on the way) and the ref. Values of data keywords (``const``,
    ``enum``...) are not schemas and are skipped."""
    todo: list[tuple[tuple[str | int, ...], Any, str, bool]] = [((), schema, base, False)]
    while todo:
        path, node, here, named = todo.pop()
        if isinstance(node, list):
            todo.extend(((*path, i), item, here, False) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        if named:  # names -> schemas: every value is a schema
            todo.extend(((*path, name), value, here, False) for name, value in node.items())
            continue
        own = node.get("$id")
        if isinstance(own, str):
            here = urljoin(here, own)
        for keyword in _REFS:
            ref = node.get(keyword)
            if isinstance(ref, str):
                yield (*path, keyword), here, ref
        for keyword, value in node.items():
            if keyword not in _DATA and keyword not in _REFS:
                todo.append(((*path, keyword), value, here, keyword in _NAMED))
