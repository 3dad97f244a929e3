"""The allow list of local tool servers: an entry is trusted by the fingerprint of exactly what the
score wrote, the file survives garbage, and adding is idempotent and atomic; the listing cache
answers only for the entry that produced it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hct_cli.errors import StoreError
from hct_cli.score.tools import ToolServer
from hct_cli.tools.base import ToolSpec
from hct_cli.tools.listing import load_listings, save_listing
from hct_cli.tools.trust import add_trusted, fingerprint, is_trusted, load_trusted

pytestmark = pytest.mark.timeout(30)

GIT = ToolServer("git", command=("python", "-m", "mcp_server_git", "--repository", "{{ inputs.repo }}"))


def test_fingerprint_follows_the_entry_not_its_name_or_settings_beside_it() -> None:
    assert fingerprint(GIT) == fingerprint(ToolServer("other", command=GIT.command, effects="read"))
    assert fingerprint(GIT) != fingerprint(ToolServer("git", command=(*GIT.command, "--verbose")))
    assert fingerprint(GIT) != fingerprint(ToolServer("git", command=GIT.command, env=("SECRET",)))
    assert len(fingerprint(GIT)) == 64


def test_add_then_trusted_and_a_second_add_adds_nothing(tmp_path: Path) -> None:
    allow = tmp_path / "home" / "tools.allow"
    assert load_trusted(allow) == frozenset()
    assert not is_trusted(allow)(GIT)
    assert add_trusted(allow, [GIT, GIT], score="review.yaml") == [fingerprint(GIT)]
    assert is_trusted(allow)(GIT)
    assert add_trusted(allow, [GIT], score="review.yaml") == []
    text = allow.read_text(encoding="utf-8")
    assert text.count("\n") == 1
    assert "review.yaml" in text and "server git" in text
    assert list(allow.parent.iterdir()) == [allow]  # no temporary left behind


def test_garbled_lines_are_kept_and_never_trusted(tmp_path: Path) -> None:
    allow = tmp_path / "tools.allow"
    almost = fingerprint(GIT)[:-1] + "z"
    allow.write_bytes(b"# mine\n\xff\xfe not a line\n" + almost.encode() + b"\n" + b"  ")
    assert load_trusted(allow) == frozenset()
    add_trusted(allow, [GIT])
    lines = allow.read_bytes().split(b"\n")
    assert lines[0] == b"# mine"
    assert load_trusted(allow) == {fingerprint(GIT)}


def test_an_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StoreError) as caught:
        add_trusted(blocker / "tools.allow", [GIT])
    assert "tools.allow" in caught.value.message
    assert caught.value.hint


def test_a_listing_is_used_only_for_the_entry_that_made_it(tmp_path: Path) -> None:
    specs = [ToolSpec("git", "git_log", "Commit log", {"type": "object"}, "read")]
    save_listing(tmp_path, GIT, specs)
    assert load_listings(tmp_path, {"git": GIT}) == {"git": ["git_log"]}
    assert load_listings(tmp_path, {"g2": ToolServer("g2", command=GIT.command)}) == {"g2": ["git_log"]}
    changed = ToolServer("git", command=(*GIT.command, "--verbose"))
    assert load_listings(tmp_path, {"git": changed}) == {}
    (tmp_path / f"{fingerprint(GIT)}.json").write_text("{not json", encoding="utf-8")
    assert load_listings(tmp_path, {"git": GIT}) == {}
    assert load_listings(tmp_path / "missing", {"git": GIT}) == {}
