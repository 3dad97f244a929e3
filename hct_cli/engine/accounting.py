"""The figures of a run that are worked out once it ends, off the hot path: the critical path
the calls' own latencies allow, the all-frontier counterfactual cost, each call's worst case."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hct_cli.compile import Program
from hct_cli.engine.result import AgentRecord
from hct_cli.engine.station import Station
from hct_cli.governor import worst_case_usd
from hct_cli.models import ModelInfo, model_info
from hct_cli.routing import TIER_ORDER

__all__ = ["critical_chain", "critical_path", "frontier_cost", "frontier_price", "price_worst_cases"]


def _finish_times(program: Program, records: Mapping[str, AgentRecord]) -> dict[str, float]:
    """When each agent would finish with no overhead at all: its latest cue's finish plus its calls."""
    finish: dict[str, float] = {}
    for name in program.order:
        start = max((finish.get(tag, 0.0) for tag in program.stations[name].tags), default=0.0)
        finish[name] = start + records[name].latency_s
    return finish


def critical_path(program: Program, records: Mapping[str, AgentRecord]) -> float:
    """The longest chain of the tag graph, timed with each agent's calls as they happened."""
    return max(_finish_times(program, records).values(), default=0.0)


def critical_chain(program: Program, records: Mapping[str, AgentRecord]) -> list[str]:
    """The agents on the chain :func:`critical_path` measures, first to last.

    Walked back from the last finish through the cue each agent waited for longest; of chains
    that tie, the one through the earlier-declared cue (and the earlier-ordered end) is taken.
    """
    finish = _finish_times(program, records)
    if not finish:
        return []
    name: str | None = max(program.order, key=finish.__getitem__)
    chain: list[str] = []
    while name is not None:
        chain.append(name)
        tags = program.stations[name].tags
        name = max(tags, key=finish.__getitem__) if tags else None
    chain.reverse()
    return chain


def frontier_price(program: Program) -> ModelInfo | None:
    """The price of the program's highest tier: what the all-frontier counterfactual pays."""
    frontier_tier = next((t for t in reversed(TIER_ORDER) if t in program.tiers), None)
    return model_info(program.tiers[frontier_tier].model) if frontier_tier else None


def frontier_cost(program: Program, stations: Iterable[Station]) -> float:
    """What the same token counts would have cost on the frontier tier; sets it per agent too."""
    price = frontier_price(program)
    total = 0.0
    for station in stations:
        record = station.record
        if station.agent.kind != "llm" or not record.calls:
            continue
        cost = price.cost(record.prompt_tokens, record.completion_tokens) if price else record.cost_usd
        record.frontier_cost_usd = cost
        total += cost
    return total


def price_worst_cases(stations: Iterable[Station], prompt_tokens: Callable[[Station], int]) -> None:
    """Unbudgeted runs price each agent's worst case afterwards (a budget prices it at issue)."""
    for station in stations:
        record = station.record
        if station.agent.kind == "llm" and record.calls and not record.worst_case_usd:
            # The last call of its own (not a judge's, not squashed work), when there is one.
            last = record.result or (record.earlier[-1] if record.earlier else record.all_calls()[-1])
            tokens = max(last.prompt_tokens, prompt_tokens(station))
            record.worst_case_usd = worst_case_usd(
                record.model or station.route.model, tokens, station.agent.max_tokens
            )
