"""The MESI directory: shared state that no agent reads stale without the run knowing.

The conductor is the home node. Per key the directory keeps the committed value, a version, the
owner (the agent holding E or M) and the sharers (agents holding S, with the version they read).
Per (agent, key) the state is one of:

* ``M`` modified: the owner has a buffered write not yet committed;
* ``E`` exclusive: the owner may write; nobody else holds a valid copy;
* ``S`` shared: a read snapshot at a version; several agents may share a key;
* ``I`` invalid: no copy, or a copy a later commit made stale.

A read takes a versioned snapshot (S, or E when nobody else holds the key). A write first issues
a read-for-ownership (RFO, the score's *fermata* on the line): every other sharer is invalidated
and the writer holds E, then M once it has buffered a value. Commit writes the buffered values
back (version + 1 per key) and broadcasts a *cue* with the new value to the former sharers.
Appends bump the version like writes but never conflict with other appends.

Everything here is pure and synchronous; every transition is reported to ``emit`` so the engine
can turn it into an event. Pairs of agents the tag graph already orders never race, so the
engine only asks about keys that concurrent agents share.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Checkpoint", "CoherenceError", "Directory", "HoldTable", "Line", "State"]

State = Literal["M", "E", "S", "I"]
Emit = Callable[[str, str, str, dict[str, Any]], None]  # (kind, agent, key, data)


class CoherenceError(RuntimeError):
    """The engine broke the protocol (a bug, never a user error): a read or RFO of a modified line."""


def _quiet(kind: str, agent: str, key: str, data: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class Checkpoint:
    """Committed values and versions per key, and the appended items, at one instant."""

    lines: Mapping[str, tuple[Any, int]]
    appended: Mapping[str, list[tuple[int, int, Any]]]

    def values(self) -> dict[str, Any]:
        """What a reader would see after a restore."""
        return {key: _merged(value, self.appended[key]) for key, (value, _) in self.lines.items()}


def _merged(value: Any, items: list[tuple[int, int, Any]]) -> Any:
    """A key's value with its appended items, in the appending agents' declaration order."""
    if not items:
        return value
    base = list(value) if isinstance(value, list) else []
    return base + [item for _, _, item in sorted(items, key=lambda entry: (entry[0], entry[1]))]


@dataclass
class Line:
    """One shared key as the directory sees it."""

    value: Any
    version: int = 0
    owner: str | None = None  # holds E or M
    dirty: bool = False  # the owner has buffered a write (M)
    sharers: dict[str, int] = field(default_factory=dict)  # agent -> version it read (S)
    invalid: set[str] = field(default_factory=set)  # agents whose copy a commit made stale


class Directory:
    """Home node for every shared key of one run."""

    def __init__(self, initial: Mapping[str, Any], emit: Emit | None = None) -> None:
        self.lines = {key: Line(value) for key, value in initial.items()}
        self.emit = emit or _quiet
        self.appended: dict[str, list[tuple[int, int, Any]]] = {key: [] for key in initial}

    # -- queries -----------------------------------------------------------------------------

    def state(self, agent: str, key: str) -> State:
        line = self.lines[key]
        if line.owner == agent:
            return "M" if line.dirty else "E"
        if agent in line.sharers:
            return "S"
        return "I"

    def value(self, key: str) -> Any:
        """The committed value; a list key includes its appended items in declaration order."""
        return _merged(self.lines[key].value, self.appended[key])

    def version(self, key: str) -> int:
        return self.lines[key].version

    def stale(self, snapshot: Mapping[str, int]) -> list[str]:
        """Keys of ``snapshot`` (key -> version read) that a commit has moved since."""
        return [key for key, version in snapshot.items() if self.lines[key].version != version]

    # -- transitions --------------------------------------------------------------------------

    def read(self, agent: str, key: str) -> tuple[Any, int]:
        """A versioned snapshot: S, or E when nobody else holds the key."""
        line = self.lines[key]
        line.invalid.discard(agent)
        if line.owner == agent:
            return self.value(key), line.version
        if line.dirty:
            raise CoherenceError(f"{key!r} is modified by {line.owner!r}; {agent!r} must wait for its commit")
        alone = line.owner is None and not (line.sharers.keys() - {agent})
        if alone:
            line.sharers.pop(agent, None)
            line.owner = agent
            self.emit("mesi", agent, key, {"from": "I", "to": "E", "key_version": line.version, "why": "read, alone"})
        else:
            if line.owner is not None and not line.dirty:
                # A clean exclusive copy becomes shared when someone else reads.
                self.emit(
                    "mesi", line.owner, key, {"from": "E", "to": "S", "key_version": line.version, "why": "shared"}
                )
                line.sharers[line.owner] = line.version
                line.owner = None
            line.sharers[agent] = line.version
            self.emit("mesi", agent, key, {"from": "I", "to": "S", "key_version": line.version, "why": "read"})
        return self.value(key), line.version

    def can_own(self, agent: str, key: str) -> bool:
        """Whether ``agent`` could take ownership now without waiting (nobody else owns it)."""
        owner = self.lines[key].owner
        return owner is None or owner == agent

    def acquire(self, agent: str, key: str) -> None:
        """Read-for-ownership: every other copy goes to I and ``agent`` holds E."""
        line = self.lines[key]
        if line.owner not in (None, agent):
            if line.dirty:
                raise CoherenceError(f"{key!r} is modified by {line.owner!r}; {agent!r} must wait for its commit")
            # A clean exclusive copy elsewhere is invalidated like any sharer.
            line.sharers[line.owner] = line.version
            line.owner = None
        invalidated = sorted(line.sharers.keys() - {agent})
        previous = self.state(agent, key)
        for other in invalidated:
            line.invalid.add(other)
            self.emit(
                "mesi", other, key, {"from": "S", "to": "I", "key_version": line.version, "why": f"RFO by {agent}"}
            )
        line.sharers.clear()
        line.owner = agent
        self.emit(
            "fermata",
            agent,
            key,
            {"rfo": True, "invalidated": invalidated, "key_version": line.version, "from": previous, "to": "E"},
        )

    def write(self, agent: str, key: str) -> None:
        """``agent`` buffered a value for ``key``: E -> M (the value itself stays in its station)."""
        line = self.lines[key]
        if line.owner != agent:
            self.acquire(agent, key)
        if not line.dirty:
            line.dirty = True
            self.emit("mesi", agent, key, {"from": "E", "to": "M", "key_version": line.version, "why": "write"})

    def commit(
        self, agent: str, version: int, writes: Mapping[str, Any], appends: Mapping[str, Any], index: int
    ) -> dict[str, list[str]]:
        """Write back ``agent``'s buffered values; returns key -> the former sharers to cue.

        The engine carries that map on the agent's ``cue`` event: the update broadcast.
        """
        cued: dict[str, list[str]] = {}
        for key, value in writes.items():
            line = self.lines[key]
            if line.owner != agent:
                self.acquire(agent, key)
            former = sorted(line.invalid | (line.sharers.keys() - {agent}))
            line.value = value
            line.version += 1
            line.dirty = False
            line.owner = None
            line.sharers.clear()
            line.invalid.clear()
            self.appended[key].clear()
            cued[key] = former
        for key, item in appends.items():
            line = self.lines[key]
            invalidated = set(line.sharers) - {agent}
            if line.owner not in (None, agent):
                if line.dirty:
                    raise CoherenceError(f"{key!r} is modified by {line.owner!r}; {agent!r} must wait for its commit")
                invalidated.add(line.owner)  # a clean exclusive reader's copy goes stale too
                line.owner = None
            self.appended[key].append((index, version, item))
            line.version += 1
            line.invalid |= invalidated
            line.sharers.clear()
            cued[key] = sorted(invalidated)  # only the copies this append made stale
        return cued

    def checkpoint(self) -> Checkpoint:
        """The committed values and versions of every key (a downbeat's checkpoint)."""
        return Checkpoint(
            {key: (copy.deepcopy(line.value), line.version) for key, line in self.lines.items()},
            {key: list(items) for key, items in self.appended.items()},
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        """Roll every key back to ``checkpoint`` (a caesura); every copy and ownership is dropped."""
        for key, (value, version) in checkpoint.lines.items():
            self.lines[key] = Line(copy.deepcopy(value), version)
            self.appended[key] = list(checkpoint.appended[key])

    def release(self, agent: str, keys: Iterable[str]) -> None:
        """Drop ``agent``'s copies and ownership (a squashed, failed or finished agent)."""
        for key in keys:
            line = self.lines[key]
            if line.owner == agent:
                line.owner = None
                line.dirty = False
            line.sharers.pop(agent, None)
            line.invalid.discard(agent)


#: Lock modes of the hold policy: S reads, A appends, X writes (or reads and appends one key).
Mode = Literal["S", "A", "X"]


def lock_modes(reads: Iterable[str], writes: Iterable[str], appends: Iterable[str]) -> dict[str, Mode]:
    """What an agent must hold on each key under ``hold``."""
    modes: dict[str, Mode] = {}
    read_keys, append_keys = set(reads), set(appends)
    for key in read_keys:
        modes[key] = "X" if key in append_keys else "S"
    for key in append_keys - read_keys:
        modes[key] = "A"
    for key in writes:
        modes[key] = "X"
    return modes


def _compatible(a: Mode, b: Mode) -> bool:
    return a == b and a != "X"  # readers share with readers, appenders with appenders


class HoldTable:
    """The ``hold`` policy's locks: all or nothing, granted in FIFO order.

    An agent asks for every lock it needs at once and holds them until its commit, so no agent
    waits while holding anything (no deadlock); a request is granted only when it is compatible
    with every holder and with every earlier request still waiting, so nobody is overtaken
    forever (no livelock, no starvation).
    """

    def __init__(self) -> None:
        self.holders: dict[str, dict[str, Mode]] = {}  # agent -> key -> mode
        self.waiting: dict[str, dict[str, Mode]] = {}  # FIFO: insertion order is arrival order

    def request(self, agent: str, modes: Mapping[str, Mode]) -> bool:
        """Ask for ``modes``; True when granted now, else ``agent`` waits its turn."""
        if agent in self.holders:
            return True
        self.waiting[agent] = dict(modes)
        return agent in self._grant()

    def release(self, agent: str) -> list[str]:
        """``agent`` committed (or gave up): drop its locks; returns the agents granted now."""
        self.holders.pop(agent, None)
        self.waiting.pop(agent, None)
        return self._grant()

    def _conflict(self, modes: Mapping[str, Mode], others: Iterable[Mapping[str, Mode]]) -> bool:
        return any(
            key in other and not _compatible(mode, other[key]) for other in others for key, mode in modes.items()
        )

    def _grant(self) -> list[str]:
        granted: list[str] = []
        ahead: list[Mapping[str, Mode]] = []
        for agent, modes in list(self.waiting.items()):
            if not self._conflict(modes, self.holders.values()) and not self._conflict(modes, ahead):
                del self.waiting[agent]
                self.holders[agent] = modes
                granted.append(agent)
            else:
                ahead.append(modes)
        return granted
