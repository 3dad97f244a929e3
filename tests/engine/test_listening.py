"""Listening (L5 prefetch): before a fan-out, the first call with a shared prefix writes the
provider's prompt cache and the others read it, as far as their tempo lets them wait.

The scenario is ``scores/shared-context.yaml``: six frontier reviewers (claude-sonnet-4-5) quote
the same ~20,000-token diff, which the layout moves into the shared section, so all six send one
prefix. It runs through the real loader, compiler and engine on the simulated provider (which
models the prompt cache and the time to first token), wrapped to log, in order, when each call
starts, when its first token is out and when it ends. Tests assert those orderings and counts,
never durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands, Performer, RunResult
from hct_cli.engine import listening as listening_module
from hct_cli.engine.listening import wait_of
from hct_cli.events import Event
from hct_cli.models import model_info
from hct_cli.program.compile import compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.providers.base import CallRequest, Provider, ProviderError
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score import Score
from hct_cli.score.tempo import TEMPI, Tempo
from hct_cli.store.cache import ResultCache
from hct_cli.store.cached import CachingProvider
from hct_cli.store.home import connect
from tests.engine.fakes import eventually, kinds, settle

pytestmark = pytest.mark.timeout(60)

SCORE = Path(__file__).resolve().parents[2] / "scores" / "shared-context.yaml"
REVIEWERS = ("security", "performance", "correctness", "concurrency", "api", "tests")
FRONTIER = "claude-sonnet-4-5"
#: Simulated latencies run fifty times faster; nothing below depends on how fast.
SCALE = 0.02

Log = list[tuple[str, str, str]]  # (what: start, first_token, end, failed; agent; purpose)


# -- providers -------------------------------------------------------------------------------------


class Silent:
    """Wraps a provider and logs each call's start and end; says nothing of first tokens (it has
    no ``first_token_notes``), so a leader's cache is written by a warm-up call."""

    def __init__(self, inner: Provider, *, fails: Callable[[CallRequest], bool] | None = None) -> None:
        self.inner = inner
        self.fails = fails
        self.log: Log = []
        self.requests: list[CallRequest] = []

    def of(self, name: str, purpose: str = "call") -> list[CallRequest]:
        return [r for r in self.requests if (r.agent.name, r.purpose) == (name, purpose)]

    def at(self, what: str, name: str, purpose: str = "call") -> int:
        return self.log.index((what, name, purpose))

    async def call(self, request: CallRequest) -> CallResult:
        name, purpose = request.agent.name, request.purpose
        self.requests.append(request)
        self.log.append(("start", name, purpose))
        if self.fails is not None and self.fails(request):
            await asyncio.sleep(0)
            self.log.append(("failed", name, purpose))
            raise ProviderError(f"{name} ({purpose}) refused by the test")
        noted = request.on_first_token
        if noted is not None:

            def first_token() -> None:
                self.log.append(("first_token", name, purpose))
                noted()

            request.on_first_token = first_token
        result = await self.inner.call(request)
        self.log.append(("end", name, purpose))
        return result


class Watch(Silent):
    """As :class:`Silent`, for a provider that reports its first tokens (the simulated one)."""

    first_token_notes = True


class HeldFirstToken:
    """Answers at once, except that a call waiting for its first token (a leader's) holds it
    until the test releases it. Logs each call's start and the first token."""

    first_token_notes = True

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.log: Log = []

    def started(self) -> set[str]:
        return {name for what, name, _ in self.log if what == "start"}

    async def call(self, request: CallRequest) -> CallResult:
        name = request.agent.name
        self.log.append(("start", name, request.purpose))
        if request.on_first_token is not None:
            await self.released.wait()
            self.log.append(("first_token", name, request.purpose))
            request.on_first_token()
        return CallResult(f"<{name}>", request.model, 100, 10, 0.0, 0.0, request.tier)


# -- scores and runs -------------------------------------------------------------------------------


@cache
def _base() -> Score:
    return load_score(SCORE)


def reviewers_at(tempo: Tempo = "moderato", *, model: str | None = None, **extra_agents: Any) -> Score:
    """The score with its six reviewers at ``tempo`` (and pinned to ``model``), plus any agents given."""
    base = _base()
    agents = {
        name: replace(a, tempo=tempo, model=model or a.model) if name in REVIEWERS else a
        for name, a in base.agents.items()
    }
    for name, fields in extra_agents.items():
        agents[name] = replace(base.agents["security"], name=name, index=len(agents), **fields)
    return replace(base, agents=MappingProxyType(agents))


def perform(
    score: Score, provider: Provider, *, inputs: dict[str, Any] | None = None, listening: bool = True
) -> tuple[RunResult, list[Event], Performer]:
    events: list[Event] = []
    performer = Performer(
        compile_score(score),
        Hands(lambda spec: provider),
        inputs=resolve_inputs(score, inputs or {}),
        observers=[events.append],
        options=EngineOptions(listening=listening),
    )
    return asyncio.run(performer.run()), events, performer


def simulated(seed: int = 0) -> SimulatedProvider:
    return SimulatedProvider(seed, time_scale=SCALE)


def listens(events: list[Event]) -> dict[str, dict[str, Any]]:
    """Each follower's ``listen`` decision, by station."""
    found = {e.station: dict(e.data) for e in kinds(events, "listen")}
    assert len(found) == len(kinds(events, "listen")), "one decision per call"
    return found  # type: ignore[return-value]


def leader_of(events: list[Event]) -> str:
    decisions = listens(events)
    [leader] = {d["leader"] for d in decisions.values()}
    return str(leader)


def reviewers_input_cost(result: RunResult) -> float:
    return sum(result.agents[name].input_cost_usd for name in REVIEWERS)


def errors(result: RunResult) -> dict[str, str | None]:
    return {name: r.error for name, r in result.agents.items() if r.error}


# -- the policy's decisions, tempo by tempo --------------------------------------------------------


def test_wait_of_each_tempo() -> None:
    assert wait_of("presto") == 0.0
    allegro = TEMPI["allegro"].listen_wait_s
    assert allegro is not None and wait_of("allegro") == allegro > 0
    assert [wait_of(t) for t in ("moderato", "andante", "largo")] == [None, None, None]


def test_moderato_followers_wait_for_the_leaders_first_token_and_read_its_cache() -> None:
    provider = Watch(simulated())
    result, events, performer = perform(reviewers_at("moderato"), provider)
    assert result.status == "completed", errors(result)

    # The first reviewer issued leads; each of the other five listens to it, until it is written.
    issued = [e.station for e in kinds(events, "issue") if e.station in REVIEWERS]
    leader = issued[0]
    followers = [name for name in REVIEWERS if name != leader]
    decisions = listens(events)
    assert sorted(decisions) == sorted(followers)
    info = model_info(FRONTIER)
    assert info is not None
    request = provider.of(leader)[0]
    assert request.model == FRONTIER and request.shared  # the diff went to the shared section
    for decision in decisions.values():
        assert decision["leader"] == leader
        assert decision["wait"] == "until_written"
        assert decision["how"] == "first_token"
        assert decision["prefix_tokens"] == request.prefix_tokens >= 19_000
        expected = decision["prefix_tokens"] * (info.input_cost_per_token - (info.cache_read_cost_per_token or 0))
        assert decision["expected_saving_usd"] == pytest.approx(expected, rel=1e-6)
    # Each decision is made when the follower is issued, after the leader was issued.
    for name in followers:
        assert events.index(next(e for e in kinds(events, "issue") if e.station == leader)) < events.index(
            next(e for e in kinds(events, "listen") if e.station == name)
        )

    # Causality: every follower's call starts after the leader's first token is out.
    first_token = provider.at("first_token", leader)
    assert provider.at("start", leader) < first_token
    assert all(provider.at("start", name) > first_token for name in followers)
    assert [what for what, name, _ in provider.log if what == "first_token"] == ["first_token"]  # the leader's only

    # The leader writes the cache (Anthropic charges the write); the five followers read it.
    records = result.agents
    assert records[leader].cache_write_tokens > 0 and records[leader].cached_tokens == 0
    assert all(records[name].cached_tokens > 0 and records[name].cache_write_tokens == 0 for name in followers)
    assert sum(1 for name in REVIEWERS if records[name].cached_tokens > 0) == 5
    assert sum(1 for name in REVIEWERS if records[name].cache_write_tokens > 0) == 1
    assert all(not records[name].warm_ups for name in REVIEWERS)
    assert performer.listening.to_json() == {"followers": 5, "warm_ups": 0}


def test_allegro_followers_wait_bounded_and_presto_followers_never_wait() -> None:
    # About 6,000 tokens of diff: the cache is expected within the allegro bound, so they wait.
    shorter = {"diff": resolve_inputs(_base(), {})["diff"][:24_000]}
    allegro, allegro_events, _ = perform(reviewers_at("allegro"), Watch(simulated()), inputs=shorter)
    assert allegro.status == "completed", errors(allegro)
    decisions = listens(allegro_events)
    assert len(decisions) == 5 and {d["wait"] for d in decisions.values()} == {"bounded"}
    assert all(d["expected_saving_usd"] > 0 for d in decisions.values())
    assert all(d["expected_wait_s"] <= TEMPI["allegro"].listen_wait_s for d in decisions.values())
    assert sum(1 for name in REVIEWERS if allegro.agents[name].cached_tokens > 0) == 5

    # The whole 20,000-token diff takes longer to cache than allegro may wait: they go at once.
    allegro, allegro_events, _ = perform(reviewers_at("allegro"), Watch(simulated()))
    decisions = listens(allegro_events)
    assert len(decisions) == 5 and {d["wait"] for d in decisions.values()} == {"never"}
    assert all(d["expected_wait_s"] > TEMPI["allegro"].listen_wait_s for d in decisions.values())

    provider = Watch(simulated())
    presto, events, performer = perform(reviewers_at("presto"), provider)
    assert presto.status == "completed", errors(presto)
    decisions = listens(events)
    leader = leader_of(events)
    assert sorted(decisions) == sorted(n for n in REVIEWERS if n != leader)
    assert {d["wait"] for d in decisions.values()} == {"never"}
    assert {d["expected_saving_usd"] for d in decisions.values()} == {0.0}
    # All six go together, before the leader's first token: none of them reads the cache.
    first_token = provider.at("first_token", leader)
    assert all(provider.at("start", name) < first_token for name in REVIEWERS)
    assert all(presto.agents[name].cached_tokens == 0 for name in REVIEWERS)
    assert all(presto.agents[name].cache_write_tokens > 0 for name in REVIEWERS)
    assert performer.listening.to_json() == {"followers": 0, "warm_ups": 0}


@pytest.mark.parametrize("tempo", ["andante", "largo"])
def test_slower_tempi_wait_until_written_on_automatic_caching_too(tempo: Tempo) -> None:
    """andante x f routes to gpt-4o-mini (OpenAI: caching is automatic, writes cost the plain price)."""
    provider = Watch(simulated())
    result, events, _ = perform(reviewers_at(tempo), provider)
    assert result.status == "completed", errors(result)
    leader = leader_of(events)
    followers = [n for n in REVIEWERS if n != leader]
    info = model_info(result.agents[leader].model or "")
    assert info is not None and info.caches_prompts and not info.explicit_cache
    assert {d["wait"] for d in listens(events).values()} == {"until_written"}
    first_token = provider.at("first_token", leader)
    assert all(provider.at("start", name) > first_token for name in followers)
    assert all(result.agents[name].cached_tokens > 0 for name in followers)
    assert all(result.agents[name].cache_write_tokens == 0 for name in REVIEWERS)  # no write surcharge


def test_a_bounded_follower_goes_without_the_cache_once_its_bound_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's first token never comes while the test holds it: allegro followers go
    anyway once their (shortened) bound is up; moderato followers keep waiting until it comes."""
    monkeypatch.setattr(listening_module, "TEMPI", {**TEMPI, "allegro": replace(TEMPI["allegro"], listen_wait_s=0.02)})
    monkeypatch.setattr(listening_module, "time_to_first_token_s", lambda info, tokens: 0.01)  # worth waiting for

    def scenario(tempo: Tempo) -> tuple[HeldFirstToken, set[str], RunResult]:
        provider = HeldFirstToken()
        score = reviewers_at(tempo)
        performer = Performer(compile_score(score), Hands(lambda spec: provider), inputs=resolve_inputs(score, {}))
        seen: set[str] = set()

        async def run() -> RunResult:
            task = asyncio.create_task(performer.run())
            await eventually(lambda: len(provider.started() & set(REVIEWERS)) >= 1, "the leader's call starts")
            if tempo == "allegro":
                await eventually(lambda: set(REVIEWERS) <= provider.started(), "the followers go unheard")
            else:
                await settle(200)
            seen.update(provider.started())
            provider.released.set()
            return await task

        return provider, seen, asyncio.run(run())

    provider, before_release, result = scenario("allegro")
    assert result.status == "completed", errors(result)
    assert set(REVIEWERS) <= before_release  # all six started while the leader's first token was held

    provider, before_release, result = scenario("moderato")
    assert result.status == "completed", errors(result)
    [leader] = before_release & set(REVIEWERS)  # only the leader went before its first token
    first_token = provider.log.index(("first_token", leader, "call"))
    assert all(provider.log.index(("start", n, "call")) > first_token for n in REVIEWERS if n != leader)


def test_without_listening_nobody_listens_and_every_reviewer_writes() -> None:
    result, events, performer = perform(reviewers_at("moderato"), Watch(simulated()), listening=False)
    assert result.status == "completed", errors(result)
    assert kinds(events, "listen") == []
    assert all(result.agents[n].cached_tokens == 0 and result.agents[n].cache_write_tokens > 0 for n in REVIEWERS)
    assert performer.listening.to_json() == {"followers": 0, "warm_ups": 0}


def test_listening_cuts_the_reviewers_input_cost_to_at_most_035_of_the_run_without_it() -> None:
    for seed in (0, 1):
        with_listening, _, _ = perform(reviewers_at("moderato"), simulated(seed))
        without, _, _ = perform(reviewers_at("moderato"), simulated(seed), listening=False)
        assert with_listening.status == without.status == "completed"
        # Same seed, same prompts, same draws: only the cache differs.
        for name in REVIEWERS:
            assert with_listening.agents[name].prompt_tokens == without.agents[name].prompt_tokens
            assert with_listening.agents[name].output == without.agents[name].output
        assert reviewers_input_cost(with_listening) <= 0.35 * reviewers_input_cost(without)
        assert with_listening.input_cost_usd < without.input_cost_usd
        assert with_listening.cost_usd < without.cost_usd


def test_a_prefix_written_earlier_is_warm_later_calls_go_at_once_and_read_it() -> None:
    """A reviewer cued by one of the six sends the same prefix after the cache is written."""
    score = reviewers_at("moderato", late={"cues": ("security",), "prompt": "Check the fixes in {{ inputs.diff }}"})
    provider = Watch(simulated())
    result, events, _ = perform(score, provider)
    assert result.status == "completed", errors(result)
    assert provider.of("late")[0].prefix == provider.of("security")[0].prefix
    assert "late" not in listens(events)
    assert result.agents["late"].cached_tokens > 0 and result.agents["late"].cache_write_tokens == 0


# -- when there is nothing to listen for -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "diff_chars", "listened"),
    [
        (None, 2_000, False),  # ~500 tokens: below claude-sonnet-4-5's 1,024
        ("claude-haiku-4-5", 6_000, False),  # ~1,500 tokens: below Haiku's 2,048
        ("claude-sonnet-4-5", 6_000, True),  # the same prefix on Sonnet is long enough
        ("ollama/llama3.1", 12_000, False),  # ~3,000 tokens, but the price map gives no cache price
    ],
)
def test_a_prefix_too_short_to_cache_or_a_model_without_cache_prices_gives_no_decisions(
    model: str | None, diff_chars: int, listened: bool
) -> None:
    diff = ("+ cache.put(key, value, ttl=30)  # a line of the change\n" * (diff_chars // 56 + 1))[:diff_chars]
    provider = Watch(simulated())
    result, events, performer = perform(reviewers_at("moderato", model=model), provider, inputs={"diff": diff})
    assert result.status == "completed", errors(result)
    requests = [provider.of(name)[0] for name in REVIEWERS]
    assert all(r.shared for r in requests)  # the diff is in the shared section all the same
    assert len({r.prefix for r in requests}) == 1
    info = model_info(requests[0].model)
    assert info is not None
    if listened:
        assert len(listens(events)) == 5
        return
    assert not info.caches_prompts or requests[0].prefix_tokens < info.min_cacheable_tokens
    assert kinds(events, "listen") == []
    assert performer.listening.to_json() == {"followers": 0, "warm_ups": 0}
    assert all(result.agents[n].cached_tokens == result.agents[n].cache_write_tokens == 0 for n in REVIEWERS)


# -- warm-ups --------------------------------------------------------------------------------------


def test_without_first_token_reports_a_one_token_warm_up_writes_the_cache_before_anyone_goes() -> None:
    provider = Silent(simulated())
    assert not hasattr(provider, "first_token_notes")
    result, events, performer = perform(reviewers_at("moderato"), provider)
    assert result.status == "completed", errors(result)

    leader = leader_of(events)
    decisions = listens(events)
    assert len(decisions) == 5 and {d["how"] for d in decisions.values()} == {"warm_up"}
    assert {d["wait"] for d in decisions.values()} == {"until_written"}

    # One warm-up, made for the leader: one token, the same frame and shared section.
    [warm] = [r for r in provider.requests if r.purpose == "warm_up"]
    call = provider.of(leader)[0]
    assert warm.agent.name == leader
    assert warm.agent.max_tokens == 1
    assert (warm.model, warm.system, warm.shared) == (call.model, call.system, call.shared)
    assert warm.on_first_token is None and call.on_first_token is None

    # It ends before any reviewer's call starts, the leader's own included.
    warmed = provider.at("end", leader, "warm_up")
    assert all(provider.at("start", name) > warmed for name in REVIEWERS)

    # It is recorded, journaled as a result with purpose "warm_up", and paid for.
    record = result.agents[leader]
    assert len(record.warm_ups) == 1 and all(not result.agents[n].warm_ups for n in REVIEWERS if n != leader)
    [event] = [e for e in kinds(events, "result") if e.data.get("purpose") == "warm_up"]
    assert event.station == leader
    cost = record.warm_ups[0].result.cost_usd
    assert cost > 0 and event.data["cost_usd"] == pytest.approx(cost)
    assert record.warm_ups[0].result.cache_write_tokens > 0
    assert result.cost_usd == pytest.approx(sum(e.data["cost_usd"] for e in kinds(events, "result")))
    calls_only = sum(r.result.result.cost_usd for r in result.agents.values() if r.result is not None)
    assert result.cost_usd - calls_only == pytest.approx(cost)
    assert record.calls == 2

    # Then all six calls, the leader's too, read the cache the warm-up wrote.
    assert all(result.agents[n].result.result.cached_tokens > 0 for n in REVIEWERS)  # type: ignore[union-attr]
    assert performer.listening.to_json() == {"followers": 5, "warm_ups": 1}


def test_no_warm_up_when_no_follower_would_wait() -> None:
    provider = Silent(simulated())
    result, events, performer = perform(reviewers_at("presto"), provider)
    assert result.status == "completed", errors(result)
    assert {d["wait"] for d in listens(events).values()} == {"never"}
    assert [r for r in provider.requests if r.purpose == "warm_up"] == []
    assert performer.listening.warm_ups == 0


def test_a_failed_warm_up_does_not_fail_the_leader() -> None:
    provider = Silent(simulated(), fails=lambda r: r.purpose == "warm_up")
    result, events, _ = perform(reviewers_at("moderato"), provider)
    leader = leader_of(events)
    assert provider.of(leader), "the leader made its own call"
    assert result.status == "completed", errors(result)


def test_the_result_cache_in_front_of_the_provider_keeps_first_token_writes(tmp_path: Path) -> None:
    """``hct perform`` puts the L5 result cache in front of the provider: the leader still
    writes the cache at its first token, with no warm-up call."""
    db = connect(home=tmp_path)
    try:
        provider = CachingProvider(simulated(), ResultCache(db), simulated_seed=0)
        result, events, performer = perform(reviewers_at("moderato"), provider)
    finally:
        db.close()
    assert result.status == "completed", errors(result)
    assert {d["how"] for d in listens(events).values()} == {"first_token"}
    assert performer.listening.warm_ups == 0
    assert all(not r.warm_ups for r in result.agents.values())
    assert sum(1 for n in REVIEWERS if result.agents[n].cached_tokens > 0) == 5


# -- a leader that fails ---------------------------------------------------------------------------


def test_a_leader_that_fails_before_its_first_token_lets_the_followers_go() -> None:
    provider = Watch(simulated(), fails=lambda r: r.on_first_token is not None)  # only the leader has one
    result, events, performer = perform(reviewers_at("moderato"), provider)
    leader = leader_of(events)
    followers = [n for n in REVIEWERS if n != leader]
    assert {d["wait"] for d in listens(events).values()} == {"until_written"}
    # The followers were waiting for a cache that never came; they go once the leader fails.
    failed = provider.at("failed", leader)
    assert all(provider.at("start", name) > failed for name in followers)
    assert all(result.agents[name].status == "done" for name in followers)
    assert [n for n, r in result.agents.items() if r.status == "failed"] == [leader]
    assert result.status in ("completed", "failed")
    assert performer.listening.followers == 5
