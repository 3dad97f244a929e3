"""Lint rules of the cue graph: unknown cues, cycles, agents that can never start, and agents
that may run at the same time on the same state."""

from __future__ import annotations

from collections.abc import Iterator

from hct_cli.program.lint_base import Rules
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import JsonPath
from hct_cli.score.model import Agent

__all__ = ["GraphRules"]


class GraphRules(Rules):
    """The cue graph's rules (HCT201-204, HCT241)."""

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
