"""Read a score file into plain data, keeping the line and column of every node.

The loader is deliberately strict, because a score is code that may come from anyone:

* the file must be UTF-8 and at most :data:`MAX_BYTES` long;
* duplicate keys are errors (at the second occurrence), never "last one wins";
* only the YAML core tags are accepted; a tag that would construct an object is refused;
* aliases may add at most :data:`MAX_ALIAS_NODES` nodes in all, and may not be recursive, so an
  expansion bomb is refused wherever it sits, even inside a value the schema would accept.

Every problem becomes a :class:`~hct_cli.score.findings.Finding` at the offending position;
:func:`load_document` raises :class:`~hct_cli.errors.ScoreError` carrying them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from hct_cli.errors import ScoreError
from hct_cli.score.findings import Finding, Pos, Severity

__all__ = ["MAX_ALIAS_NODES", "MAX_BYTES", "Document", "JsonPath", "load_document", "load_text"]

#: Largest score file accepted (a 100,000-agent generated score fits comfortably).
MAX_BYTES = 32 * 1024 * 1024
#: Nodes that alias expansion may add to a document, in all.
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of collections accepted.
MAX_DEPTH = 64

JsonPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MERGE = f"{_TAG}merge"


@dataclass(frozen=True)
class Document:
    """A loaded score file: its data and where every value and key stands in the text."""

    file: str
    text: str
    data: Any
    value_pos: dict[JsonPath, Pos] = field(default_factory=dict, repr=False)
    key_pos: dict[JsonPath, Pos] = field(default_factory=dict, repr=False)
    block_scalars: frozenset[JsonPath] = field(default_factory=frozenset, repr=False)
    spans: dict[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)

    def pos(self, path: JsonPath, *, key: bool = False) -> Pos:
        """Position of the value at ``path`` (or of its key), else of its nearest ancestor."""
        if key and path in self.key_pos:
            return self.key_pos[path]
        for depth in range(len(path), -1, -1):
            found = self.value_pos.get(path[:depth])
            if found is not None:
                return found
        return Pos(1, 1)

    def text_pos(self, path: JsonPath, line: int, needle: str = "") -> Pos:
        """Where ``needle`` (or else line ``line`` of the value) stands in the file.

        A literal block (``|``) keeps its lines, so template lines map onto file lines; for
        other styles the source is searched for ``needle`` within the value's span.
        """
        start = self.pos(path)
        span = self.spans.get(path)
        if needle and span is not None:
            found = self.text.find(needle, span[0], span[1])
            if found >= 0:
                before = self.text[:found]
                return Pos(before.count("\n") + 1, found - (before.rfind("\n") + 1) + 1)
        if path in self.block_scalars and line >= 1:
            target = start.line + line
            source = self.line_text(target)
            if source:
                return Pos(target, len(source) - len(source.lstrip()) + 1)
        return start

    @cached_property
    def _lines(self) -> list[str]:
        return self.text.splitlines()

    def line_text(self, line: int) -> str:
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""


class _LoadProblem(Exception):
    def __init__(self, pos: Pos, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.pos, self.code, self.message, self.hint = pos, code, message, hint


def _pos(node_or_mark: Any) -> Pos:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return Pos(mark.line + 1, mark.column + 1)


class _CountingComposer(Composer):
    """The standard composer, plus a running count of the nodes aliases add."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self.warn_double_anchors = False
        self.alias_nodes = 0
        self.collections = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            mark = self.parser.peek_event().start_mark
            node = super().compose_node(parent, index)
            self.alias_nodes += self._size(node, mark)
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise _LoadProblem(
                    _pos(mark),
                    "HCT006",
                    f"alias expansion adds more than {MAX_ALIAS_NODES:,} nodes",
                    "Repeated aliases of aliases multiply; write the values out or share less.",
                )
            return node
        event = self.parser.peek_event()
        if not isinstance(event, SequenceStartEvent | MappingStartEvent):
            return super().compose_node(parent, index)
        self.collections += 1
        if self.collections > MAX_DEPTH:
            raise _LoadProblem(
                _pos(event.start_mark),
                "HCT004",
                f"nesting is deeper than {MAX_DEPTH} levels",
                "Flatten the structure; scores never need this much nesting.",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.collections -= 1

    def _size(self, node: Node, mark: Any) -> int:
        """Nodes in ``node`` with every alias expanded (memoised, so a bomb is cheap)."""
        known = self._sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise _LoadProblem(
                    _pos(mark),
                    "HCT006",
                    "recursive alias: a node refers to itself",
                    "Remove the alias that points back into its own anchor.",
                )
            return known
        if node.end_mark is None:  # still being composed: the alias sits inside its anchor
            self._sizes[id(node)] = -1
            return self._size(node, mark)
        self._sizes[id(node)] = -1
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(self._size(child, mark) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(self._size(k, mark) + self._size(v, mark) for k, v in node.value)
        self._sizes[id(node)] = total
        return total


class _Builder:
    """Turns a composed node tree into plain Python data with positions."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value_pos: dict[JsonPath, Pos] = {}
        self.key_pos: dict[JsonPath, Pos] = {}
        self.problems: list[_LoadProblem] = []
        self.block_scalars: set[JsonPath] = set()
        self.spans: dict[JsonPath, tuple[int, int]] = {}
        self._reported: set[tuple[Pos, str]] = set()

    def build(self, node: Node, path: JsonPath) -> Any:
        self.value_pos.setdefault(path, _pos(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self._check_tag(node, f"{_TAG}seq")
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if getattr(node, "style", None) == "|":
            self.block_scalars.add(path)
        if node.end_mark is not None:
            self.spans.setdefault(path, (node.start_mark.index, node.end_mark.index))
        return self._scalar(node)

    def _check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            self._refuse_tag(node)

    def _refuse_tag(self, node: Node) -> None:
        self._problem(
            _LoadProblem(
                _pos(node),
                "HCT007",
                f"YAML tag {node.tag!s} is not allowed",
                "Scores hold plain data only: remove the tag.",
            )
        )

    def _scalar(self, node: Node) -> Any:
        tag = str(node.tag)
        if tag not in _SCALAR_TAGS:
            self._refuse_tag(node)
            return node.value
        if tag.endswith(":str") or tag.endswith(":timestamp"):
            return self._text(node)
        if tag.endswith(":null"):
            return None
        if tag.endswith(":bool"):
            return node.value.lower() in ("true", "yes", "on")
        value = _number(node.value, integer=tag.endswith(":int"))
        if isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or infinity: such a value would make the journal's JSON invalid.
            self._problem(
                _LoadProblem(
                    _pos(node),
                    "HCT009",
                    f"{node.value} is not a finite number",
                    "Write a finite number (JSON, where every value ends up, has no NaN or infinity).",
                )
            )
        return value

    def _text(self, node: Node) -> str:
        """A string scalar (or key), its escaped UTF-16 pairs joined; a lone surrogate is refused."""
        value: str = node.value
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
        try:  # "\ud83d\ude00" is one character, as in JSON
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            lone = next(c for c in value if 0xD800 <= ord(c) <= 0xDFFF)
            self._problem(
                _LoadProblem(
                    _pos(node),
                    "HCT010",
                    f"text holds a lone surrogate U+{ord(lone):04X} (half of a UTF-16 pair): no encoding can write it",
                    "Write the character itself, or escape a whole pair as in \\ud83d\\ude00.",
                )
            )
            return value

    def _problem(self, problem: _LoadProblem) -> None:
        """Record ``problem`` once, though an alias or a merge may build its node again."""
        key = (problem.pos, problem.code)
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(problem)

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        self._check_tag(node, f"{_TAG}map")
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        first_seen: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            if str(key_node.tag) == _MERGE:
                for source in self._merge_sources(value_node, path):
                    for k, v in source.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(
                    _LoadProblem(
                        _pos(key_node),
                        "HCT004",
                        "a mapping key must be plain text, not a list or mapping",
                        "Write the key as a plain name.",
                    )
                )
                continue
            key = self._text(key_node) if isinstance(key_node.value, str) else str(key_node.value)
            if key in first_seen:
                first = first_seen[key]
                self._problem(
                    _LoadProblem(
                        _pos(key_node),
                        "HCT005",
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        "Remove one of the two, or merge their contents.",
                    )
                )
                continue
            first_seen[key] = _pos(key_node)
            child = (*path, key)
            self.key_pos[child] = _pos(key_node)
            result[key] = self.build(value_node, child)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def _merge_sources(self, node: Node, path: JsonPath) -> Iterator[dict[str, Any]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if isinstance(source, MappingNode):
                yield self._mapping(source, path)
            else:
                self._problem(
                    _LoadProblem(
                        _pos(source),
                        "HCT004",
                        "a merge key '<<' needs a mapping or a list of mappings",
                        "Point '<<' at an anchored mapping, as in '<<: *defaults'.",
                    )
                )


def _number(text: str, *, integer: bool) -> Any:
    """A YAML 1.2 core-schema int or float; the text itself if it is neither."""
    value = text.replace("_", "")
    try:
        if integer:
            sign = -1 if value.startswith("-") else 1
            digits = value.lstrip("+-")
            for prefix, base in (("0o", 8), ("0x", 16), ("0b", 2)):
                if digits.lower().startswith(prefix):
                    return sign * int(digits[2:], base)
            return sign * int(digits, 10)
        lowered = value.lower()
        if lowered in (".inf", "+.inf"):
            return float("inf")
        if lowered == "-.inf":
            return float("-inf")
        if lowered == ".nan":
            return float("nan")
        return float(value)
    except ValueError:
        return text


def _finding(file: str, problem: _LoadProblem) -> Finding:
    return Finding(file, problem.pos, Severity.ERROR, problem.code, problem.message, problem.hint)


def _decode(raw: bytes, file: str) -> str:
    if len(raw) > MAX_BYTES:
        raise ScoreError(
            f"{file} is too large",
            [
                Finding(
                    file,
                    Pos(1, 1),
                    Severity.ERROR,
                    "HCT003",
                    f"file is larger than the limit of {MAX_BYTES:,} bytes",
                    "Split the work into several scores, or move large text into inputs files.",
                )
            ],
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise ScoreError(
            f"{file} is not UTF-8",
            [
                Finding(
                    file,
                    Pos(line, col),
                    Severity.ERROR,
                    "HCT002",
                    f"byte 0x{raw[exc.start]:02x} is not valid UTF-8",
                    "Save the file as UTF-8.",
                )
            ],
        ) from exc


def _yaml_problem(exc: Exception, text: str) -> _LoadProblem:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        at_end = mark is not None and mark.index >= len(text.rstrip())
        if at_end and exc.context_mark is not None:
            mark = exc.context_mark  # "unexpected end of file": point where the open construct began
        pos = _pos(mark) if mark is not None else Pos(1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        message = message.replace("\n", " ").strip()
        hint = "Fix the YAML syntax at this position."
        if "\t" in (exc.problem or "") or "'\\t'" in message:
            hint = "YAML indents with spaces only: replace the tab with spaces."
        return _LoadProblem(pos, "HCT004", message, hint)
    if isinstance(exc, ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        return _LoadProblem(
            Pos(line, col),
            "HCT004",
            f"character U+{exc.character:04X} is not allowed in YAML"
            if isinstance(exc.character, int)
            else f"character {exc.character!r} is not allowed in YAML",
            "Remove the control character.",
        )
    return _LoadProblem(Pos(1, 1), "HCT004", f"cannot parse YAML: {exc}", "Fix the YAML syntax.")


def load_text(text_or_bytes: str | bytes, file: str = "<score>") -> Document:
    """Load a score from its text; raise :class:`ScoreError` with positioned findings."""
    if isinstance(text_or_bytes, bytes):
        text = _decode(text_or_bytes, file)
    else:
        text = text_or_bytes
        if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            _decode(text.encode("utf-8", "surrogatepass"), file)
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _CountingComposer
    try:
        root = yaml.compose(text)
    except _LoadProblem as refused:
        raise ScoreError(f"{file} cannot be loaded", [_finding(file, refused)]) from None
    except (YAMLError, RecursionError, ValueError) as exc:
        raise ScoreError(f"{file} is not valid YAML", [_finding(file, _yaml_problem(exc, text))]) from exc
    if root is None:
        raise ScoreError(
            f"{file} is empty",
            [
                Finding(
                    file,
                    Pos(1, 1),
                    Severity.ERROR,
                    "HCT008",
                    "the score is empty",
                    "Start from `hct init NAME`, which writes a commented starter score.",
                )
            ],
        )
    builder = _Builder(file)
    data = builder.build(root, ())
    if builder.problems:
        raise ScoreError(f"{file} cannot be loaded", [_finding(file, p) for p in builder.problems])
    return Document(
        file, text, data, builder.value_pos, builder.key_pos, frozenset(builder.block_scalars), builder.spans
    )


def load_document(path: Path, display: str | None = None) -> Document:
    """Read and load the score at ``path``; ``display`` is the name used in findings."""
    file = display if display is not None else str(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ScoreError(
            f"cannot read {file}",
            [
                Finding(
                    file,
                    Pos(1, 1),
                    Severity.ERROR,
                    "HCT001",
                    f"cannot read the file: {reason}",
                    "Check the path; scores are YAML files such as scores/code-review.yaml.",
                )
            ],
        ) from exc
    return load_text(raw, file)
