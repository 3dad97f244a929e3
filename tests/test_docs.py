"""Every code block of the README and docs/ is checked: a score is linted, a shell line's ``hct``
commands are parsed by the real command line, and the README's first block is run.

A ```yaml block with ``hct:`` is a score, linted as if saved under ``scores/``; any other yaml
block must parse, and must be marked ``<!-- fragment -->`` on the line before it (a piece of a
larger file). A ```text block is a capture of output, not code. A ```python block is run, from the repository's
root, with an HCT_HOME of its own. Inline code that starts with
``hct `` is checked too, more loosely: its command must exist and its ``--options`` must be its own.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from hct_cli.cli import app
from hct_cli.cli.app import _spell_out
from hct_cli.program.lint import lint_text
from hct_cli.score.findings import Severity

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FRAGMENT = "<!-- fragment -->"
INLINE = re.compile(r"(?<!`)`(hct [^`]+)`(?!`)")
LANGUAGES = {"bash", "yaml", "text", "python"}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    language: str
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        source = doc.read_text("utf-8")
        for match in FENCE.finditer(source):
            before = source[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            line = source.count("\n", 0, match.start()) + 1
            found.append(Block(doc, line, match.group(1), match.group(2), before.strip() == FRAGMENT))
    return found


BLOCKS = _blocks()


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def _of(language: str) -> list[Block]:
    return [block for block in BLOCKS if block.language == language]


def test_the_docs_have_blocks_of_every_kind_this_file_checks() -> None:
    assert {block.language for block in BLOCKS} <= LANGUAGES, [b.where for b in BLOCKS if b.language not in LANGUAGES]
    assert _of("bash") and _of("yaml")


@pytest.mark.parametrize("block", _of("yaml"), ids=_ids(_of("yaml")))
def test_a_yaml_block_is_a_score_that_lints_clean_or_a_marked_fragment(block: Block) -> None:
    data = yaml.safe_load(block.text)
    if isinstance(data, dict) and "hct" in data:
        assert not block.fragment, f"{block.where}: a whole score is not a fragment"
        name = data.get("name", "example")
        result = lint_text(block.text, f"{block.where} ({name})", base=REPO / "scores" / f"{name}.yaml")
        problems = [f"{f.line}: {f.code} {f.message}" for f in result.findings if f.severity is not Severity.NOTE]
        assert problems == [], f"{block.where}: {problems}"
        modeline = re.search(r"\$schema=(\S+)", block.text)
        assert modeline is None or (REPO / "scores" / modeline.group(1)).resolve().is_file(), block.where
    else:
        assert block.fragment, f"{block.where}: a yaml block that is not a score must be marked {FRAGMENT}"


def test_the_pre_commit_fragment_names_a_hook_this_repository_defines() -> None:
    hooks = {hook["id"] for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text("utf-8"))}
    shown = [yaml.safe_load(block.text) for block in _of("yaml") if "hooks:" in block.text]
    assert shown
    for entries in shown:
        for entry in entries:
            assert {hook["id"] for hook in entry["hooks"]} <= hooks


def _commands(line: str) -> list[list[str]]:
    """The ``hct`` commands of one shell line, split at ``&&``, ``||``, ``;``, ``|`` and ``&``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [words[1:] for words in commands if words[:1] == ["hct"]]


def _resolve(args: list[str]) -> tuple[Any, list[str], str]:
    """The (click) subcommand ``args`` name, the arguments left for it, and its name."""
    group: Any = typer.main.get_command(app)
    if not args or args[0].startswith("-"):
        return group, args, "hct"
    command = group.get_command(group.context_class(group), args[0])
    assert command is not None, f"hct has no command {args[0]!r}"
    return command, args[1:], f"hct {args[0]}"


def _bash_commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{block.where}: {line}", command)
        for block in _of("bash")
        for line in block.text.splitlines()
        for command in _commands(line)
    ]


@pytest.mark.parametrize(("where", "args"), _bash_commands(), ids=[w for w, _ in _bash_commands()])
def test_a_shell_block_s_hct_command_parses(where: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the blocks are written to be run from a checkout
    command, rest, name = _resolve(_spell_out(args))
    try:
        command.make_context(name, list(rest))  # parses and converts every value, runs nothing
    except Exception as exc:  # click's usage errors (typer bundles its own click)
        pytest.fail(f"{where}: {getattr(exc, 'format_message', exc.__str__)()}")


def _inline() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        source = FENCE.sub("", doc.read_text("utf-8"))
        for match in INLINE.finditer(source):
            found.append((f"{doc.relative_to(REPO)}: {match.group(1)}", match.group(1)))
    return found


def _options(command: Any) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(param.opts + param.secondary_opts)
    return names


@pytest.mark.parametrize(("where", "text"), _inline(), ids=[w for w, _ in _inline()])
def test_an_inline_hct_command_exists_with_its_options(where: str, text: str) -> None:
    words = text.replace("\\|", "|").split()[1:]
    # `hct approve|reject RUN AGENT` names two commands at once.
    for name in words[0].split("|") if words and not words[0].startswith("-") else [None]:
        args = [name, *words[1:]] if name is not None else words
        command, rest, _ = _resolve(_spell_out(args))
        options = _options(command)
        unknown = [w.split("=")[0] for w in rest if w.startswith("-") and w.split("=")[0] not in options]
        assert unknown == [], f"{where}: {unknown} are not options of it"


def test_the_readme_s_first_block_performs_the_code_review_score() -> None:
    first = _of("bash")[0]
    assert first.doc.name == "README.md"
    [perform] = [args for line in first.text.splitlines() for args in _commands(line) if args[:1] == ["perform"]]
    assert perform[:2] == ["perform", "scores/code-review.yaml"] and "--simulate" in perform
    # GNU readline, which the test process loads, exports COLUMNS=80 to children; a shell does not.
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    run = subprocess.run(
        [sys.executable, "-m", "hct_cli", *perform, "--no-tui"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "completed" in run.stdout and "aggregate" in run.stdout


@pytest.mark.parametrize("block", _of("python"), ids=_ids(_of("python")))
def test_a_python_block_runs(block: Block, tmp_path: Path) -> None:
    env = {**os.environ, "HCT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", block.text], cwd=REPO, env=env, capture_output=True, text=True, timeout=100, check=False
    )
    assert run.returncode == 0, f"{block.where}: {run.stderr}"
    assert "Traceback" not in run.stderr
