"""Listening (L5 prefetch): warm a provider's prompt cache before a fan-out.

Calls that share a stable prefix (the reference frame and the shared section, see
:mod:`hct_cli.engine.context`) of at least the model's minimum cacheable length pay for that
prefix once if the first of them writes the provider's prompt cache before the others read it.
So when such a call is issued while another with the same prefix is on its way, the scheduler
decides:

* the first is the **leader** and goes at once. The cache is written at its first token, when
  its provider reports one. Otherwise, as soon as a follower joins, a one-token **warm-up** call
  writes it and the leader waits for that too;
* every later one is a **follower**. Its tempo decides how long it may wait for the cache:
  ``presto`` never waits; ``allegro`` waits at most its ``listen_wait_s`` (two seconds, in the
  tempo table :data:`~hct_cli.score.tempo.TEMPI`), and goes at once when the prefix's expected
  time to first token (:func:`hct_cli.models.time_to_first_token_s`) is longer than that; ``moderato`` and slower wait until the cache is written (or the leader fails).

Each decision is a ``listen`` event with the prefix's size and the saving expected. A prefix
once written is warm for :data:`CACHE_TTL_S`: calls then go at once and read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hct_cli.engine.station import Station
from hct_cli.models import model_info, time_to_first_token_s
from hct_cli.providers.base import CallRequest
from hct_cli.score.tempo import TEMPI

__all__ = ["CACHE_TTL_S", "Listening", "Ticket", "wait_of"]

#: How long a written prefix stays in the cache (Anthropic's ephemeral cache: five minutes).
CACHE_TTL_S = 300.0

Emit = Callable[..., None]  # (kind, station, version, **data)
WarmUp = Callable[[Station, CallRequest], Awaitable[None]]


def wait_of(tempo: str) -> float | None:
    """How long a follower of ``tempo`` may wait for the cache: 0 never, None until it is written."""
    spec = TEMPI.get(tempo)
    return spec.listen_wait_s if spec is not None else None


@dataclass
class _Prefix:
    """A prefix on its way into the cache."""

    key: str
    leader: str
    written: asyncio.Event = field(default_factory=asyncio.Event)
    first_token: bool = True  # the leader's first token writes it; else a warm-up call does
    followers: int = 0


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a call waits for before it goes."""

    prefix: _Prefix
    bound_s: float | None = None  # a follower's longest wait; None: until written
    leads: bool = False  # the leader of a warm-up: make the warm-up call if a follower joined


class Listening:
    """The listening policy of one run."""

    def __init__(self, emit: Emit | None, warm_up: WarmUp, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._emit = emit
        self._warm_up = warm_up
        self._on_way: dict[str, _Prefix] = {}
        self._warm: dict[str, float] = {}  # prefix -> when it was written (loop time)
        self.followers = 0  # calls that waited for a leader's cache
        self.warm_ups = 0

    def issue(self, station: Station, request: CallRequest) -> Ticket | None:
        """Decide how ``request`` goes: None at once, else a ticket for :meth:`wait`."""
        if not self.enabled or not request.shared:
            return None
        info = model_info(request.model)
        tokens = request.prefix_tokens
        if info is None or not info.caches_prompts or tokens < info.min_cacheable_tokens:
            return None
        key = request.prefix_key
        loop = asyncio.get_running_loop()
        # A simulated provider runs time faster; its waits and its cache's lifetime scale with it.
        scale = float(getattr(station.provider, "time_scale", 1.0))
        written = self._warm.get(key)
        if written is not None and loop.time() < written + CACHE_TTL_S * scale:
            return None  # warm: it reads the cache
        prefix = self._on_way.get(key)
        if prefix is not None and prefix.leader == station.name:
            self._written(prefix)  # its own earlier call, gone: nobody waits on a station for itself
            prefix = None
        if prefix is None:
            prefix = self._on_way[key] = _Prefix(key, station.name)
            prefix.first_token = bool(getattr(station.provider, "first_token_notes", False))
            if prefix.first_token:
                request.on_first_token = lambda: self._written(prefix)
                return None
            return Ticket(prefix, leads=True)
        bound = wait_of(station.agent.tempo)
        expected = time_to_first_token_s(info, tokens)
        if bound and expected > bound:
            bound = 0.0  # the cache would not be written within the wait allowed: go at once
        read = info.cache_read_cost_per_token or info.input_cost_per_token
        saving = tokens * (info.input_cost_per_token - read)
        if self._emit is not None:
            self._emit(
                "listen",
                station.name,
                request.version,
                leader=prefix.leader,
                prefix_tokens=tokens,
                wait="never" if bound == 0 else ("bounded" if bound else "until_written"),
                how="first_token" if prefix.first_token else "warm_up",
                expected_wait_s=round(expected, 3),
                expected_saving_usd=round(saving, 8) if bound != 0 else 0.0,
            )
        if bound == 0:
            return None
        prefix.followers += 1
        self.followers += 1
        return Ticket(prefix, None if bound is None else bound * scale)

    async def wait(self, ticket: Ticket, station: Station, request: CallRequest) -> None:
        """Wait as ``ticket`` says; a leader of a warm-up makes the warm-up call first."""
        prefix = ticket.prefix
        if ticket.leads:
            await asyncio.sleep(0)  # the calls issued with it in the same turn join first
            if prefix.followers and not prefix.written.is_set():
                self.warm_ups += 1
                try:
                    await self._warm_up(station, request)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a warm-up only warms: its failure is not the leader's
                    if self._emit is not None:
                        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                        self._emit("warm_up_failed", station.name, request.version, reason=reason)
                finally:
                    self._written(prefix)
            return
        if ticket.bound_s is None:
            await prefix.written.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(prefix.written.wait(), ticket.bound_s)

    def recalled(self, request: CallRequest) -> None:
        """A journaled call (a resume) met ``request``'s prefix in the cache: it is warm now."""
        if self.enabled:
            self._warm[request.prefix_key] = asyncio.get_running_loop().time()

    def settled(self, station: Station) -> None:
        """``station``'s call ended: if it led a prefix not written yet, its followers go."""
        for key, prefix in list(self._on_way.items()):
            if prefix.leader == station.name:
                self._written(prefix)  # written by its call, or it failed: either way, the followers go
                del self._on_way[key]

    def _written(self, prefix: _Prefix) -> None:
        if not prefix.written.is_set():
            self._warm[prefix.key] = asyncio.get_running_loop().time()
            prefix.written.set()

    def to_json(self) -> dict[str, Any]:
        return {"followers": self.followers, "warm_ups": self.warm_ups}
