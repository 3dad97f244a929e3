"""A state machine over the MESI directory and the hold locks, driven the way the engine drives them.

A small world (3 to 5 agents, 2 or 3 keys, one policy per run) goes through the calls
``hct_cli.engine.perform`` makes, in any order the engine could make them:

* ``release``: the dispatch policy lets an idle agent go (its first pass, or a vamp pass). Under
  ``hold`` (or once ``replay`` escalated the agent to hold) it asks for all its locks at once and
  waits if they are not granted; otherwise it is queued for a unit.
* ``issue``: a queued agent runs: it reads its keys (``Directory.read``, the snapshot) and, holding
  locks, takes ownership of the keys it writes (``Directory.acquire``).
* ``commit``: a running agent's result comes back: the stale check (replay discards and runs it
  again, off counts it and goes on), the hold blocker (an unlocked commit parks behind a holder),
  then ``write``, ``commit``, ``release`` and the lock release, which grants waiters and retries
  parked commits.
* ``squash``: a running agent fails: ``Directory.release`` of every key it touches, lock release.

A ghost model keeps every key's version, committed value and appended items. Four groups of
checks compare it with the directory and the lock table, after every step and inside the moves
where the engine relies on them:

1. ``check_swmr``: per key at most one owner (E or M), and no sharer beside an owner; also
   right after a commit's RFOs, before the write-back.
2. ``check_data``: every copy in S, E or M is at the key's current version, every read and every
   committed value is the ghost's, a commit cues everyone who held a copy, a finished agent
   holds nothing.
3. ``check_fresh_commit``: under replay and hold no result read at a stale version commits, and
   an agent holding hold locks never reads stale at all.
4. ``check_hold`` and ``check_grant``: holders never conflict; nothing waits without a
   conflicting holder or earlier waiter ahead of it (so with no holder nobody waits: no
   deadlock); a later conflicting request never overtakes a waiting one (FIFO).

The file passes ``MIN_STEPS`` steps through it per run (``STEPS`` counts them).
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.coherence import Directory, HoldTable, Mode, lock_modes
from hct_cli.engine.governor import worst_case_usd
from hct_cli.engine.perform import Performer
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(120)

POLICIES = ("replay", "hold", "off")
#: What one agent does with one key (the score forbids writing and appending the same key).
ROLES: tuple[frozenset[str], ...] = (
    frozenset({"reads"}),
    frozenset({"writes"}),
    frozenset({"appends"}),
    frozenset({"reads", "writes"}),
    frozenset({"reads", "appends"}),
    frozenset(),  # last: Hypothesis leans towards the first entries
)
MIN_STEPS = 10_000
SETTINGS = settings(
    max_examples=300,
    stateful_step_count=100,
    deadline=None,
    derandomize=True,  # the same 300 runs every time: a stable step count and run time
    database=None,
    suppress_health_check=[HealthCheck.too_slow],  # 100 steps a run, each checked in full
)
#: Rule executions in the current run of the machine (the step-count test reads it).
STEPS = {"n": 0}


def compatible(a: Mode, b: Mode) -> bool:
    """The lock compatibility matrix: readers share with readers, appenders with appenders."""
    return (a, b) in (("S", "S"), ("A", "A"))


def conflict(first: dict[str, Mode], second: dict[str, Mode]) -> bool:
    return any(key in second and not compatible(mode, second[key]) for key, mode in first.items())


@dataclass
class Agent:
    name: str
    index: int  # declaration order: appended items materialise in (index, version) order
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    appends: tuple[str, ...]
    modes: dict[str, Mode]
    status: str = "idle"  # idle | waiting (for locks) | queued (for a unit) | running | parked
    version: int = 0  # the tag version, one more at every issue
    hold: bool = False  # runs under hold locks
    locked: bool = False  # holds them now
    replays: int = 0
    arrival: int = -1  # order of its last lock request
    snapshot: dict[str, int] = field(default_factory=dict)  # key -> version read at issue
    copies: dict[str, int] = field(default_factory=dict)  # key -> version of the copy it holds
    pending: tuple[dict[str, Any], str] | None = None  # a parked commit: values written, item appended


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    policy = draw(st.sampled_from(POLICIES))
    n_keys = draw(st.integers(2, 3))
    keys = [f"k{i}" for i in range(n_keys)]
    # A list key may be appended to; a scalar key may not (lint HCT213).
    listy = {key: draw(st.booleans()) for key in keys}
    initial = {key: (draw(st.sampled_from([[], [f"{key}-seed"]])) if listy[key] else f"{key}-seed") for key in keys}
    roles_of_key = {key: ROLES if listy[key] else tuple(r for r in ROLES if "appends" not in r) for key in keys}
    agents = []
    for _ in range(draw(st.integers(3, 5))):
        by_key = {key: draw(st.sampled_from(roles_of_key[key])) for key in keys}
        if not any(by_key.values()):  # an agent that touches no key never meets the directory
            key = draw(st.sampled_from(keys))
            by_key[key] = draw(st.sampled_from(roles_of_key[key][:-1]))
        agents.append(by_key)
    return {
        "policy": policy,
        "initial": initial,
        "listy": listy,
        "agents": agents,
        "max_replays": draw(st.integers(0, 2)),  # small, so replay escalates to hold in short runs
    }


class CoherenceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.agents: dict[str, Agent] = {}
        self.parked: dict[str, list[str]] = {}  # holder -> agents whose commits wait for it
        self.stale_commits = 0
        self.counter = 0
        self.arrivals = 0

    # -- the world ---------------------------------------------------------------------------

    @initialize(world=worlds())
    def setup(self, world: dict[str, Any]) -> None:
        self.policy: str = world["policy"]
        self.max_replays: int = world["max_replays"]
        self.listy: dict[str, bool] = world["listy"]
        self.keys = list(world["initial"])
        self.dir = Directory({key: _copy(value) for key, value in world["initial"].items()})
        self.locks = HoldTable()
        # The ghost: per key the version, the value of the last write (or the initial value) and
        # the items appended since, in (agent index, tag version) order.
        self.versions = dict.fromkeys(self.keys, 0)
        self.base: dict[str, Any] = {key: _copy(value) for key, value in world["initial"].items()}
        self.items: dict[str, list[tuple[tuple[int, int], str]]] = {key: [] for key in self.keys}
        for index, by_key in enumerate(world["agents"]):
            name = f"a{index}"
            reads = tuple(k for k in self.keys if "reads" in by_key[k])
            writes = tuple(k for k in self.keys if "writes" in by_key[k])
            appends = tuple(k for k in self.keys if "appends" in by_key[k])
            modes = lock_modes(reads, writes, appends)
            expected: dict[str, Mode] = {}
            for key in self.keys:
                if "writes" in by_key[key] or by_key[key] == {"reads", "appends"}:
                    expected[key] = "X"
                elif by_key[key] == {"reads"}:
                    expected[key] = "S"
                elif by_key[key] == {"appends"}:
                    expected[key] = "A"
            assert modes == expected, f"lock_modes{(reads, writes, appends)} = {modes}, expected {expected}"
            self.agents[name] = Agent(name, index, reads, writes, appends, modes, hold=self.policy == "hold")

    def expected(self, key: str) -> Any:
        if not self.items[key]:
            return self.base[key]
        base = self.base[key] if isinstance(self.base[key], list) else []
        return [*base, *(item for _, item in self.items[key])]

    def fresh(self, what: str) -> str:
        self.counter += 1
        return f"{what}{self.counter}"

    def with_status(self, status: str) -> list[str]:
        return [name for name, agent in self.agents.items() if agent.status == status]

    # -- the engine's moves ------------------------------------------------------------------

    def _release(self, agent: Agent) -> None:
        """``Performer._release``: take the hold locks first (or wait for them), then queue for a unit."""
        if agent.hold and not agent.locked:
            holders_before = set(self.locks.holders)
            agent.arrival = self.arrivals
            self.arrivals += 1
            waiting = list(self.locks.waiting.items())
            granted = self.locks.request(agent.name, agent.modes)
            newly = set(self.locks.holders) - holders_before
            self.check_grant([agent.name] if granted else [], [*waiting, (agent.name, agent.modes)], newly)
            if not granted:
                agent.status = "waiting"
                return
            agent.locked = True
        agent.status = "queued"

    def _issue(self, agent: Agent) -> None:
        """``Performer._issue``/``_request``: the snapshot, and under hold the RFO of the written keys."""
        agent.version += 1
        agent.status = "running"
        if agent.reads:
            agent.snapshot = {}
        for key in agent.reads:
            value, version = self.dir.read(agent.name, key)
            self.check_read(agent, key, value, version)
            agent.snapshot[key] = agent.copies[key] = version
        if agent.locked:
            for key in agent.writes:
                self.dir.acquire(agent.name, key)
                agent.copies[key] = self.versions[key]

    def _commit(self, agent: Agent, values: dict[str, Any], item: str, issue_now: bool) -> None:
        """``Performer._commit_state``."""
        name = agent.name
        stale = self.dir.stale(agent.snapshot) if agent.snapshot else []
        if stale:
            self.check_fresh_commit(agent, stale)  # fails if the agent holds hold locks
            if self.policy == "off":
                self.stale_commits += 1
            else:
                self.dir.release(name, agent.reads)
                for key in agent.reads:
                    agent.copies.pop(key, None)
                self._unlock(agent, issue_now)
                agent.replays += 1
                if agent.replays > self.max_replays and not agent.hold:
                    agent.hold = True
                self._release(agent)  # Performer._again
                return
        if not agent.locked and self.locks.holders:
            touched = (*agent.writes, *agent.appends)
            for holder, modes in self.locks.holders.items():
                if holder != name and any(key in modes for key in touched):
                    agent.status = "parked"
                    agent.pending = (values, item)
                    self.parked.setdefault(holder, []).append(name)
                    return
        self.check_fresh_commit(agent, [])
        # Who holds a valid copy of what this commit changes: the commit must cue each of them.
        changed = (*values, *agent.appends)
        holders = {key: {o for o in self.agents if o != name and self.dir.state(o, key) != "I"} for key in changed}
        for key in values:
            self.dir.write(name, key)
        self.check_swmr(writer=name, written=values)  # after the RFOs, before the write-back
        cued = self.dir.commit(name, agent.version, values, dict.fromkeys(agent.appends, item), agent.index)
        self.check_cues(name, holders, cued)
        for key, value in values.items():
            self.versions[key] += 1
            self.base[key] = value
            self.items[key] = []
        for key in agent.appends:
            self.versions[key] += 1
            bisect.insort(self.items[key], ((agent.index, agent.version), item))
        self.dir.release(name, agent.reads)
        agent.snapshot = {}
        agent.copies = {}
        agent.status = "idle"  # done (a vamp pass may release it again)
        self._unlock(agent, issue_now)
        self.check_released(agent)

    def _unlock(self, agent: Agent, issue_now: bool) -> None:
        """``Performer._unlock``: release the locks, let the granted go, retry the parked commits."""
        if not agent.locked:
            return
        agent.locked = False
        waiting = list(self.locks.waiting.items())
        holders_before = set(self.locks.holders) - {agent.name}
        granted = self.locks.release(agent.name)
        self.check_grant(granted, waiting, set(self.locks.holders) - holders_before)
        parked = self.parked.pop(agent.name, [])
        for name in granted:
            waiter = self.agents[name]
            assert waiter.status == "waiting", f"{name} was granted locks while {waiter.status}"
            waiter.locked = True
            waiter.status = "queued"
            if issue_now:  # a unit is free: Performer._granted issues it at once
                self._issue(waiter)
        for name in parked:
            waiter = self.agents[name]
            assert waiter.pending is not None
            values, item = waiter.pending
            waiter.pending = None
            waiter.status = "running"
            self._commit(waiter, values, item, issue_now)

    # -- the steps ---------------------------------------------------------------------------
    #
    # One rule draws one of the moves the engine could make now, each on an agent in the status
    # that allows it. (Four rules with preconditions would let Hypothesis's swarm testing disable
    # the only enabled rule and throw the run away.)

    def moves(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name, agent in self.agents.items():
            if agent.status == "running":
                found += [("commit", name), ("commit", name), ("squash", name)]  # commits twice as often
            elif agent.status == "queued":
                found.append(("issue", name))
            elif agent.status == "idle":
                found.append(("release", name))
        return sorted(found)

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        moves = self.moves()
        # Everyone waiting for locks or parked behind a holder, and no holder to run: stuck.
        assert moves, f"no move left: {[(a.name, a.status) for a in self.agents.values()]}"
        move, name = data.draw(st.sampled_from(moves), label="move")
        STEPS["n"] += 1
        getattr(self, move)(self.agents[name], data)

    def release(self, agent: Agent, data: st.DataObject) -> None:
        """The dispatch policy lets an idle agent go (its first pass, or a vamp pass)."""
        self._release(agent)
        if agent.status == "queued" and data.draw(st.booleans(), label="unit free"):
            self._issue(agent)

    def issue(self, agent: Agent, data: st.DataObject) -> None:
        """A unit is free for a queued agent."""
        self._issue(agent)

    def commit(self, agent: Agent, data: st.DataObject) -> None:
        """The agent's call returned: fresh values for the keys it writes, one item for those it appends."""
        values: dict[str, Any] = {
            key: [self.fresh(f"{agent.name}:{key}=")] if self.listy[key] else self.fresh(f"{agent.name}:{key}=")
            for key in agent.writes
        }
        self._commit(agent, values, self.fresh(f"{agent.name}+"), data.draw(st.booleans(), label="units free"))

    def squash(self, agent: Agent, data: st.DataObject) -> None:
        """``Performer._fail``: the agent's call failed; nothing it would have written may show."""
        self.dir.release(agent.name, agent.modes)
        agent.snapshot = {}
        agent.copies = {}
        agent.status = "idle"  # terminal in the engine; here it may run again (a later pass)
        self._unlock(agent, data.draw(st.booleans(), label="units free"))
        self.check_released(agent)  # and check_data: the directory holds only what the ghost committed

    # -- invariants, after every step ------------------------------------------------------------

    @invariant()
    def single_writer_multiple_readers(self) -> None:
        self.check_swmr()

    @invariant()
    def data_value(self) -> None:
        self.check_data()

    @invariant()
    def no_stale_commit_unless_off(self) -> None:
        self.check_fresh_commit(None, [])

    @invariant()
    def hold_is_live_safe_and_fifo(self) -> None:
        self.check_hold()

    # -- 1. single writer, multiple readers -------------------------------------------------------

    def check_swmr(self, writer: str | None = None, written: dict[str, Any] | None = None) -> None:
        for key in self.keys:
            states = {name: self.dir.state(name, key) for name in self.agents}
            owners = [name for name, s in states.items() if s in ("E", "M")]
            assert len(owners) <= 1, f"{key}: several owners {states}"
            if owners:
                assert "S" not in states.values(), f"{key}: {owners[0]} owns it while others share it: {states}"
            if written and key in written:
                assert writer is not None, "what was written names its writer"
                assert states[writer] == "M", f"{writer} wrote {key}, yet it is {states[writer]}: {states}"

    # -- 2. data value ----------------------------------------------------------------------------

    def check_data(self) -> None:
        for key in self.keys:
            line = self.dir.lines[key]
            assert line.version == self.versions[key], (
                f"{key} at version {line.version} after {self.versions[key]} commits"
            )
            assert self.dir.value(key) == self.expected(key), (
                f"{key} = {self.dir.value(key)!r}, the commits made it {self.expected(key)!r}"
            )
            for name, agent in self.agents.items():
                state = self.dir.state(name, key)
                if state == "I":
                    # Hold locks keep every writer away from what a holder read or owns.
                    lost = agent.locked and agent.status == "running" and key in agent.copies
                    assert not lost, f"{name} holds hold locks yet lost its copy of {key}"
                    continue
                assert agent.status in ("running", "parked"), f"{name} is {agent.status} yet holds {key} in {state}"
                assert key in agent.copies, f"{name} holds {key} in {state} but never read or acquired it"
                assert agent.copies[key] == line.version, (
                    f"{name} holds {key} in {state} with a copy of version {agent.copies[key]}, current {line.version}"
                )
                if state == "S":
                    assert line.sharers[name] == line.version, f"{name} shares {key} at {line.sharers[name]}"

    def check_read(self, agent: Agent, key: str, value: Any, version: int) -> None:
        assert version == self.versions[key], f"{agent.name} read {key} at {version}, current {self.versions[key]}"
        assert value == self.expected(key), f"{agent.name} read {key} = {value!r}, not {self.expected(key)!r}"

    def check_cues(self, name: str, holders: dict[str, set[str]], cued: dict[str, list[str]]) -> None:
        for key, held in holders.items():
            missed = held - set(cued.get(key, ()))
            assert not missed, f"{name}'s commit of {key} does not cue {sorted(missed)}, who held copies"

    def check_released(self, agent: Agent) -> None:
        held = {key: self.dir.state(agent.name, key) for key in self.keys}
        assert set(held.values()) == {"I"}, f"{agent.name} is done and still holds {held}"

    # -- 3. no stale commit -------------------------------------------------------------------

    def check_fresh_commit(self, agent: Agent | None, stale: list[str]) -> None:
        """``agent`` commits (``stale`` empty) or finds ``stale`` keys in its snapshot."""
        assert self.policy == "off" or self.stale_commits == 0
        if agent is None:
            return
        assert not (stale and agent.locked), f"{agent.name} held its hold locks and still read stale {stale}"
        if not stale and self.policy != "off":
            moved = {k: (v, self.versions[k]) for k, v in agent.snapshot.items() if v != self.versions[k]}
            assert not moved, f"{agent.name} commits under {self.policy} what it read at stale versions {moved}"

    # -- 4. hold: safe, live, FIFO ------------------------------------------------------------

    def check_grant(self, granted: list[str], queue: list[tuple[str, dict[str, Mode]]], newly: set[str]) -> None:
        """``granted`` (the table's answer) out of ``queue`` (the requests waiting, in order)."""
        assert newly == set(granted), f"the table made {sorted(newly)} holders but reported {granted}"
        order = [name for name, _ in queue]
        for got in granted:
            for other, modes in queue[: order.index(got)]:
                if other in self.locks.waiting:
                    assert not conflict(self.agents[got].modes, modes), f"{got} overtook {other}'s earlier request"

    def check_hold(self) -> None:
        holders, waiting = self.locks.holders, self.locks.waiting
        names = list(holders)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                assert not conflict(holders[first], holders[second]), f"{first} and {second} hold conflicting locks"
        queue = list(waiting.items())
        for position, (name, modes) in enumerate(queue):
            # Nothing waits without a reason (a conflicting holder, or a conflicting earlier waiter
            # ahead of it), so with no holder left nobody waits: hold never deadlocks.
            blocked = any(conflict(modes, held) for held in holders.values()) or any(
                conflict(modes, ahead) for _, ahead in queue[:position]
            )
            assert blocked, f"{name} waits for {modes} though nothing blocks it (holders {holders})"
            for holder in names:  # FIFO: a later conflicting request never overtakes a waiting one
                if self.agents[holder].arrival > self.agents[name].arrival:
                    assert not conflict(modes, holders[holder]), f"{holder} overtook {name}'s earlier request"
        if not holders:
            assert not waiting, f"no agent holds a lock, yet {list(waiting)} wait"
        assert set(waiting) == set(self.with_status("waiting"))
        assert set(holders) == {name for name, agent in self.agents.items() if agent.locked}
        for name in holders:
            assert self.agents[name].status in ("queued", "running"), f"{name} holds locks while not running"
        for holder, behind in self.parked.items():
            assert holder in holders, f"{behind} are parked behind {holder}, which holds no lock"
        assert sorted(n for behind in self.parked.values() for n in behind) == sorted(self.with_status("parked"))
        if self.policy != "replay":  # only replay escalates agents to hold, so only then do commits park
            assert not self.parked
            assert all(agent.hold == (self.policy == "hold") for agent in self.agents.values())


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def test_the_directory_and_the_hold_locks_keep_their_invariants_over_10000_steps() -> None:
    STEPS["n"] = 0
    run_state_machine_as_test(CoherenceMachine, settings=SETTINGS)
    assert STEPS["n"] >= MIN_STEPS, f"only {STEPS['n']} state-machine steps ran"


# -- the engine: hold must not deadlock when the budget stops the run -----------------------------


def test_a_budget_stop_under_hold_leaves_nobody_waiting_for_locks() -> None:
    model, prompt, out, max_tokens = "claude-sonnet-4-5", 2000, 1100, 1200
    agent = {
        "prompt": "p",
        "model": model,  # pinned: the governor cannot step down, it stops
        "max_tokens": max_tokens,
        "writes": ["k"],
        "simulate": {"latency_ms": 0, "prompt_tokens": prompt, "output_tokens": out},
    }
    program = program_of({name: dict(agent) for name in ("a", "b", "c")}, state={"k": {"initial": ""}})
    budget = 1.2 * worst_case_usd(model, prompt, max_tokens)  # a's call fits, b's does not after it
    assert budget > 0, f"no price for {model}"
    performer = Performer(
        program, Hands(lambda spec: SimulatedProvider(0)), options=EngineOptions(budget_usd=budget, coherence="hold")
    )

    async def run() -> Any:
        return await asyncio.wait_for(performer.run(), 2.0)

    # a holds X on k; b and c wait. a commits, b is granted, the budget stops b: b is skipped
    # holding its lock, so c is never granted, never skipped, and the run never settles.
    result = asyncio.run(run())
    assert result.status == "budget_exhausted"
    assert {name: record.status for name, record in result.agents.items()} == {
        "a": "done",
        "b": "skipped",
        "c": "skipped",
    }
