"""Deterministic checks: every regex of a score runs under a time limit, and a JSON Schema's
``$ref`` reaches only the score itself or files beside it, never the network.

A guard records every socket connection and every file opened while a check is evaluated, so the
tests see what is attempted, not only what the verdict says.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hct_cli.engine.checks import evaluate
from hct_cli.errors import CheckError
from hct_cli.program.checks import REGEX_TIMEOUT_S, SchemaRefs
from hct_cli.score.model import Check

pytestmark = pytest.mark.timeout(60)

#: Exponential even for the ``regex`` package, which is linear on ``^(a+)+$``.
BACKTRACKS = r"^(a|a)+$"
NO_MATCH = "a" * 40 + "!"
OUTSIDE = "TOP-SECRET-OUTSIDE-THE-SCORE"
BESIDE = "CONTENT-OF-A-FILE-BESIDE-THE-SCORE"


class Guard:
    """What a check tried to reach: socket connections and the files it opened."""

    def __init__(self) -> None:
        self.connections: list[Any] = []
        self.opened: list[str] = []

    def read(self, path: Path) -> bool:
        return any(Path(p).resolve() == path.resolve() for p in self.opened if isinstance(p, str))


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    seen = Guard()

    def refuse_connect(_self: socket.socket, address: Any) -> None:
        seen.connections.append(address)
        raise AssertionError(f"a check tried to connect to {address!r}")

    def refuse_lookup(host: Any, *_args: Any, **_kwargs: Any) -> Any:
        seen.connections.append(host)
        raise AssertionError(f"a check tried to look up {host!r}")

    real_open = builtins.open
    real_os_open = os.open

    def recording_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        seen.opened.append(os.fspath(file) if isinstance(file, str | os.PathLike) else str(file))
        return real_open(file, *args, **kwargs)

    def recording_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        seen.opened.append(os.fspath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket, "create_connection", refuse_lookup)
    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(os, "open", recording_os_open)
    yield seen


@pytest.fixture
def score_dir(tmp_path: Path) -> Path:
    """A score's directory, with a schema file beside it and a secret one level up."""
    here = tmp_path / "score"
    (here / "schemas").mkdir(parents=True)
    (here / "defs.json").write_text(
        json.dumps({"$defs": {"count": {"type": "integer", "minimum": 0}}, "enum": [BESIDE]}), encoding="utf-8"
    )
    (here / "schemas" / "answer.json").write_text(
        json.dumps({"type": "object", "required": ["n"], "properties": {"n": {"$ref": "../defs.json#/$defs/count"}}}),
        encoding="utf-8",
    )
    (here / "notes.txt").write_text(BESIDE + "\n", encoding="utf-8")
    (tmp_path / "secret.json").write_text(json.dumps({"enum": [OUTSIDE]}), encoding="utf-8")
    (tmp_path / "secret.txt").write_text(OUTSIDE + "\n", encoding="utf-8")
    return here


def _ref(ref: str, **extra: Any) -> Check:
    return Check(json_schema={"$ref": ref, **extra})


# -- regexes under a time limit -----------------------------------------------------------------


def test_a_regex_that_backtracks_for_ever_fails_the_check_with_a_clear_reason() -> None:
    verdict = evaluate(Check(regex=BACKTRACKS), NO_MATCH)
    assert not verdict.passed
    assert f"/{BACKTRACKS}/" in verdict.reason
    assert f"took longer than {REGEX_TIMEOUT_S:g} s" in verdict.reason
    assert "simplify the pattern" in verdict.reason


def test_nested_repetition_that_stalls_python_re_is_decided() -> None:
    verdict = evaluate(Check(regex=r"^(a+)+$"), "a" * 32 + "!")
    assert (verdict.passed, verdict.reason) == (False, "no match for /^(a+)+$/")
    assert evaluate(Check(regex=r"^(a+)+$"), "a" * 32).passed


def test_an_honest_regex_matches_as_before() -> None:
    assert evaluate(Check(regex=r"^\d+$"), "42").passed
    assert evaluate(Check(regex=r"(?i)\bDONE\b"), "all done now").passed
    assert not evaluate(Check(regex=r"^\d+$"), "forty-two").passed


@pytest.mark.parametrize(
    ("schema", "output"),
    [
        ({"type": "string", "pattern": BACKTRACKS}, json.dumps(NO_MATCH)),
        ({"type": "object", "patternProperties": {BACKTRACKS: {"type": "integer"}}}, json.dumps({NO_MATCH: 1})),
        (
            {"type": "object", "patternProperties": {BACKTRACKS: {}}, "additionalProperties": False},
            json.dumps({NO_MATCH: 1}),
        ),
        (
            {"type": "object", "patternProperties": {BACKTRACKS: {}}, "unevaluatedProperties": False},
            json.dumps({NO_MATCH: 1}),
        ),
    ],
    ids=["pattern", "patternProperties", "additionalProperties", "unevaluatedProperties"],
)
def test_a_schema_pattern_runs_under_the_same_time_limit(schema: dict[str, Any], output: str) -> None:
    verdict = evaluate(Check(json_schema=schema), output)
    assert not verdict.passed
    assert f"took longer than {REGEX_TIMEOUT_S:g} s" in verdict.reason, verdict.reason


def test_schema_patterns_still_decide_honest_outputs() -> None:
    check = Check(json_schema={"type": "string", "pattern": r"^v\d+$"})
    assert evaluate(check, '"v12"').passed
    verdict = evaluate(check, '"twelve"')
    assert not verdict.passed and "does not match" in verdict.reason


# -- $ref: inside the score, beside it, nowhere else ---------------------------------------------


def test_a_ref_inside_the_schema_resolves() -> None:
    check = Check(json_schema={"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"})
    assert evaluate(check, "3").passed
    verdict = evaluate(check, '"three"')
    assert not verdict.passed and "is not of type 'integer'" in verdict.reason


def test_a_registered_metaschema_resolves_without_the_network(guard: Guard) -> None:
    check = _ref("https://json-schema.org/draft/2020-12/schema")
    assert evaluate(check, json.dumps({"type": "string"})).passed
    assert not evaluate(check, json.dumps({"type": 12})).passed
    assert guard.connections == []


def test_a_file_beside_the_score_resolves_with_its_own_relative_refs(score_dir: Path, guard: Guard) -> None:
    refs = SchemaRefs(score_dir)
    check = _ref("schemas/answer.json")
    assert evaluate(check, '{"n": 3}', refs).passed
    verdict = evaluate(check, '{"n": -1}', refs)
    assert not verdict.passed and "at $.n" in verdict.reason
    assert guard.read(score_dir / "defs.json") and guard.connections == []


def test_a_failure_in_a_referenced_file_does_not_quote_the_file(score_dir: Path) -> None:
    verdict = evaluate(_ref("defs.json"), '"anything"', SchemaRefs(score_dir))
    assert not verdict.passed
    assert "'enum'" in verdict.reason and "defs.json" in verdict.reason
    assert BESIDE not in verdict.reason


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("http://127.0.0.1:9/schema.json", "hct never fetches a schema"),
        ("https://example.com/schema.json", "hct never fetches a schema"),
        ("//example.com/schema.json", "hct never fetches a schema"),
        ("urn:example:not-registered", "hct never fetches a schema"),
    ],
)
def test_a_ref_with_a_scheme_is_refused_without_any_network_request(
    ref: str, says: str, score_dir: Path, guard: Guard
) -> None:
    verdict = evaluate(_ref(ref), '"x"', SchemaRefs(score_dir))
    assert not verdict.passed
    assert ref in verdict.reason and says in verdict.reason
    assert guard.connections == []


def test_an_id_with_a_scheme_does_not_turn_a_relative_ref_into_a_fetch(score_dir: Path, guard: Guard) -> None:
    check = Check(json_schema={"$id": "http://127.0.0.1:9/root.json", "$ref": "defs.json"})
    verdict = evaluate(check, '"x"', SchemaRefs(score_dir))
    assert not verdict.passed and "hct never fetches a schema" in verdict.reason
    assert guard.connections == [] and not guard.read(score_dir / "defs.json")


@pytest.mark.parametrize("which", ["file_url", "dotdot", "absolute", "symlink"])
def test_a_file_outside_the_score_s_directory_is_never_read(which: str, score_dir: Path, guard: Guard) -> None:
    secret = score_dir.parent / "secret.json"
    ref = {
        "file_url": secret.as_uri(),
        "dotdot": "../secret.json",
        "absolute": str(secret),
        "symlink": "link.json",
    }[which]
    (score_dir / "link.json").symlink_to(secret)
    guard.opened.clear()
    verdict = evaluate(_ref(ref), json.dumps(OUTSIDE), SchemaRefs(score_dir))
    assert not verdict.passed
    assert OUTSIDE not in verdict.reason
    assert not guard.read(secret) and guard.connections == []
    if which != "file_url":
        assert "lies outside" in verdict.reason and "--allow-path" in verdict.reason


def test_allow_path_lets_a_ref_leave_the_score_s_directory(score_dir: Path) -> None:
    refs = SchemaRefs(score_dir, allow_path=True)
    assert evaluate(_ref("../secret.json"), json.dumps(OUTSIDE), refs).passed
    verdict = evaluate(_ref("../secret.json"), '"other"', refs)
    assert not verdict.passed and OUTSIDE not in verdict.reason


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("defs.json#/$defs/nope", "/$defs/nope does not exist in defs.json"),
        ("#/$defs/nope", "/$defs/nope does not exist in the schema"),
        ("missing.json", "missing.json is not a regular file"),
        ("notes.txt", "notes.txt is not JSON"),
        ("schemas", "schemas is not a regular file"),
    ],
)
def test_an_unresolvable_ref_fails_with_a_reason_that_quotes_no_content(ref: str, says: str, score_dir: Path) -> None:
    verdict = evaluate(_ref(ref), "1", SchemaRefs(score_dir))
    assert not verdict.passed
    assert says in verdict.reason, verdict.reason
    assert BESIDE not in verdict.reason and "{" not in verdict.reason.partition(":")[2]


def test_without_a_score_directory_only_internal_refs_resolve(guard: Guard) -> None:
    verdict = evaluate(_ref("defs.json"), "1")
    assert not verdict.passed and "defs.json" in verdict.reason
    assert not guard.read(Path.cwd() / "defs.json")


def test_preloading_refuses_every_bad_ref_with_a_check_error(score_dir: Path, guard: Guard) -> None:
    refs = SchemaRefs(score_dir)
    refs.preload([_ref("schemas/answer.json"), Check(regex="x")])
    with pytest.raises(CheckError) as caught:
        refs.preload([_ref("../secret.json")])
    assert "lies outside" in caught.value.message and "--allow-path" in caught.value.hint
    with pytest.raises(CheckError) as caught:
        refs.preload([Check(json_schema={"properties": {"a": {"$ref": "http://127.0.0.1:9/x.json"}}})])
    assert "never fetches" in caught.value.message
    assert guard.connections == [] and not guard.read(score_dir.parent / "secret.json")
