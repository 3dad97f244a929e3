"""The figures of a run that are worked out once it ends, off the hot path: the critical path
the calls' own latencies allow, the all-frontier counterfactual cost, each call's worst case.
docs/figures.md defines each figure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hct_cli.bus.base import Broadcast
from hct_cli.engine.governor import worst_case_usd
from hct_cli.engine.result import AgentRecord
from hct_cli.engine.station import Station
from hct_cli.models import ModelInfo, model_info
from hct_cli.program.compile import Program
from hct_cli.program.routing import TIER_ORDER

__all__ = ["critical_chain", "critical_path", "frontier_cost", "frontier_price", "price_worst_cases"]


def _finish_times(program: Program, records: Mapping[str, AgentRecord]) -> dict[str, float]:
    """When each agent would commit with no overhead at all (see :func:`critical_path`)."""
    held: dict[str, float] = {}  # when the result dependents could speculate on was there
    done: dict[str, float] = {}  # when it committed
    for name in program.order:
        record = records[name]
        start = max(
            (held[tag] if tag in record.speculated else done[tag] for tag in program.stations[name].tags),
            default=0.0,
        )
        recalled = {id(message) for message in record.recalled}
        own = [*record.warm_ups, *record.rounds, *record.earlier] + (
            [record.result] if record.result is not None else []
        )
        judges = [_spent(message, recalled) for message in record.checks]
        last = judges[-1] if judges else 0.0  # the judge of the result that committed
        # Its own result waits for the producers it fired on to commit before it is held or commits.
        confirmed = max((done[tag] for tag in record.speculated), default=0.0)
        calls = sum(_spent(message, recalled) for message in own) + record.tool_time_s
        held[name] = max(start + calls + sum(judges) - last, confirmed)
        done[name] = held[name] + last
    return done


def critical_path(program: Program, records: Mapping[str, AgentRecord]) -> float:
    """The least makespan the tag graph allows with the calls this segment waited for
    (docs/figures.md): the longest chain, each agent taking its own calls, then its gates' judges.

    A dependent that fired on a held result (speculation, ``attacca``) waited for the result, not
    for the judge that held it; work a squash threw away is off the chain (it overlapped the
    judge that squashed it); an answer taken from the journal on a resume, or from the result
    cache, took none of this segment's time. So the figure never exceeds the makespan.
    """
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


def _spent(message: Broadcast, recalled: set[int]) -> float:
    """The time a call took of this segment: none when its answer was taken from the journal."""
    return 0.0 if id(message) in recalled else message.result.latency_s


def frontier_price(program: Program) -> ModelInfo | None:
    """The price of the program's highest tier: what the all-frontier counterfactual pays."""
    frontier_tier = next((t for t in reversed(TIER_ORDER) if t in program.tiers), None)
    return model_info(program.tiers[frontier_tier].model) if frontier_tier else None


def frontier_cost(program: Program, stations: Iterable[Station]) -> float:
    """What the calls the run paid for would have cost on the frontier tier (their own token
    counts; a cache hit paid nothing either way); sets it per agent too."""
    price = frontier_price(program)
    total = 0.0
    for station in stations:
        record = station.record
        if station.agent.kind != "llm" or not record.calls:
            continue
        paid = [message for message in record.all_calls() if not message.result.cached]
        cost = sum(
            price.cost(message.result.prompt_tokens, message.result.completion_tokens)
            if price
            else message.result.cost_usd
            for message in paid
        )
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
            tokens = max(last.result.prompt_tokens, prompt_tokens(station))
            record.worst_case_usd = worst_case_usd(
                record.model or station.route.model, tokens, station.agent.max_tokens
            )
