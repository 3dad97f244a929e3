"""L1 for the performer: the window of each call, and the material its prompt may page out.

:mod:`hct_cli.memory` fits a prompt to a window; this module knows the run: which model a call
is routed to, which cues, inputs and state keys a prompt refers to, how much each matters to the
agent and when it was produced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hct_cli.engine.station import Station
from hct_cli.memory import Assembly, Count, Piece, Window, assemble, estimate_tokens, fits_surely, window_for
from hct_cli.score.model import TierSpec
from hct_cli.score.template import check_template

__all__ = ["PREVIOUS", "Compose", "ContextFitter", "Tokenizer", "shown", "with_replacements"]

#: The ``ref`` of a vamp's previous output among a prompt's pieces.
PREVIOUS = "previous output"
#: Renders a call's prompt with the pieces named (by ref) shown as the text given instead.
Compose = Callable[[Mapping[str, str]], str]
#: The token counter of a model.
Tokenizer = Callable[[str], Count]
#: Later than any commit: a vamp's previous output is the most recent thing it has.
_LATEST = 1 << 62


def shown(value: Any) -> str:
    """A value as a prompt shows it: text as it is, other JSON data as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _estimates(model: str) -> Count:
    return estimate_tokens


class ContextFitter:
    """Fits each call's prompt to the window of the model it is routed to."""

    def __init__(
        self,
        frame: str,
        tiers: Mapping[str, TierSpec],
        stations: Mapping[str, Station],
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self.frame = frame
        self._tiers = tiers
        self._stations = stations
        self._tokenizer = tokenizer or _estimates
        self._windows: dict[tuple[str | None, str, str, int], Window | None] = {}
        self._refs: dict[str, tuple[tuple[str, str], ...]] = {}

    def window(self, station: Station) -> Window | None:
        """The window of ``station``'s next call, on the route it has now."""
        agent = station.agent
        route = station.route
        key = (route.tier, route.model, agent.dynamics, agent.max_tokens)
        if key not in self._windows:
            tier = self._tiers.get(route.tier) if route.tier is not None else None
            declared = tier.context_window if tier is not None and tier.model == route.model else None
            self._windows[key] = window_for(route.model, agent.dynamics, agent.max_tokens, declared)
        return self._windows[key]

    def fit(self, station: Station, context: Mapping[str, Any], compose: Compose, prompt: str) -> Assembly | None:
        """The prompt fitted to the call's window; None when ``prompt`` fits as it is (or the
        window is unknown). Raises :class:`~hct_cli.errors.ContextError` when nothing can fit."""
        window = self.window(station)
        if window is None or fits_surely(self.frame, prompt, window):
            return None
        count = self._tokenizer(station.route.model)
        assembly = assemble(self.frame, compose, self._pieces(station, context), window, count)
        return assembly if assembly.cuts else None

    def _pieces(self, station: Station, context: Mapping[str, Any]) -> list[Piece]:
        agent = station.agent
        refs = self._refs.get(station.name)
        if refs is None:
            found = check_template(agent.prompt or "")[0] if agent.prompt and "{{" in agent.prompt else []
            refs = self._refs[station.name] = tuple(dict.fromkeys((r.namespace, r.name) for r in found))
        pieces: list[Piece] = []
        for namespace, name in refs:
            values = context.get(namespace)
            if not isinstance(values, Mapping) or name not in values:
                continue
            rank = agent.priorities.get(name, 0) if namespace == "cues" else 0
            pieces.append(Piece(f"{namespace}.{name}", shown(values[name]), rank, self._produced(namespace, name)))
        earlier = station.record.earlier
        if agent.vamp is not None and station.iteration > 1 and earlier:
            pieces.append(Piece(PREVIOUS, shown(earlier[-1].output), 0, _LATEST))
        return pieces

    def _produced(self, namespace: str, name: str) -> int:
        """When a piece was produced, in commits since the run began (inputs: before the first)."""
        if namespace == "cues":
            producer = self._stations.get(name)
            return producer.commit_seq if producer is not None else 0
        if namespace == "state":
            writers = (
                s.commit_seq for s in self._stations.values() if name in s.agent.writes or name in s.agent.appends
            )
            return max(writers, default=0)
        return 0


def with_replacements(context: Mapping[str, Any], replacements: Mapping[str, str]) -> dict[str, Any]:
    """``context`` with each ``namespace.name`` in ``replacements`` shown as the text given."""
    changed = {namespace: dict(values) for namespace, values in context.items() if isinstance(values, Mapping)}
    for ref, text in replacements.items():
        namespace, _, name = ref.partition(".")
        if namespace in changed and name in changed[namespace]:
            changed[namespace][name] = text
    return {**context, **changed}
