"""Semantic checks of a schema-valid score: the cue graph, state access, templates, routing.

Each check yields :class:`~hct_cli.score.findings.Finding` objects positioned at the node that
causes them. :func:`lint_path` runs the whole pipeline (load, schema, semantics) on one file and
never raises for a problem in the file: every problem is a finding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hct_cli.errors import ScoreError
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import Document, JsonPath, load_document, load_text
from hct_cli.score.model import Agent, Check, Score, build_score, checks_of
from hct_cli.score.template import check_template, literal_text
from hct_cli.score.validate import validate

__all__ = ["LintResult", "check_score", "lint_path", "lint_text"]


@dataclass(frozen=True)
class LintResult:
    """The findings for one file, and its model when it got that far."""

    file: str
    findings: tuple[Finding, ...]
    score: Score | None
    document: Document | None = None


def lint_path(path: Path, display: str | None = None) -> LintResult:
    """Load, validate and check the score at ``path``."""
    file = display if display is not None else str(path)
    try:
        doc = load_document(path, file)
    except ScoreError as exc:
        return LintResult(file, exc.findings, None)
    return _lint_document(doc, path)


def lint_text(text: str | bytes, file: str = "<score>", *, base: Path | None = None) -> LintResult:
    """Lint a score given as text; ``base`` stands for the score's path (for default_file)."""
    try:
        doc = load_text(text, file)
    except ScoreError as exc:
        return LintResult(file, exc.findings, None)
    return _lint_document(doc, base)


def _lint_document(doc: Document, path: Path | None) -> LintResult:
    file = doc.file
    findings = validate(doc)
    if findings:
        return LintResult(file, tuple(findings), None, doc)
    score = build_score(doc.data, path=path, document=doc)
    semantic = sorted(check_score(score, doc), key=lambda f: (f.pos, f.code))
    return LintResult(file, tuple(semantic), score, doc)


class _Checks:
    def __init__(self, score: Score, doc: Document) -> None:
        self.score = score
        self.doc = doc
        self.agents = score.agents

    def at(
        self, path: JsonPath, severity: Severity, code: str, message: str, hint: str, *, key: bool = False
    ) -> Finding:
        return Finding(self.doc.file, self.doc.pos(path, key=key), severity, code, message, hint)

    def error(self, path: JsonPath, code: str, message: str, hint: str, *, key: bool = False) -> Finding:
        return self.at(path, Severity.ERROR, code, message, hint, key=key)

    # -- the cue graph -------------------------------------------------------------------

    def cues(self) -> Iterator[Finding]:
        for agent in self.agents.values():
            for i, cue in enumerate(agent.cues):
                if cue not in self.agents:
                    yield self.error(
                        ("agents", agent.name, "cues", i),
                        "HCT202",
                        f"agent {agent.name!r} cues {cue!r}, which is not an agent",
                        self._did_you_mean(cue, self.agents) or "Cue the name of a declared agent.",
                    )
            for cue in agent.priorities:
                if cue not in agent.cues:
                    yield self.error(
                        ("agents", agent.name, "priorities", cue),
                        "HCT204",
                        f"priority given for {cue!r}, which is not a cue of {agent.name!r}",
                        f"Add {cue!r} to cues, or remove its priority.",
                        key=True,
                    )
            if agent.tacet_if is not None and agent.tacet_if.cue not in agent.cues:
                yield self.error(
                    ("agents", agent.name, "tacet_if", "cue"),
                    "HCT204",
                    f"tacet_if checks {agent.tacet_if.cue!r}, which is not a cue of {agent.name!r}",
                    f"Add {agent.tacet_if.cue!r} to cues, or check one of {list(agent.cues)}.",
                )

    @staticmethod
    def _did_you_mean(name: str, choices: Mapping[str, object]) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(choices), n=1)
        return f"Did you mean {close[0]!r}?" if close else ""

    def cycles(self) -> tuple[list[Finding], set[str]]:
        """Cue cycles (reported once each) and every agent that sits on one."""
        findings: list[Finding] = []
        on_cycle: set[str] = set()
        color: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
        stack: list[str] = []
        for root in self.agents:
            if root in color:
                continue
            # Iterative DFS: (agent, index of next cue to visit).
            frames: list[tuple[str, int]] = [(root, 0)]
            color[root] = 1
            stack.append(root)
            while frames:
                name, i = frames[-1]
                cues = [c for c in self.agents[name].cues if c in self.agents]
                if i == len(cues):
                    frames.pop()
                    stack.pop()
                    color[name] = 2
                    continue
                frames[-1] = (name, i + 1)
                nxt = cues[i]
                state = color.get(nxt)
                if state == 1:
                    cycle = stack[stack.index(nxt) :]
                    on_cycle.update(cycle)
                    findings.append(self._cycle_finding(name, nxt, cycle))
                elif state is None:
                    color[nxt] = 1
                    stack.append(nxt)
                    frames.append((nxt, 0))
        return findings, on_cycle

    def _cycle_finding(self, name: str, cue: str, cycle: list[str]) -> Finding:
        index = self.agents[name].cues.index(cue)
        path = ("agents", name, "cues", index)
        if len(cycle) == 1:
            return self.error(
                path,
                "HCT201",
                f"cue cycle: agent {name!r} cues itself",
                "Remove the agent from its own cues; use vamp to repeat an agent.",
            )
        ring = " -> ".join([*cycle, cycle[0]])
        return self.error(
            path,
            "HCT201",
            f"cue cycle: {ring} (each waits for the next, so none can start)",
            f"Break the cycle by removing one of these cues, for example {cue!r} here.",
        )

    def unreachable(self, on_cycle: set[str]) -> Iterator[Finding]:
        blocked = set(on_cycle)
        blocked.update(a.name for a in self.agents.values() if any(c not in self.agents for c in a.cues))
        dependents: dict[str, list[str]] = {name: [] for name in self.agents}
        for agent in self.agents.values():
            for cue in agent.cues:
                if cue in dependents:
                    dependents[cue].append(agent.name)
        frontier = list(blocked)
        never: set[str] = set()
        while frontier:
            for dependent in dependents[frontier.pop()]:
                if dependent not in blocked and dependent not in never:
                    never.add(dependent)
                    frontier.append(dependent)
        for name in sorted(never, key=lambda n: self.agents[n].index):
            yield self.error(
                ("agents", name),
                "HCT203",
                f"agent {name!r} can never start: it waits on a cue cycle or an unknown cue",
                "Fix the cycle or unknown cue upstream of this agent.",
                key=True,
            )

    # -- shared state ----------------------------------------------------------------------

    def state(self) -> Iterator[Finding]:
        declared = self.score.state
        frame = self.score.reference_frame
        for agent in self.agents.values():
            for field_name in ("reads", "writes", "appends"):
                for i, key in enumerate(getattr(agent, field_name)):
                    path = ("agents", agent.name, field_name, i)
                    if key in declared:
                        continue
                    if key in frame and field_name != "reads":
                        yield self.error(
                            path,
                            "HCT212",
                            f"agent {agent.name!r} {field_name[:-1]}s {key!r}, "
                            "which is in the immutable reference frame",
                            "The reference frame (L0) is read-only; declare a state key instead.",
                        )
                    elif key in frame:
                        yield self.error(
                            path,
                            "HCT211",
                            f"{key!r} is a reference-frame entry, not a state key",
                            "Reference-frame entries are in every prompt already; remove it from reads.",
                        )
                    else:
                        yield self.error(
                            path,
                            "HCT211",
                            f"agent {agent.name!r} {field_name} {key!r}, which is not declared in state",
                            self._did_you_mean(key, declared) or f"Declare it under state: ({key}: {{initial: ...}}).",
                        )
            for i, key in enumerate(agent.appends):
                if key in agent.writes:
                    yield self.error(
                        ("agents", agent.name, "appends", i),
                        "HCT214",
                        f"agent {agent.name!r} both writes and appends {key!r}",
                        "Either replace the value (writes) or add to the list (appends), not both.",
                    )
                spec = declared.get(key)
                if spec is not None and spec.initial is not None and not isinstance(spec.initial, list):
                    yield self.error(
                        ("agents", agent.name, "appends", i),
                        "HCT213",
                        f"{key!r} is appended to but starts as {type(spec.initial).__name__}, not a list",
                        f"Give {key} an initial value of [] in state.",
                    )

    # -- templates -------------------------------------------------------------------------

    def templates(self) -> Iterator[Finding]:
        for agent in self.agents.values():
            if agent.prompt is not None:
                yield from self._template(agent, ("agents", agent.name, "prompt"), agent.prompt)
            for i, item in enumerate(agent.command):
                yield from self._template(agent, ("agents", agent.name, "command", i), item)

    def _template(self, agent: Agent, path: JsonPath, source: str) -> Iterator[Finding]:
        references, problems = check_template(source)
        for problem in problems:
            yield Finding(
                self.doc.file,
                self.doc.text_pos(path, problem.line),
                Severity.ERROR,
                problem.code,
                problem.message,
                problem.hint,
            )
        for ref in references:
            pos = self.doc.text_pos(path, ref.line, f"{ref.namespace}.{ref.name}")
            message, hint = self._undeclared(agent, ref.namespace, ref.name)
            if message:
                yield Finding(self.doc.file, pos, Severity.ERROR, "HCT223", message, hint)

    def _undeclared(self, agent: Agent, namespace: str, name: str) -> tuple[str, str]:
        if namespace == "cues" and name not in agent.cues:
            hint = (
                f"Add {name!r} to the cues of {agent.name!r}."
                if name in self.agents
                else (self._did_you_mean(name, self.agents) or "Cue a declared agent.")
            )
            return f"template uses cues.{name}, but {name!r} is not a cue of {agent.name!r}", hint
        if namespace == "inputs" and name not in self.score.inputs:
            return (
                f"template uses inputs.{name}, which is not a declared input",
                self._did_you_mean(name, self.score.inputs) or f"Declare it under inputs: ({name}: {{type: text}}).",
            )
        if namespace == "state" and name not in agent.reads:
            if name in self.score.state:
                return (
                    f"template uses state.{name}, but {agent.name!r} does not read it",
                    f"Add {name!r} to the reads of {agent.name!r}.",
                )
            return (
                f"template uses state.{name}, which is not a declared state key",
                f"Declare {name} under state: and add it to reads.",
            )
        return "", ""

    # -- routing ---------------------------------------------------------------------------

    def routing(self) -> Iterator[Finding]:
        from hct_cli.models import known_model
        from hct_cli.program.routing import tiers_of

        tiers = tiers_of(self.score)
        for (tempo, dynamics), tier in self.score.routing.table.items():
            if tier not in tiers:
                yield self.error(
                    ("routing", "table", tempo, dynamics),
                    "HCT231",
                    f"routing table sends {tempo} x {dynamics} to unknown tier {tier!r}",
                    f"Use one of {', '.join(tiers)}, or declare {tier!r} under routing.tiers.",
                )
        for agent in self.agents.values():
            for path, check in self._checks(agent):
                if check.judge is not None and check.judge.tier not in tiers:
                    yield self.error(
                        (*path, "judge", "tier"),
                        "HCT231",
                        f"judge of {agent.name!r} runs on unknown tier {check.judge.tier!r}",
                        f"Use one of {', '.join(tiers)}.",
                    )
        for name, spec in self.score.routing.tiers.items():
            if spec.api_base is None and not known_model(spec.model):
                path = ("routing", "tiers", name)
                if isinstance(self.doc.data["routing"]["tiers"][name], dict):
                    path = (*path, "model")
                yield self._unknown_model(path, spec.model, window_known=spec.context_window is not None)
        for agent in self.agents.values():
            if agent.model is not None and not known_model(agent.model):
                yield self._unknown_model(("agents", agent.name, "model"), agent.model)

    def _unknown_model(self, path: JsonPath, model: str, *, window_known: bool = False) -> Finding:
        unknown = "cost is" if window_known else "cost and context window are"
        return self.at(
            path,
            Severity.WARNING,
            "HCT232",
            f"model {model!r} is not in litellm's price map: its {unknown} unknown",
            "Check the spelling (for example gpt-4o-mini, claude-sonnet-4-5, ollama/llama3.1); "
            "costs of this model will count as zero.",
        )

    @staticmethod
    def _checks(agent: Agent) -> Iterator[tuple[JsonPath, Check]]:
        for where, check in checks_of(agent):
            yield ("agents", agent.name, *where), check

    # -- context windows -------------------------------------------------------------------

    def windows(self) -> Iterator[Finding]:
        """A prompt whose own text and the reference frame overflow its model's window can never
        be sent, whatever its cues hold: refuse it before any call."""
        from hct_cli.program.routing import resolve_route, tiers_of
        from hct_cli.program.window import estimate_tokens, frame_text, window_for

        frame = estimate_tokens(frame_text(self.score.reference_frame))
        tiers = tiers_of(self.score)
        for agent in self.agents.values():
            if agent.kind != "llm" or agent.prompt is None:
                continue
            route = resolve_route(self.score, agent)
            tier = tiers.get(route.tier) if route.tier is not None else None
            declared = tier.context_window if tier is not None else None
            window = window_for(route.model, agent.dynamics, agent.max_tokens, declared)
            if window is None:
                continue
            needed = frame + estimate_tokens(literal_text(agent.prompt))
            if needed > window.tokens:
                yield self.error(
                    ("agents", agent.name, "prompt"),
                    "HCT271",
                    f"the prompt of {agent.name!r} and the reference frame take about {needed:,} tokens "
                    f"before any value is filled in; the call may take {window.describe()}",
                    "Shorten the prompt or the reference frame, raise the agent's dynamics, or route it to a "
                    "model with a larger window.",
                )

    # -- concurrency -----------------------------------------------------------------------

    def conflicts(self, on_cycle: set[str]) -> Iterator[Finding]:
        touching = [a for a in self.agents.values() if (a.reads or a.writes or a.appends) and a.name not in on_cycle]
        if len(touching) < 2:
            return
        ancestors = {a.name: self._ancestors(a.name) for a in touching}
        severity = Severity.WARNING if self.score.coherence == "off" else Severity.NOTE
        for i, first in enumerate(touching):
            for second in touching[i + 1 :]:
                if first.name in ancestors[second.name] or second.name in ancestors[first.name]:
                    continue
                for key, path in self._shared_keys(first, second):
                    yield self.at(
                        path,
                        severity,
                        "HCT241",
                        f"{first.name!r} and {second.name!r} may run at the same time and both "
                        f"use {key!r}, one of them writing it",
                        "With coherence: off a stale read goes through; set coherence: replay or hold, "
                        "or cue one agent on the other."
                        if severity is Severity.WARNING
                        else f"The coherence directory ({self.score.coherence}) keeps this safe; "
                        "cue one agent on the other to order them instead.",
                    )

    @staticmethod
    def _shared_keys(first: Agent, second: Agent) -> Iterator[tuple[str, JsonPath]]:
        def index(agent: Agent, key: str) -> JsonPath:
            for field_name in ("writes", "appends", "reads"):
                values = getattr(agent, field_name)
                if key in values:
                    return ("agents", agent.name, field_name, values.index(key))
            return ("agents", agent.name)

        seen: set[str] = set()
        for a, b in ((first, second), (second, first)):
            written = set(a.writes) | set(a.appends)
            touched = set(b.reads) | set(b.writes)
            for key in sorted(written & touched):
                if key not in seen:
                    seen.add(key)
                    yield key, index(second, key)

    def _ancestors(self, name: str) -> set[str]:
        """Agents that finish before ``name`` starts: its cues, and for a downbeat every agent
        declared before it, transitively."""
        declared = list(self.agents)
        found: set[str] = set()
        frontier = [name]
        while frontier:
            agent = self.agents[frontier.pop()]
            before = [*agent.cues, *(declared[: agent.index] if agent.downbeat else ())]
            for cue in before:
                if cue in self.agents and cue not in found:
                    found.add(cue)
                    frontier.append(cue)
        return found

    # -- signals and execution -------------------------------------------------------------

    def signals(self) -> Iterator[Finding]:
        for agent in self.agents.values():
            base: JsonPath = ("agents", agent.name)
            if agent.vamp is not None and agent.vamp.max is None:
                yield self.error(
                    (*base, "vamp"),
                    "HCT251",
                    f"vamp of {agent.name!r} has no max: it could repeat forever",
                    "Add max: N to the vamp.",
                    key=True,
                )
            fermata = agent.fermata
            human = fermata is not None and (fermata.check.human or fermata.hold == "approval")
            if human and fermata is not None and fermata.timeout_s is None:
                yield self.at(
                    (*base, "fermata"),
                    Severity.WARNING,
                    "HCT252",
                    f"human approval of {agent.name!r} has no timeout: an absent person stalls the run",
                    "Add timeout_s: and default: approve|reject to the fermata.",
                    key=True,
                )
            if agent.kind == "human" and agent.timeout_s is None:
                yield self.at(
                    (*base, "kind"),
                    Severity.WARNING,
                    "HCT252",
                    f"human agent {agent.name!r} has no timeout_s: an absent person stalls the run",
                    "Add timeout_s: to the agent.",
                )
            if agent.kind in ("python", "shell"):
                yield self.at(
                    (*base, "kind"),
                    Severity.NOTE,
                    "HCT253",
                    f"{agent.kind} agent {agent.name!r} runs code on this machine",
                    "hct perform runs it only with --allow-exec.",
                )
            for path, check in self._checks(agent):
                if check.python:
                    yield self.at(
                        (*path, "python"),
                        Severity.NOTE,
                        "HCT253",
                        f"check of {agent.name!r} calls Python code",
                        "hct perform runs it only with --allow-exec.",
                    )

    # -- what checks contain -----------------------------------------------------------------

    def check_contents(self) -> Iterator[Finding]:
        """Every regex compiles, every JSON Schema is valid and its refs stay in the score: a
        check that cannot be evaluated is refused now, not in the middle of a run."""
        from hct_cli.program.checks import SchemaRefs, regex_problem

        # Lint has no --allow-path: a file outside the score's directory is reported, never read.
        refs = SchemaRefs(self.score.base_dir)
        for agent in self.agents.values():
            for path, check in self._checks(agent):
                if check.regex is not None:
                    problem = regex_problem(check.regex)
                    if problem is not None:
                        yield self.error(
                            (*path, "regex"),
                            "HCT281",
                            f"regex of {agent.name!r} does not compile: {problem}",
                            "Fix the pattern (Python regular expression syntax); escape a literal ( [ { with a backslash.",
                        )
                if check.json_schema is not None:
                    for found in refs.problems(check.json_schema):
                        yield self.at(
                            (*path, "json_schema", *found.path),
                            found.severity,
                            found.code,
                            f"json_schema of {agent.name!r}: {found.message}",
                            found.hint,
                            key=found.key,
                        )

    # -- inputs ----------------------------------------------------------------------------

    def inputs(self) -> Iterator[Finding]:
        for spec in self.score.inputs.values():
            base: JsonPath = ("inputs", spec.name)
            if spec.has_default and spec.default_file is not None:
                yield self.error(
                    (*base, "default_file"),
                    "HCT261",
                    f"input {spec.name!r} has both default and default_file",
                    "Keep one of the two.",
                    key=True,
                )
            if spec.required and (spec.has_default or spec.default_file is not None):
                yield self.error(
                    (*base, "required"),
                    "HCT261",
                    f"input {spec.name!r} is required but also has a default",
                    "Drop required: true, or drop the default.",
                    key=True,
                )
            if not (spec.required or spec.has_default or spec.default_file is not None):
                yield self.at(
                    base,
                    Severity.WARNING,
                    "HCT262",
                    f"input {spec.name!r} has no default and is not marked required: "
                    "hct perform asks for it, or refuses to start off a terminal",
                    "Give it default: or default_file:, or say required: true if every run must pass it.",
                    key=True,
                )
            if spec.default_file is not None:
                yield from self._default_file(spec.name, spec.default_file)

    def _default_file(self, name: str, relative: str) -> Iterator[Finding]:
        path: JsonPath = ("inputs", name, "default_file")
        base = self.score.base_dir.resolve()
        target = (base / relative).resolve()
        if os.path.commonpath([base, target]) != str(base):
            yield self.at(
                path,
                Severity.WARNING,
                "HCT261",
                f"default_file of {name!r} lies outside the score's directory",
                "hct perform refuses it unless --allow-path is given; keep inputs beside the score.",
            )
        elif not target.is_file():
            yield self.error(
                path,
                "HCT261",
                f"default_file of {name!r} does not exist: {relative}",
                "Create the file beside the score, or fix the path (relative to the score's directory).",
            )


def check_score(score: Score, doc: Document) -> list[Finding]:
    """Every semantic finding for a schema-valid score."""
    checks = _Checks(score, doc)
    cycle_findings, on_cycle = checks.cycles()
    findings = [*checks.cues(), *cycle_findings, *checks.unreachable(on_cycle)]
    findings += [*checks.state(), *checks.templates(), *checks.routing()]
    findings += [*checks.conflicts(on_cycle), *checks.signals(), *checks.check_contents()]
    findings += [*checks.inputs(), *checks.windows()]
    return findings
