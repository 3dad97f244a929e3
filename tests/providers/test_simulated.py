"""The simulated provider: every draw is a pure function of (seed, agent, model, messages, attempt)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.models import model_info
from hct_cli.providers.base import CallRequest, ProviderError
from hct_cli.providers.simulated import SimulatedProvider, draw
from hct_cli.score.model import Agent, Simulate

pytestmark = pytest.mark.timeout(60)

MODEL = "gpt-4o-mini"


def agent(name: str = "writer", **fields: Any) -> Agent:
    simulate = fields.pop("simulate", {})
    return Agent(name=name, index=0, prompt="p", simulate=Simulate.from_data(simulate), **fields)


def request(
    who: Agent | None = None,
    *,
    prompt: str = "Write a haiku about caches.",
    system: str = "",
    attempt: int = 0,
    model: str = MODEL,
    tier: str | None = "mid",
) -> CallRequest:
    return CallRequest(agent=who or agent(), model=model, tier=tier, prompt=prompt, system=system, attempt=attempt)


def test_plan_is_pure() -> None:
    req = request(agent(simulate={"latency_ms": [10, 30]}))
    first = SimulatedProvider(42).plan(req)
    assert SimulatedProvider(42).plan(req) == first
    provider = SimulatedProvider(42)
    assert [provider.plan(req) for _ in range(3)] == [first] * 3
    # Same inputs in a fresh request object.
    assert SimulatedProvider(42).plan(request(agent(simulate={"latency_ms": [10, 30]}))) == first


def test_time_scale_does_not_change_the_draw() -> None:
    req = request()
    assert SimulatedProvider(1, time_scale=0.0).plan(req) == SimulatedProvider(1, time_scale=5.0).plan(req)


def test_every_input_of_the_draw_matters() -> None:
    base = SimulatedProvider(42).plan(request(attempt=0))

    def differs(other: CallResult) -> bool:
        return (other.output, other.latency_s, other.completion_tokens) != (
            base.output,
            base.latency_s,
            base.completion_tokens,
        )

    assert differs(SimulatedProvider(42).plan(request(attempt=1)))
    assert differs(SimulatedProvider(43).plan(request(attempt=0)))
    assert differs(SimulatedProvider(42).plan(request(prompt="Write a limerick about caches.")))
    assert differs(SimulatedProvider(42).plan(request(system="Reference frame: be brief.")))
    assert differs(SimulatedProvider(42).plan(request(agent("editor"))))
    assert differs(SimulatedProvider(42).plan(request(model="claude-sonnet-4-5", tier="frontier")))


def test_attempts_draw_independently() -> None:
    provider = SimulatedProvider(0)
    latencies = {provider.plan(request(attempt=k)).latency_s for k in range(20)}
    assert len(latencies) == 20


def test_draw_is_stable_and_uniform_in_unit_interval() -> None:
    values = draw(5, "a", "m", 0, "text")
    assert values == draw(5, "a", "m", 0, "text")
    assert values != draw(6, "a", "m", 0, "text")
    assert len(values) == 4
    assert all(0.0 <= v < 1.0 for v in values)


@pytest.mark.parametrize(("low", "high"), [(10, 30), (0, 0), (250, 250), (0, 20)])
def test_latency_stays_in_the_agents_range(low: int, high: int) -> None:
    who = agent(simulate={"latency_ms": [low, high]})
    provider = SimulatedProvider(3)
    for attempt in range(50):
        latency = provider.plan(request(who, attempt=attempt)).latency_s
        assert low / 1000 <= latency <= high / 1000


def test_a_single_latency_figure_is_fixed() -> None:
    who = agent(simulate={"latency_ms": 40})
    assert {SimulatedProvider(s).plan(request(who)).latency_s for s in range(5)} == {0.04}


def test_cost_is_tokens_times_the_models_prices() -> None:
    who = agent(simulate={"prompt_tokens": 1200, "output_tokens": 300})
    result = SimulatedProvider(0).plan(request(who))
    price = model_info(MODEL)
    assert price is not None and price.input_cost_per_token > 0
    assert result.prompt_tokens == 1200
    assert result.completion_tokens == 300
    assert result.model == MODEL
    expected = 1200 * price.input_cost_per_token + 300 * price.output_cost_per_token
    assert result.cost_usd == pytest.approx(expected)
    assert result.cost_usd == price.cost(1200, 300)


def test_derived_token_counts_are_priced_too() -> None:
    price = model_info(MODEL)
    assert price is not None
    for attempt in range(10):
        result = SimulatedProvider(0).plan(request(attempt=attempt))
        assert result.cost_usd == pytest.approx(price.cost(result.prompt_tokens, result.completion_tokens))


def test_an_unknown_model_costs_nothing() -> None:
    result = SimulatedProvider(0).plan(request(model="nobody/knows-this-model", tier=None))
    assert result.cost_usd == 0.0
    assert result.completion_tokens > 0


def test_prompt_tokens_are_estimated_from_the_messages() -> None:
    prompt = "x" * 400
    system = "y" * 80
    result = SimulatedProvider(0).plan(request(prompt=prompt, system=system))
    assert result.prompt_tokens == (400 + 80) // 4
    assert SimulatedProvider(0).plan(request(prompt="hi")).prompt_tokens == 1


def test_max_tokens_caps_output_tokens() -> None:
    capped = agent(max_tokens=64, simulate={"output_tokens": 500})
    assert SimulatedProvider(0).plan(request(capped)).completion_tokens == 64
    derived = agent(max_tokens=50)
    for attempt in range(30):
        assert SimulatedProvider(0).plan(request(derived, attempt=attempt)).completion_tokens <= 50
    roomy = agent()
    drawn = [SimulatedProvider(0).plan(request(roomy, attempt=k)).completion_tokens for k in range(30)]
    assert all(40 <= n <= 400 for n in drawn)
    assert len(set(drawn)) > 1


def test_output_figure_is_returned_verbatim() -> None:
    value = {"verdict": "ok", "items": [1, 2]}
    who = agent(simulate={"output": value})
    assert SimulatedProvider(9).plan(request(who)).output == value


def test_generated_text_names_agent_and_model() -> None:
    output = SimulatedProvider(0).plan(request(agent("critic"))).output
    assert isinstance(output, str)
    assert output.startswith(f"[critic via {MODEL}, simulated]")


def test_several_writes_get_a_json_object_with_those_keys() -> None:
    who = agent(writes=("summary", "score"))
    output = SimulatedProvider(0).plan(request(who)).output
    assert set(json.loads(output)) == {"summary", "score"}


def test_call_returns_the_plan() -> None:
    req = request(agent(simulate={"latency_ms": [0, 2]}))
    provider = SimulatedProvider(17)
    assert asyncio.run(provider.call(req)) == provider.plan(req)
    instant = asyncio.run(SimulatedProvider(17, time_scale=0.0).call(req))
    planned = provider.plan(req)
    assert (instant.output, instant.cost_usd, instant.latency_s) == (planned.output, planned.cost_usd, 0.0)


def test_plan_does_not_depend_on_what_the_provider_planned_before() -> None:
    quick = request(agent("w", simulate={"latency_ms": 10}))
    slow = request(agent("w", simulate={"latency_ms": 500}))
    provider = SimulatedProvider(0)
    provider.plan(quick)
    assert provider.plan(slow) == SimulatedProvider(0).plan(slow)
    assert provider.plan(slow).latency_s == 0.5


def test_plan_draws_from_the_documented_key() -> None:
    """plan() spells the hash out for speed; it must stay draw(seed, agent, model, attempt, messages)."""
    req = request(agent(simulate={"latency_ms": [100, 300]}), system="frame", attempt=2)
    u_latency = draw(9, "writer", MODEL, 2, "frame\x1eWrite a haiku about caches.")[0]
    assert SimulatedProvider(9).plan(req).latency_s == pytest.approx(0.1 + 0.2 * u_latency)


def test_a_scaled_call_reports_the_latency_it_slept() -> None:
    req = request(agent(simulate={"latency_ms": 200}))
    result = asyncio.run(SimulatedProvider(1, time_scale=0.01).call(req))
    assert result.latency_s == pytest.approx(0.002)
    assert SimulatedProvider(1, time_scale=0.01).plan(req).latency_s == pytest.approx(0.2)


# -- timeouts -----------------------------------------------------------------------------------


def _noted(req: CallRequest) -> list[tuple[str, dict[str, Any]]]:
    notes: list[tuple[str, dict[str, Any]]] = []
    req.reporter = lambda name, version, kind, data: notes.append((kind, data))
    return notes


def test_a_call_longer_than_its_timeout_times_out_as_a_real_one_does() -> None:
    from hct_cli.program.routing import Route

    slow = agent(timeout_s=0.05, simulate={"latency_ms": 500})
    req = request(slow, tier="local", model="ollama/llama3.2")
    req.fallbacks = (Route("mid", MODEL, "fallback"),)
    notes = _noted(req)
    with pytest.raises(ProviderError) as info:
        asyncio.run(SimulatedProvider(0, time_scale=0.001).call(req))
    assert "Timeout" in info.value.message and "retries and fallbacks exhausted" in info.value.message
    assert MODEL in info.value.message  # the last tier tried
    kinds = [kind for kind, _ in notes]
    # Per tier: the first attempt and three retries, with backoff; then the next tier up.
    assert kinds == ["retry"] * 3 + ["fallback"] + ["retry"] * 3
    assert [data["model"] for kind, data in notes if kind == "retry"] == ["ollama/llama3.2"] * 3 + [MODEL] * 3
    assert [data["attempt"] for kind, data in notes if kind == "retry"] == [1, 2, 3] * 2
    assert all(0 <= data["wait_s"] <= 2 ** (data["attempt"] - 1) for kind, data in notes if kind == "retry")
    assert notes[3][1]["tier"] == "mid"


def test_time_scale_never_changes_which_calls_time_out() -> None:
    def outcome(scale: float) -> tuple[str, list[str]]:
        req = request(agent(timeout_s=0.05, simulate={"latency_ms": [0, 100]}))
        notes = _noted(req)
        try:
            result = asyncio.run(SimulatedProvider(3, time_scale=scale).call(req))
        except ProviderError as exc:
            return exc.message, [kind for kind, _ in notes]
        return str(result.output), [kind for kind, _ in notes]

    assert outcome(0.001) == outcome(0.01)


def test_a_retry_after_a_timeout_draws_anew_and_may_answer() -> None:
    answered_after_retries = 0
    for seed in range(20):
        req = request(agent(timeout_s=0.05, simulate={"latency_ms": [0, 100]}))
        notes = _noted(req)
        provider = SimulatedProvider(seed, time_scale=0.001)
        try:
            result = asyncio.run(provider.call(req))
        except ProviderError:
            assert len(notes) == 3  # every attempt timed out
            continue
        retries = len(notes)
        assert provider.plan(req).latency_s > 0.05 if retries else provider.plan(req).latency_s <= 0.05
        assert result.latency_s >= 0.001 * 0.05 * retries  # it waited out each timeout (scaled)
        answered_after_retries += retries > 0
    assert answered_after_retries > 0
