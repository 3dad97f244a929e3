"""Lint rules of each agent: its shared state, templates, signals, and the score's inputs."""

from __future__ import annotations

import os
from collections.abc import Iterator

from hct_cli.program.lint_base import Rules
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import JsonPath
from hct_cli.score.model import Agent
from hct_cli.score.template import check_template

__all__ = ["AgentRules"]


class AgentRules(Rules):
    """Each agent's rules (HCT211-214, HCT223, HCT251-253, HCT261-262)."""

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
