"""L1 for the performer: how each call is laid out, its window, and what it may page out.

:mod:`hct_cli.engine.paging` fits a layout to a window; this module knows the run: which model a call
is routed to, which cues, inputs and state keys a prompt refers to, how many agents share each,
how much each matters to the agent and when it was produced.

**Layout, stable part first.** A value of at least :data:`HOIST_CHARS` characters that the
prompt quotes whole (``{{ inputs.diff }}``, no steps or filters) moves out of the instructions
into the shared section, as a ``<inputs.diff>`` block, and the instructions point to it. Blocks
are ordered by how many agents quote them (most first), then inputs, state, cues. So agents
fanning out from the same cues send the same prefix (frame, shared blocks) and differ only after
it, which is what a provider's prompt cache can reuse.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jinja2 import nodes

from hct_cli.engine.paging import Assembly, Count, Layout, Piece, assemble, fits_surely
from hct_cli.engine.station import Station
from hct_cli.program.window import Window, estimate_tokens, window_for
from hct_cli.providers.base import CallRequest
from hct_cli.score.model import TierSpec
from hct_cli.score.template import NAMESPACES, Marker, check_template, parse_template, render_compiled, shown

__all__ = [
    "HOIST_CHARS",
    "PREVIOUS",
    "Compose",
    "ContextFitter",
    "Tokenizer",
    "block",
    "composer",
    "pointer",
    "with_replacements",
]

#: The ``ref`` of a vamp's previous output among a prompt's pieces.
PREVIOUS = "previous output"
#: Lays out a call with the pieces named (by ref) shown as the text given instead.
Compose = Callable[[Mapping[str, str]], Layout]
#: A value quoted whole and at least this long goes to the shared section (about 250 tokens).
HOIST_CHARS = 1000
_MENTION = re.compile(r"\b(cues|inputs|state)\.([A-Za-z][A-Za-z0-9_]*)")
_NAMESPACE_ORDER = {"inputs": 0, "state": 1, "cues": 2}
#: The token counter of a model.
Tokenizer = Callable[[str], Count]
#: Later than any commit: a vamp's previous output is the most recent thing it has.
_LATEST = 1 << 62


def block(ref: str, text: str) -> str:
    """A value in the shared section."""
    return f"<{ref}>\n{text}\n</{ref}>"


def pointer(ref: str) -> Marker:
    """What the instructions show where a value moved to the shared section."""
    return Marker(f"<{ref}> (above)")


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
        self._mentions: dict[str, tuple[tuple[str, str], ...]] = {}
        self._whole: dict[str, frozenset[tuple[str, str]]] = {}
        self._readers: Counter[tuple[str, str]] | None = None
        self.floor = self._smallest_window()  # a call this size or smaller fits any window of the run

    def _smallest_window(self) -> float:
        """The smallest budget any call of the run can get: every tier's model and every pinned
        model at the softest dynamics and the largest ``max_tokens``."""
        most = max((s.agent.max_tokens for s in self._stations.values()), default=0)
        routes: set[tuple[str | None, str]] = {(name, tier.model) for name, tier in self._tiers.items()}
        routes |= {(None, s.agent.model) for s in self._stations.values() if s.agent.model is not None}
        windows = [self._window_of(tier, model, "pp", most) for tier, model in routes]
        return min((w.tokens for w in windows if w is not None), default=float("inf"))

    def window(self, station: Station) -> Window | None:
        """The window of ``station``'s next call, on the route it has now."""
        agent = station.agent
        route = station.route
        return self._window_of(route.tier, route.model, agent.dynamics, agent.max_tokens)

    def _window_of(self, tier_name: str | None, model: str, dynamics: str, max_tokens: int) -> Window | None:
        key = (tier_name, model, dynamics, max_tokens)
        if key not in self._windows:
            tier = self._tiers.get(tier_name) if tier_name is not None else None
            declared = tier.context_window if tier is not None and tier.model == model else None
            self._windows[key] = window_for(model, dynamics, max_tokens, declared)
        return self._windows[key]

    def hoisted(self, station: Station, context: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The values of this call that go to the shared section, in order, as (ref, text)."""
        mentions = self._mentions.get(station.name)
        if mentions is None:
            prompt = station.agent.prompt or ""
            found = _MENTION.findall(prompt) if "{{" in prompt else []
            mentions = self._mentions[station.name] = tuple(dict.fromkeys(found))
        long: list[tuple[str, str, str]] = []
        for namespace, name in mentions:
            values = context.get(namespace)
            if isinstance(values, Mapping) and name in values:
                value = values[name]
                if isinstance(value, str) and len(value) < HOIST_CHARS:
                    continue  # the common case, decided without building any text
                text = shown(value)
                if len(text) >= HOIST_CHARS:
                    long.append((namespace, name, text))
        if not long:
            return []
        whole = self._quoted_whole(station)
        readers = self._quoters()
        chosen = [item for item in long if (item[0], item[1]) in whole]
        chosen.sort(key=lambda item: (-readers[item[0], item[1]], _NAMESPACE_ORDER[item[0]], item[1]))
        return [(f"{namespace}.{name}", text) for namespace, name, text in chosen]

    def _quoted_whole(self, station: Station) -> frozenset[tuple[str, str]]:
        """Values the prompt quotes only whole: ``{{ ns.NAME }}``, never with steps or filters."""
        found = self._whole.get(station.name)
        if found is None:
            tree = parse_template(station.agent.prompt or "")
            whole: set[tuple[str, str]] = set()
            other: set[tuple[str, str]] = set()
            if tree is not None:
                direct = {id(child) for output in tree.find_all(nodes.Output) for child in output.nodes}
                for node in tree.find_all(nodes.Getattr):
                    ref = _reference(node)
                    if ref is not None:
                        (whole if id(node) in direct else other).add(ref)
            found = self._whole[station.name] = frozenset(whole - other)
        return found

    def _quoters(self) -> Counter[tuple[str, str]]:
        """How many agents' prompts mention each value."""
        if self._readers is None:
            readers: Counter[tuple[str, str]] = Counter()
            for other in self._stations.values():
                prompt = other.agent.prompt or ""
                if other.agent.kind == "llm" and "{{" in prompt:
                    readers.update(set(_MENTION.findall(prompt)))
            self._readers = readers
        return self._readers

    def fits_surely(self, station: Station, shared: str, prompt: str) -> bool:
        """True when the call fits its window whatever the tokenizer, decided from lengths alone
        (a character is at most four UTF-8 bytes, a token at least one): the hot path."""
        size = 4 * (len(self.frame) + len(shared) + len(prompt)) + 64
        if size <= self.floor:
            return True  # fits the smallest window any call of this run may have
        route = station.route
        cached = station.window
        if cached is None or cached[0] is not route:
            cached = station.window = (route, self.window(station))
        window = cached[1]
        return window is None or size <= window.tokens

    def fit(self, station: Station, context: Mapping[str, Any], compose: Compose, layout: Layout) -> Assembly | None:
        """The layout fitted to the call's window; None when ``layout`` fits as it is (or the
        window is unknown). Raises :class:`~hct_cli.errors.ContextError` when nothing can fit."""
        window = self.window(station)
        if window is None or fits_surely(self.frame, layout, window):
            return None
        count = self._tokenizer(station.route.model)
        assembly = assemble(self.frame, compose, self._pieces(station, context), window, count)
        return assembly if assembly.cuts else None

    def fit_request(self, request: CallRequest, compose: Callable[[str], str], text: str) -> CallRequest:
        """A call made for a station but not by it (a judge's, scoring ``text``) fitted to its
        model's window: ``compose(shown)`` is its prompt with ``text`` shown as ``shown``."""
        agent = request.agent
        window = self._window_of(request.tier, request.model, "mf", agent.max_tokens)
        if window is None or fits_surely(request.system, Layout("", request.prompt), window):
            return request
        count = self._tokenizer(request.model)
        assembly = assemble(
            request.system,
            lambda replaced: Layout("", compose(replaced.get("answer", text))),
            [Piece("answer", text)],
            window,
            count,
        )
        request.prompt = assembly.layout.prompt
        request.paged = assembly.cuts
        return request

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
            pieces.append(Piece(PREVIOUS, shown(earlier[-1].result.output), 0, _LATEST))
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


def _reference(node: nodes.Node) -> tuple[str, str] | None:
    """``(namespace, name)`` when ``node`` is exactly ``namespace.name``."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in NAMESPACES:
        return node.node.name, node.attr
    return None


def with_replacements(context: Mapping[str, Any], replacements: Mapping[str, str]) -> dict[str, Any]:
    """``context`` with each ``namespace.name`` in ``replacements`` shown as the text given."""
    changed = {namespace: dict(values) for namespace, values in context.items() if isinstance(values, Mapping)}
    for ref, text in replacements.items():
        namespace, _, name = ref.partition(".")
        if namespace in changed and name in changed[namespace]:
            changed[namespace][name] = text
    return {**context, **changed}


def composer(
    station: Station,
    context: Mapping[str, Any],
    hoisted: Sequence[tuple[str, str]],
    feedback: str | None,
    previous: str | None,
) -> Callable[[Mapping[str, str]], Layout]:
    """Lays out a call of ``station`` (L1): values quoted whole and long go to the shared
    section; the pieces named in the replacements given are paged out."""
    agent = station.agent
    template = station.template

    def compose(replacements: Mapping[str, str]) -> Layout:
        values = context
        if hoisted or replacements:
            values = with_replacements(context, {**replacements, **{ref: pointer(ref) for ref, _ in hoisted}})
        prompt = render_compiled(template, values) if template is not None else agent.prompt or ""
        if feedback is not None:
            prompt += f"\n\nYour previous answer did not pass its check ({feedback}). Answer again."
        if previous is not None:
            shown_before = replacements.get(PREVIOUS, previous)
            prompt += f"\n\nYour previous output (pass {station.iteration - 1}):\n{shown_before}\nImprove on it."
        shared = "\n\n".join(block(ref, replacements.get(ref, text)) for ref, text in hoisted)
        return Layout(shared, prompt)

    return compose
