"""Lint rules of tools: which servers and tools an agent names, and what its tools may do.

A tool reference must name a server of the score (and, once the server's tool list is known from
``hct tools``, a tool the server lists); a write tool needs a bounded tool loop (``max_steps``) and
must never be reached by speculative work, whose side effects nobody could take back. A server's
own entry is checked too: what its command template may refer to, and settings its transport
ignores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from hct_cli.program.lint_base import Rules
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import Document
from hct_cli.score.model import Agent, Score
from hct_cli.score.template import check_template
from hct_cli.score.tools import ToolServer, qualified, resolve_tools, split_ref

__all__ = ["ToolRules"]


class ToolRules(Rules):
    """The rules of tools (HCT291-299)."""

    def __init__(self, score: Score, doc: Document, tool_lists: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(score, doc)
        self.servers = score.tools
        # Only the lists of servers this score declares count; a list of another score's server is noise.
        self.listed = {name: list(tools) for name, tools in (tool_lists or {}).items() if name in self.servers}

    # -- references ------------------------------------------------------------------------

    def references(self) -> Iterator[Finding]:
        """Every ``tools:`` entry of an agent names a server, and a tool it lists when that is known."""
        for agent in self.agents.values():
            for i, ref in enumerate(agent.tools):
                for _, reason in resolve_tools([ref], self.servers, self.listed)[1]:
                    yield self._reference_problem(agent, i, ref, reason)

    def _reference_problem(self, agent: Agent, i: int, ref: str, reason: str) -> Finding:
        path = ("agents", agent.name, "tools", i)
        server, tool = split_ref(ref)
        if not self.servers:
            return self.error(
                path,
                "HCT291",
                f"agent {agent.name!r} names {ref!r}, but the score declares no tool servers",
                "Declare the MCP server that offers it under tools: (see docs/tools.md).",
            )
        if server is not None and server not in self.servers:
            declared = ", ".join(self.servers) or "none"
            hint = self._did_you_mean(server, self.servers) or f"Declare it under tools: (declared: {declared})."
            return self.error(path, "HCT291", f"agent {agent.name!r} names {ref!r}: {reason}", hint)
        offering = [name for name, tools in self.listed.items() if tool in tools]
        if server is None and len(offering) > 1:
            choices = " or ".join(qualified(name, tool) for name in sorted(offering))
            return self.error(path, "HCT293", f"agent {agent.name!r} names {ref!r}: {reason}", f"Write {choices}.")
        listed = self.listed.get(server, ()) if server is not None else [t for ts in self.listed.values() for t in ts]
        hint = self._did_you_mean(tool, dict.fromkeys(listed)) or (
            "Run `hct tools SCORE` to see what each server offers (the lists lint checks against are "
            "the ones `hct tools` saved last)."
        )
        return self.error(path, "HCT292", f"agent {agent.name!r} names {ref!r}: {reason}", hint)

    # -- effects ---------------------------------------------------------------------------

    def _writes(self, ref: str) -> bool:
        """Whether ``ref`` may reach a write tool (unknown tool lists: judged from the declared effects)."""
        server, tool = split_ref(ref)
        if server is not None:
            entry = self.servers.get(server)
            if entry is None:
                return False  # HCT291 says it
            if tool != "*":
                return entry.effects_of(tool) == "write"
            if server in self.listed:
                return any(entry.effects_of(name) == "write" for name in self.listed[server])
            return entry.effects == "write" or any(rule.effects == "write" for rule in entry.tools.values())
        candidates = [
            entry for name, entry in self.servers.items() if name not in self.listed or tool in self.listed[name]
        ]
        return any(entry.effects_of(tool) == "write" for entry in candidates)

    def _may_speculate(self, agent: Agent) -> str | None:
        """Why ``agent`` may run speculatively, or None."""
        if agent.attacca:
            return "it is attacca: it starts on its cues' partial output"
        for cue in agent.cues:
            before = self.agents.get(cue)
            if before is not None and before.fermata is not None and before.speculate in (True, "auto"):
                return f"its cue {cue!r} speculates past its fermata, so it may fire on a held result"
        return None

    def effects(self) -> Iterator[Finding]:
        """A write tool needs ``max_steps`` said, and never on an agent that may speculate."""
        for agent in self.agents.values():
            writes = [(i, ref) for i, ref in enumerate(agent.tools) if self._writes(ref)]
            if not writes:
                continue
            if agent.max_steps is None:
                first = writes[0][1]
                yield self.error(
                    ("agents", agent.name, "tools"),
                    "HCT294",
                    f"agent {agent.name!r} can reach write tool {first!r} but does not set max_steps",
                    "Set max_steps: (model-tool rounds before the agent fails), so a looping model "
                    "cannot repeat a side effect without end.",
                    key=True,
                )
            why = self._may_speculate(agent)
            if why is not None:
                for i, ref in writes:
                    yield self.at(
                        ("agents", agent.name, "tools", i),
                        Severity.WARNING,
                        "HCT295",
                        f"{ref!r} may write, and agent {agent.name!r} may run speculatively ({why}): "
                        "its writes will wait until the speculation is confirmed",
                        "Make the tool read (effects: read under its server), remove the speculation, "
                        "or move the write to an agent after the gate.",
                    )

    # -- agents that cannot call tools, and scripts ----------------------------------------

    def kinds(self) -> Iterator[Finding]:
        """Only an llm agent has a tool loop."""
        for agent in self.agents.values():
            if agent.kind == "llm":
                continue
            for key in ("tools", "max_steps"):
                if key in self.doc.data["agents"][agent.name]:
                    yield self.error(
                        ("agents", agent.name, key),
                        "HCT296",
                        f"agent {agent.name!r} is a {agent.kind} agent: {key} does nothing here",
                        f"Remove {key}; only an llm agent calls tools.",
                        key=True,
                    )

    def scripts(self) -> Iterator[Finding]:
        """A scripted call of ``simulate.tool_calls`` stays inside the agent's ``tools:``."""
        for agent in self.agents.values():
            for r, round_ in enumerate(agent.simulate.tool_calls):
                for c, call in enumerate(round_):
                    if self._allowed(agent, call.tool):
                        continue
                    yield self.at(
                        ("agents", agent.name, "simulate", "tool_calls", r, c, "tool"),
                        Severity.WARNING,
                        "HCT297",
                        f"agent {agent.name!r} scripts a call of {call.tool!r}, which is not in its tools: "
                        "it will be refused",
                        f"Add {call.tool} to the agent's tools:, or script one of "
                        f"{', '.join(agent.tools) or 'its tools (it has none)'}.",
                    )

    def _allowed(self, agent: Agent, ref: str) -> bool:
        server, tool = split_ref(ref)
        if ref in agent.tools:
            return True
        for own in agent.tools:
            own_server, own_tool = split_ref(own)
            if server is not None and own_server == server and own_tool == "*":
                return True
            if server is None and own_tool == tool:
                return True
            if server is not None and own_server is None and own_tool == tool:
                return True
        return False

    # -- servers ---------------------------------------------------------------------------

    def server_entries(self) -> Iterator[Finding]:
        for name, server in self.servers.items():
            yield from self._command(name, server)
            data = self.doc.data["tools"][name]
            if server.transport == "stdio" and "headers_env" in data:
                yield self.at(
                    ("tools", name, "headers_env"),
                    Severity.WARNING,
                    "HCT299",
                    f"tool server {name!r} runs a command: headers_env is for a url server and is ignored",
                    "Pass what the server needs through env: instead, or remove headers_env.",
                    key=True,
                )
            if server.transport == "http" and "env" in data:
                yield self.at(
                    ("tools", name, "env"),
                    Severity.WARNING,
                    "HCT299",
                    f"tool server {name!r} is a url: env is for a command hct starts and is ignored",
                    "Send credentials with headers_env: {Header: VARIABLE}, or remove env.",
                    key=True,
                )

    def _command(self, name: str, server: ToolServer) -> Iterator[Finding]:
        for i, item in enumerate(server.command):
            path = ("tools", name, "command", i)
            references, problems = check_template(item)
            for problem in problems:
                yield self.error(path, problem.code, problem.message, problem.hint)
            for ref in references:
                if ref.namespace == "inputs" and ref.name in self.score.inputs:
                    continue
                pos = self.doc.text_pos(path, ref.line, f"{ref.namespace}.{ref.name}")
                if ref.namespace == "inputs":
                    message = f"tool server {name!r} uses input {ref.name!r}, which is not declared"
                    hint = self._did_you_mean(ref.name, self.score.inputs) or (
                        f"Declare it under inputs: ({ref.name}: {{required: true}})."
                    )
                else:
                    message = f"tool server {name!r} uses {ref.namespace}.{ref.name}: a command sees only inputs"
                    hint = "A server starts before any agent runs: use {{ inputs.NAME }} only."
                yield Finding(self.doc.file, pos, Severity.ERROR, "HCT298", message, hint)
