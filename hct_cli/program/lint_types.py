"""Lint rules of typed results: the schemas of ``output:`` and of state keys, the fields
templates reach through them (HCT224), and what writers put into typed keys (HCT215)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hct_cli.program.checks import SchemaRefs
from hct_cli.program.lint_base import Rules
from hct_cli.program.shapes import misfit, reach
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import Document, JsonPath
from hct_cli.score.model import Agent, Score
from hct_cli.score.template import Reference, check_template

__all__ = ["TypeRules"]


def field_path(name: str, fields: tuple[str | int, ...]) -> str:
    """``files[0].path`` after ``name``, as a template writes it."""
    return name + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in fields)


class TypeRules(Rules):
    """Typed results (HCT215, HCT224, and HCT281-283 for the schemas of ``output:`` and state)."""

    def __init__(self, score: Score, doc: Document) -> None:
        super().__init__(score, doc)
        # Lint has no --allow-path: a file outside the score's directory is reported, never read.
        self.refs = SchemaRefs(score.base_dir)

    def schemas(self) -> Iterator[tuple[JsonPath, str, Any]]:
        """Every schema of a typed result: where it stands, whose it is, the schema."""
        for agent in self.agents.values():
            if agent.output is not None:
                yield ("agents", agent.name, "output", "schema"), f"output of {agent.name!r}", agent.output.schema
        for key in self.score.state.values():
            if key.schema is not None:
                yield ("state", key.name, "schema"), f"schema of state key {key.name!r}", key.schema

    def contents(self) -> Iterator[Finding]:
        """Each schema is a valid JSON Schema whose refs stay in the score (as a check's are)."""
        for path, whose, schema in self.schemas():
            for found in self.refs.problems(schema):
                yield self.at(
                    (*path, *found.path),
                    found.severity,
                    found.code,
                    f"{whose}: {found.message}",
                    found.hint,
                    key=found.key,
                )

    # -- fields ----------------------------------------------------------------------------

    def fields(self) -> Iterator[Finding]:
        """Every field a template reaches exists in the schema of the value it steps into."""
        for agent in self.agents.values():
            if agent.prompt is not None:
                yield from self._fields(agent, ("agents", agent.name, "prompt"), agent.prompt)
            for i, item in enumerate(agent.command):
                yield from self._fields(agent, ("agents", agent.name, "command", i), item)

    def _fields(self, agent: Agent, path: JsonPath, source: str) -> Iterator[Finding]:
        references, problems = check_template(source)
        if problems:
            return  # HCT221/222 say what is wrong with the template
        for ref in references:
            if ref.fields:
                yield from self._reference(agent, path, ref)

    def _reference(self, agent: Agent, path: JsonPath, ref: Reference) -> Iterator[Finding]:
        shown = f"{ref.namespace}.{field_path(ref.name, ref.fields)}"
        pos = self.doc.text_pos(path, ref.line, shown)
        schema: Any = None
        if ref.namespace == "cues" and ref.name in agent.cues and ref.name in self.agents:
            producer = self.agents[ref.name]
            if producer.output is None:
                if producer.kind == "llm" and producer.simulate.output is None:
                    yield Finding(
                        self.doc.file,
                        pos,
                        Severity.WARNING,
                        "HCT224",
                        f"template uses {shown}, but {ref.name!r} declares no output: schema, so its answer is text",
                        f"Declare output: {{schema: ...}} on {ref.name!r}, or use the whole of cues.{ref.name}.",
                    )
                return
            schema = producer.output.schema
        elif ref.namespace == "state" and ref.name in agent.reads and ref.name in self.score.state:
            schema = self.score.state[ref.name].schema
        if schema is None:
            return
        found = reach(self.refs, schema, ref.fields)
        if found.ok:
            return
        at = f"{ref.namespace}.{field_path(ref.name, ref.fields[: found.depth])}"
        owner = f"the output: schema of {ref.name!r}" if ref.namespace == "cues" else f"the schema of {ref.name!r}"
        yield Finding(
            self.doc.file,
            pos,
            Severity.ERROR if found.definite else Severity.WARNING,
            "HCT224",
            f"template uses {shown}, but {at} {found.problem}",
            found.hint or f"Check the path against {owner}.",
        )

    # -- typed state -----------------------------------------------------------------------

    def writers(self) -> Iterator[Finding]:
        """What an agent writes or appends to a key with a schema can satisfy it."""
        for agent in self.agents.values():
            produced = agent.output.schema if agent.output is not None else None
            several = len(agent.writes) > 1
            for field_name in ("writes", "appends"):
                for i, key in enumerate(getattr(agent, field_name)):
                    spec = self.score.state.get(key)
                    if spec is None or spec.schema is None or (several and field_name == "writes"):
                        continue  # several keys: each is one field of the answer, not checked here
                    problem = misfit(self.refs, produced, spec.schema, appended=field_name == "appends")
                    if problem is None:
                        continue
                    reason, definite = problem
                    yield self.at(
                        ("agents", agent.name, field_name, i),
                        Severity.ERROR if definite else Severity.WARNING,
                        "HCT215",
                        f"agent {agent.name!r} {field_name[:-1]}s {key!r}, but {reason}",
                        f"Make the output: schema of {agent.name!r} fit the schema of {key!r}.",
                    )
