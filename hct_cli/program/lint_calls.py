"""Lint rules of what a call compiles to: its tier and model, its context window, its checks.

These rules read the compiled side of a score (routing, the model's window, the static side
of checks), so a score that lints clean is one hct can compile and call.
"""

from __future__ import annotations

from collections.abc import Iterator

from hct_cli.models import known_model
from hct_cli.program.checks import SchemaRefs, regex_problem
from hct_cli.program.lint_base import Rules
from hct_cli.program.routing import resolve_route, tiers_of
from hct_cli.program.window import estimate_tokens, frame_text, window_for
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import JsonPath
from hct_cli.score.template import literal_text

__all__ = ["CallRules"]


class CallRules(Rules):
    """The rules of calls (HCT231-232, HCT271, HCT281-283)."""

    # -- routing ---------------------------------------------------------------------------

    def routing(self) -> Iterator[Finding]:
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

    # -- context windows -------------------------------------------------------------------

    def windows(self) -> Iterator[Finding]:
        """A prompt whose own text and the reference frame overflow its model's window can never
        be sent, whatever its cues hold: refuse it before any call."""
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

    # -- what checks contain -----------------------------------------------------------------

    def check_contents(self) -> Iterator[Finding]:
        """Every regex compiles, every JSON Schema is valid and its refs stay in the score: a
        check that cannot be evaluated is refused now, not in the middle of a run."""
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
