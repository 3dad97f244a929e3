"""Property test: on random DAGs, every policy respects every dependency.

For each random score (1-25 agents, each cueing up to three earlier agents, random simulated
latency) and each dispatch policy, the run completes; every agent starts only after all of its
cues finished and records the version of each; and each policy keeps its own promise:

* reactive fires a station right after its last operand's cue, before any other commit;
* batch issues in supersteps, and a station's superstep is its depth in the tag graph;
* sequential keeps one call in flight, in the program's topological order.

Outputs, tokens and costs are the same under all three policies. A second property adds
scarce functional units and failing agents.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands, RunResult, perform
from hct_cli.events import Event
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.routing import DEFAULT_TIERS, TIER_ORDER
from hct_cli.providers.base import CallRequest, ProviderError
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import DYNAMICS, build_score
from hct_cli.score.tempo import TEMPOS

pytestmark = pytest.mark.timeout(60)

POLICIES = ("reactive", "batch", "sequential")


@st.composite
def dag_scores(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=25))
    agents: dict[str, Any] = {}
    for i in range(n):
        earlier = [f"a{j}" for j in range(i)]
        cues: list[str] = []
        if earlier:
            cues = draw(st.lists(st.sampled_from(earlier), max_size=min(3, i), unique=True))
        low = draw(st.integers(min_value=0, max_value=20))
        high = draw(st.integers(min_value=low, max_value=20))
        agent: dict[str, Any] = {
            "prompt": f"step {i}" + "".join(f" {{{{ cues.{c} }}}}" for c in cues),
            "simulate": {"latency_ms": [low, high]},
            "tempo": draw(st.sampled_from(list(TEMPOS))),
            "dynamics": draw(st.sampled_from(list(DYNAMICS))),  # spreads agents over the tiers
        }
        if cues:
            agent["cues"] = cues
        if i > 0 and draw(st.integers(min_value=0, max_value=9)) == 0:
            agent["downbeat"] = True  # waits for every earlier agent
        agents[f"a{i}"] = agent
    return {"hct": 1, "name": "dag", "agents": agents}


def check_common(program: Program, result: RunResult) -> None:
    assert result.status == "completed"
    for name, spec in program.stations.items():
        record = result.agents[name]
        assert record.status == "done", (name, record.status, record.error)
        assert record.version == 1
        assert record.started_s is not None and record.finished_s is not None
        assert record.started_s <= record.finished_s
        for tag in spec.tags:
            finished = result.agents[tag].finished_s
            assert finished is not None
            assert record.started_s >= finished, f"{name} started before its cue {tag} finished"
        assert record.operands == dict.fromkeys(spec.tags, 1)


def check_reactive(program: Program, events: list[Event]) -> None:
    flow = [(e.kind, e.station) for e in events if e.kind in ("issue", "cue")]
    position = {item: i for i, item in enumerate(flow)}
    first_cue = next(i for i, (kind, _) in enumerate(flow) if kind == "cue")
    for name, spec in program.stations.items():
        issued = position[("issue", name)]
        if not spec.tags:
            assert issued < first_cue, f"root {name} was not issued at the start"
            continue
        last = max(position[("cue", tag)] for tag in spec.tags)
        assert last < issued
        between = [kind for kind, _ in flow[last + 1 : issued]]
        assert "cue" not in between, f"{name} did not fire on its last operand's broadcast"


def depth(program: Program) -> dict[str, int]:
    levels: dict[str, int] = {}
    for name in program.order:
        tags = program.stations[name].tags
        levels[name] = 1 + max((levels[t] for t in tags), default=-1)
    return levels


def check_batch(program: Program, events: list[Event]) -> None:
    flow = [(e.kind, e.station) for e in events if e.kind in ("issue", "cue")]
    superstep = -1
    in_flight = 0
    previous = "cue"
    step_of: dict[str, int] = {}
    for kind, name in flow:
        assert name is not None
        if kind == "issue":
            if previous == "cue":
                assert in_flight == 0, "a superstep began while the previous one still ran"
                superstep += 1
            step_of[name] = superstep
            in_flight += 1
        else:
            in_flight -= 1
        previous = kind
    assert step_of == depth(program)


def check_sequential(program: Program, events: list[Event]) -> None:
    flow = [(e.kind, e.station) for e in events if e.kind in ("issue", "cue")]
    assert [kind for kind, _ in flow] == ["issue", "cue"] * len(program.order)
    assert tuple(name for kind, name in flow if kind == "issue") == program.order


CHECKS = {"reactive": check_reactive, "batch": check_batch, "sequential": check_sequential}


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=dag_scores(), seed=st.integers(min_value=0, max_value=2**32))
def test_every_dependency_finishes_before_its_dependent_starts(data: dict[str, Any], seed: int) -> None:
    program = compile_score(build_score(data))
    figures: dict[str, dict[str, tuple[Any, ...]]] = {}
    for policy in POLICIES:
        events: list[Event] = []
        result = asyncio.run(
            perform(
                program,
                Hands(lambda spec: SimulatedProvider(seed, time_scale=0.5)),
                observers=[events.append],
                options=EngineOptions(dispatch=policy),
            )
        )
        check_common(program, result)
        CHECKS[policy](program, events)
        figures[policy] = {
            name: (r.output, r.prompt_tokens, r.completion_tokens, r.cost_usd) for name, r in result.agents.items()
        }
    assert figures["reactive"] == figures["batch"] == figures["sequential"]


class Metered:
    """Simulated calls, with a per-tier count of calls in flight and chosen agents failing."""

    def __init__(self, seed: int, failing: frozenset[str] = frozenset()) -> None:
        self.inner = SimulatedProvider(seed, time_scale=0.5)
        self.failing = failing
        self.in_flight: dict[str | None, int] = {}
        self.peak: dict[str | None, int] = {}
        self.called: list[str] = []

    async def call(self, request: CallRequest) -> CallResult:
        tier = request.tier
        self.called.append(request.agent.name)
        self.in_flight[tier] = self.in_flight.get(tier, 0) + 1
        self.peak[tier] = max(self.peak.get(tier, 0), self.in_flight[tier])
        try:
            result = await self.inner.call(request)
        finally:
            self.in_flight[tier] -= 1
        if request.agent.name in self.failing:
            raise ProviderError(f"{request.agent.name} failed on purpose")
        return result


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=dag_scores(),
    seed=st.integers(min_value=0, max_value=2**32),
    limits=st.fixed_dictionaries({tier: st.integers(min_value=1, max_value=3) for tier in TIER_ORDER}),
    policy=st.sampled_from(POLICIES),
    failures=st.sets(st.integers(min_value=0, max_value=24), max_size=2),
)
def test_units_and_failures_on_random_dags(
    data: dict[str, Any], seed: int, limits: dict[str, int], policy: str, failures: set[int]
) -> None:
    """Scarce units and failing agents: limits hold, and exactly the failures' descendants skip."""
    data = {
        **data,
        "routing": {
            "tiers": {tier: {"model": DEFAULT_TIERS[tier].model, "concurrency": n} for tier, n in limits.items()}
        },
    }
    program = compile_score(build_score(data))
    failing = frozenset(f"a{i}" for i in failures) & set(program.stations)
    provider = Metered(seed, failing)
    result = asyncio.run(perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch=policy)))

    for tier, peak in provider.peak.items():
        assert tier is not None
        assert peak <= limits[tier], f"tier {tier} ran {peak} calls at once, limit {limits[tier]}"
    doomed: set[str] = set()
    for name in program.order:
        if any(tag in failing or tag in doomed for tag in program.stations[name].tags):
            doomed.add(name)
    assert result.status == ("failed" if failing else "completed")
    for name, spec in program.stations.items():
        record = result.agents[name]
        if name in doomed:
            assert record.status == "skipped", name
            assert name not in provider.called
        elif name in failing:
            assert record.status == "failed", name
            assert record.error == f"{name} failed on purpose"
        else:
            assert record.status == "done", (name, record.status, record.error)
            assert record.started_s is not None
            for tag in spec.tags:
                finished = result.agents[tag].finished_s
                assert finished is not None and record.started_s >= finished
    assert sorted(provider.called) == sorted(set(program.stations) - doomed)
