"""Shared state during a run: the MESI directory and the coherence policy, station by station.

The performer keeps the control flow (issue, commit, run again, fail); this module decides what
shared state allows and keeps the counters:

* at issue, ``lock`` takes hold locks (or says to wait) and ``read`` snapshots the keys read;
* at commit, ``check`` says whether the result may be written back, must be replayed (a stale
  read), or must wait behind a station holding locks on what it writes (parked);
* ``write_back`` writes the buffered values and returns whom to cue;
* ``let_go`` drops a station's copies, ownership and locks, and hands back the stations whose
  locks were granted and the commits that were parked behind it, for the performer to resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hct_cli.bus.base import Broadcast
from hct_cli.engine.coherence import Directory, HoldTable
from hct_cli.engine.station import Station
from hct_cli.errors import AccessError
from hct_cli.jsonio import loads
from hct_cli.providers.enclave import refused_write
from hct_cli.score.model import Agent

__all__ = ["Admission", "Released", "SharedState"]

Emit = Callable[..., None]  # (kind, station, version, **data)


@dataclass
class Admission:
    """What a result's commit may do: ``commit``, ``replay`` (stale) or ``park`` (behind a holder)."""

    action: Literal["commit", "replay", "park"]
    stale: list[str] = field(default_factory=list)


@dataclass
class Released:
    """What a station letting go set free: stations granted their locks, commits parked behind it."""

    granted: list[str] = field(default_factory=list)
    parked: list[tuple[Station, Broadcast]] = field(default_factory=list)


class SharedState:
    """The run's shared keys under one coherence policy (``replay``, ``hold`` or ``off``)."""

    def __init__(
        self,
        initial: Mapping[str, Any],
        frame: Collection[str],
        policy: str,
        max_replays: int,
        emit: Emit | None,
        stations: Mapping[str, Station],
        schemas: Mapping[str, Any] | None = None,
    ) -> None:
        self.policy = policy
        self.schemas = dict(schemas or {})  # key -> the JSON Schema its every value satisfies
        self.frame = frame  # reference-frame entries: never written
        self.max_replays = max_replays
        self._emit = emit
        self._stations = stations
        self.directory = Directory(initial, self._on_transition if emit is not None else None)
        self.locks = HoldTable()
        self._parked: dict[str, list[tuple[Station, Broadcast]]] = {}  # holder -> commits waiting for it
        self.stale_reads = 0
        self.replays = 0
        self.holds = 0
        self.hold_s = 0.0
        if policy == "hold":
            for station in stations.values():
                station.hold = station.shared

    def _on_transition(self, kind: str, agent: str, key: str, data: dict[str, Any]) -> None:
        """The directory's transitions become events of the agent they concern."""
        assert self._emit is not None
        station = self._stations.get(agent)
        self._emit(kind, agent, station.version if station is not None else 0, key=key, **data)

    def value(self, key: str) -> Any:
        return self.directory.value(key)

    def state(self) -> dict[str, Any]:
        return {key: self.directory.value(key) for key in self.directory.lines}

    # -- issue -----------------------------------------------------------------------------

    def lock(self, station: Station) -> bool:
        """Under hold, take every lock ``station`` needs; False when it must wait its turn."""
        if not station.hold or station.locked:
            return True
        if not self.locks.request(station.name, station.modes):
            station.hold_since = time.perf_counter()
            if self._emit is not None:
                self._emit("hold", station.name, station.version + 1, keys=sorted(station.modes), waiting=True)
            return False
        station.locked = True
        return True

    def read(self, station: Station) -> dict[str, Any]:
        """Snapshot the keys ``station`` reads; under hold, also own the keys it writes."""
        agent = station.agent
        values: dict[str, Any] = {}
        snapshot = station.snapshot = {}
        for key in agent.reads:
            values[key], snapshot[key] = self.directory.read(station.name, key)
        if station.locked:
            for key in agent.writes:
                self.directory.acquire(station.name, key)
        return values

    def end_wait(self, station: Station) -> None:
        """A station that waited under hold (for locks, or with its commit parked) goes on: count it."""
        if station.hold_since is not None:
            self.holds += 1
            self.hold_s += time.perf_counter() - station.hold_since
            station.hold_since = None

    # -- commit ----------------------------------------------------------------------------

    def check(self, station: Station, message: Broadcast) -> Admission:
        """May ``message`` be written back now?"""
        name = station.name
        stale = self.directory.stale(station.snapshot) if station.snapshot else []
        if stale:
            if self.policy == "off":
                self.stale_reads += 1
                if self._emit is not None:
                    self._emit("stale_read", name, message.version, keys=stale)
            else:
                self.replays += 1
                station.replays += 1
                if station.replays > self.max_replays and not station.hold:
                    station.hold = True  # replays did not converge: take locks from now on
                if self._emit is not None:
                    self._emit("replay", name, message.version, keys=stale, replay=station.replays, hold=station.hold)
                return Admission("replay", stale)
        blocker = self._blocker(station)
        if blocker is not None:
            # A station under hold owns a key this commit writes: wait for it, then check again.
            self._parked.setdefault(blocker, []).append((station, message))
            station.hold_since = time.perf_counter()
            if self._emit is not None:
                self._emit("hold", name, message.version, keys=sorted(station.modes), behind=blocker)
            return Admission("park")
        return Admission("commit", stale)

    def _blocker(self, station: Station) -> str | None:
        if station.locked or not self.locks.holders:
            return None
        agent = station.agent
        for holder, modes in self.locks.holders.items():
            if holder != station.name and any(k in modes for k in (*agent.writes, *agent.appends)):
                return holder
        return None

    def write_back(self, station: Station, message: Broadcast) -> dict[str, list[str]] | str:
        """Write the result's values back; key -> the former sharers to cue, or why it cannot.
        Raises :class:`~hct_cli.errors.AccessError` when the result names a key the agent may
        not write (then nothing is written)."""
        agent = station.agent
        values, error = _values(agent, message.result.output, self.frame, self.directory.lines)
        if error is not None:
            return error
        for key in values:
            self.directory.write(station.name, key)
        appends = dict.fromkeys(agent.appends, message.result.output)
        return self.directory.commit(station.name, message.version, values, appends, agent.index)

    def proposed(self, agent: Agent, output: Any) -> dict[str, Any]:
        """What the keys with a schema would hold if ``output`` committed now: the value written,
        or the list with ``output`` appended. A result that cannot be written at all proposes
        nothing here (``write_back`` says why)."""
        found: dict[str, Any] = {}
        if not self.schemas:
            return found
        written: dict[str, Any] = dict.fromkeys(agent.writes[:1], output)
        if len(agent.writes) > 1:
            try:
                data = loads(output) if isinstance(output, str) else output
            except ValueError:
                data = None
            written = {key: data[key] for key in agent.writes if key in data} if isinstance(data, dict) else {}
        for key, value in written.items():
            if key in self.schemas:
                found[key] = value
        for key in agent.appends:
            if key in self.schemas:
                current = self.directory.value(key)
                found[key] = [*(current if isinstance(current, list) else ()), output]
        return found

    def let_go(self, station: Station) -> Released:
        """``station`` is done with shared state for now: drop its copies, ownership and locks."""
        if not station.shared:
            return Released()
        self.directory.release(station.name, station.modes)
        station.snapshot = {}
        if not station.locked:
            return Released()
        station.locked = False
        return Released(self.locks.release(station.name), self._parked.pop(station.name, []))


def _values(
    agent: Agent, output: Any, frame: Collection[str], state: Collection[str]
) -> tuple[dict[str, Any], str | None]:
    """The values ``output`` writes: itself for one key, a JSON object's fields for several (a
    field naming a reference-frame entry or a state key the agent does not write is refused)."""
    if frame:
        refusal = refused_write(agent.name, (*agent.writes, *agent.appends), frame, (), ())
        if refusal is not None:
            raise AccessError(refusal, hint="The reference frame (L0) is read-only; declare a state key instead.")
    if len(agent.writes) <= 1:
        return dict.fromkeys(agent.writes, output), None
    try:
        data = loads(output) if isinstance(output, str) else output
    except ValueError as exc:
        return {}, f"output must be a JSON object with keys {list(agent.writes)} ({exc})"
    if not isinstance(data, dict) or not set(agent.writes) <= set(data):
        return {}, f"output must be a JSON object with keys {list(agent.writes)}"
    refusal = refused_write(agent.name, data, frame, state, (*agent.writes, *agent.appends))
    if refusal is not None:
        raise AccessError(refusal, hint="An agent writes only the keys in its writes and appends.")
    return {key: data[key] for key in agent.writes}, None
