"""Render lint results as text, JSON, GitHub workflow annotations or SARIF 2.1.0."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from hct_cli.jsonio import dumps
from hct_cli.score.findings import CODES, Finding, LintResult, Severity

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "json", "github", "sarif")


def _source_line(result: LintResult, line: int) -> str:
    return result.document.line_text(line) if result.document is not None else ""


def _text(results: Sequence[LintResult]) -> str:
    out: list[str] = []
    for result in results:
        for f in result.findings:
            out.append(f"{f.file}:{f.line}:{f.col}: {f.severity.value}[{f.code}]: {f.message}")
            source = _source_line(result, f.line).rstrip("\n")
            if source:
                gutter = " " * len(str(f.line))
                shown = source.expandtabs(1)
                out.append(f" {f.line} | {shown}")
                out.append(f" {gutter} | {' ' * (f.col - 1)}^")
            if f.hint:
                out.append(f"  hint: {f.hint}")
    out.append(_summary(results))
    return "\n".join(out)


def _counts(results: Sequence[LintResult]) -> dict[str, int]:
    counts = {s.value: 0 for s in Severity}
    for result in results:
        for f in result.findings:
            counts[f.severity.value] += 1
    return counts


def _summary(results: Sequence[LintResult]) -> str:
    counts = _counts(results)
    files = f"{len(results)} file{'s' if len(results) != 1 else ''}"
    if not any(counts.values()):
        return f"{files} checked: no problems"
    parts = [f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts.items()]
    return f"{files} checked: {', '.join(parts)}"


def _json(results: Sequence[LintResult]) -> str:
    counts = _counts(results)
    return dumps(
        {
            "ok": counts["error"] == 0,
            "summary": {"files": len(results), **{f"{k}s": v for k, v in counts.items()}},
            "files": [
                {
                    "file": r.file,
                    "score": r.score.name if r.score is not None else None,
                    "findings": [f.to_json() for f in r.findings],
                }
                for r in results
            ],
        },
        indent=2,
    )


def _escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _github(results: Sequence[LintResult]) -> str:
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}
    lines = []
    for result in results:
        for f in result.findings:
            message = f"{f.message}. {f.hint}" if f.hint else f.message
            lines.append(
                f"::{level[f.severity]} file={_escape(f.file, prop=True)},line={f.line},"
                f"col={f.col},title={f.code}::{_escape(message)}"
            )
    lines.append(_summary(results))
    return "\n".join(lines)


def _uri(file: str) -> str:
    return PurePath(file).as_posix()


def _sarif(results: Sequence[LintResult]) -> str:
    from hct_cli import __version__

    findings: list[Finding] = [f for r in results for f in r.findings]
    rule_ids = sorted({f.code for f in findings})
    rules = [
        {
            "id": code,
            "name": CODES[code].title().replace(" ", "").replace("-", ""),
            "shortDescription": {"text": CODES[code]},
        }
        for code in rule_ids
    ]
    sarif_results: list[dict[str, Any]] = []
    for f in findings:
        text = f"{f.message}. {f.hint}" if f.hint else f.message
        sarif_results.append(
            {
                "ruleId": f.code,
                "ruleIndex": rule_ids.index(f.code),
                "level": f.severity.value,
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(f.file)},
                            "region": {"startLine": f.line, "startColumn": f.col},
                        }
                    }
                ],
            }
        )
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "hct", "version": __version__, "rules": rules}},
                "artifacts": [{"location": {"uri": _uri(r.file)}} for r in results],
                "results": sarif_results,
            }
        ],
    }
    return dumps(document, indent=2)


def render(results: Sequence[LintResult], fmt: str) -> str:
    """Render ``results`` in one of :data:`FORMATS`."""
    renderers = {"text": _text, "json": _json, "github": _github, "sarif": _sarif}
    return renderers[fmt](results)
