"""Deciding checks: a fermata's gate, a vamp's ``until``, a ``tacet_if``.

:meth:`Gatekeeper.quick` decides at once whatever needs no waiting (the deterministic kinds,
and under ``--simulate`` a fermata whose agent gives ``simulate.pass_rate``: a draw). Checks with
a ``python`` predicate, an LLM ``judge`` or a ``human`` take time: :meth:`Gatekeeper.decide`
awaits them, after the deterministic kinds have passed. Under ``--simulate`` a judge is a
simulated call that passes with the agent's ``pass_rate``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.engine.checks import Verdict, evaluate, needs_gate
from hct_cli.errors import HctError
from hct_cli.jsonio import dumps, loads
from hct_cli.program.checks import SchemaRefs
from hct_cli.providers.base import CallRequest, ProviderError
from hct_cli.providers.exec import call_function, load_callable
from hct_cli.providers.human import HumanDesk
from hct_cli.providers.simulated import draw
from hct_cli.score.model import Agent, Check, Fermata, Judge, TierSpec, checks_of
from hct_cli.score.template import shown

__all__ = ["Gatekeeper", "JudgeCall"]

#: Makes one judge call for the engine, which journals and prices it; its result as broadcast.
JudgeCall = Callable[[CallRequest], Awaitable[Broadcast]]

_NUMBER = re.compile(r"(?<![\w.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?![\w.])")


def judge_prompt(judge: Judge, output: Any) -> str:
    text = shown(output)
    return (
        "You are a strict reviewer. Score the answer below against the criteria, from 0 (fails "
        "completely) to 1 (fully meets them).\n"
        f"Criteria: {judge.criteria}\n"
        f"Answer:\n<<<\n{text}\n>>>\n"
        'Reply with JSON only: {"score": <number from 0 to 1>, "reason": "<one sentence>"}'
    )


def judge_score(answer: Any) -> tuple[float | None, str]:
    """The score and reason in a judge's answer; None when it gave no usable score."""
    text = answer if isinstance(answer, str) else dumps(answer)
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = loads(text[start : end + 1])
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("score"), int | float):
            score = float(data["score"])
            if 0.0 <= score <= 1.0:
                return score, str(data.get("reason", ""))
    match = _NUMBER.search(text)
    if match is not None:
        return float(match.group(1)), text.strip()[:200]
    return None, text.strip()[:200]


def _needs_person(check: Check, fermata: Fermata | None) -> bool:
    return check.human or (fermata is not None and fermata.hold == "approval")


class Gatekeeper:
    """Decides the checks of one run."""

    def __init__(
        self,
        *,
        tiers: Mapping[str, TierSpec] | None = None,
        simulate_seed: int | None = None,
        allow_exec: bool = False,
        desk: HumanDesk | None = None,
        refs: SchemaRefs | None = None,
    ) -> None:
        self.tiers = dict(tiers or {})
        # Resolves the $ref of json_schema checks; without it only refs inside a schema resolve.
        self.refs = refs if refs is not None else SchemaRefs(None)
        self.simulate_seed = simulate_seed
        self.allow_exec = allow_exec
        self.desk = desk
        # Fits a judge's call to its model's window (L1), paging the answer judged when it must:
        # (request, the prompt with the answer shown as the text given, the answer) -> request.
        self.fit: Callable[[CallRequest, Callable[[str], str], str], CallRequest] | None = None

    def prepare(self, agents: Iterable[Agent]) -> None:
        """Load what deciding these agents' checks needs before the run's clock starts.

        The first evaluation of a check imports the regex engine (and jsonschema for a
        ``json_schema``) and compiles its patterns: milliseconds on an idle machine, tens of them on
        a loaded one. Paid by the first result to commit, on the conductor's loop, it would delay
        that agent's next call and shift its whole chain of calls against the others by an amount
        that depends on the machine's load, and which of two close results commits first (the
        coherence decision, what a resume replays) with it. Evaluated once here, on an empty
        output whose verdict is thrown away, every later evaluation costs what the check costs."""
        for agent in agents:
            for _, check in checks_of(agent):
                with contextlib.suppress(HctError):  # a check that cannot be decided fails in the run
                    evaluate(check, "", self.refs)

    @staticmethod
    def waits(check: Check, fermata: Fermata | None = None) -> bool:
        """Whether deciding ``check`` may take time."""
        return needs_gate(check) or _needs_person(check, fermata)

    def quick(
        self, agent: Agent, check: Check, output: Any, version: int, fermata: Fermata | None = None
    ) -> Verdict | None:
        """The verdict when it needs no waiting; None when :meth:`decide` must be awaited."""
        rate = agent.simulate.pass_rate
        # Only deterministic checks are drawn: a judge, a predicate or a person decides for real.
        if (
            fermata is not None
            and self.simulate_seed is not None
            and rate is not None
            and not self.waits(check, fermata)
        ):
            u = draw(self.simulate_seed, agent.name, "gate", version)[0]
            return Verdict(u < rate, f"simulated check (pass rate {rate:g})")
        verdict = evaluate(check, output, self.refs)
        if not verdict.passed or not self.waits(check, fermata):
            return verdict
        return None

    async def decide(
        self,
        agent: Agent,
        check: Check,
        output: Any,
        version: int,
        judge_call: JudgeCall,
        fermata: Fermata | None = None,
    ) -> Verdict:
        """Every kind of ``check`` in turn, cheapest first; the first failure decides."""
        verdict = evaluate(check, output, self.refs)
        if not verdict.passed:
            return verdict
        timeout = fermata.timeout_s if fermata is not None else None
        if check.python is not None:
            verdict = await self._python(check.python, output, timeout)
            if not verdict.passed:
                return verdict
        if check.judge is not None:
            verdict = await self._judge(agent, check.judge, output, version, judge_call)
            if not verdict.passed:
                return verdict
        if _needs_person(check, fermata):
            if self.desk is None:
                return Verdict(False, "needs a person's approval, and this run has no way to ask one")
            default = fermata.default if fermata is not None else "reject"
            approved, why = await self.desk.ask(agent.name, version, output, timeout, default)
            verdict = Verdict(approved, f"{'approved' if approved else 'rejected'}: {why}")
        return verdict

    async def _python(self, target: str, output: Any, timeout_s: float | None) -> Verdict:
        if not self.allow_exec:
            return Verdict(False, f"python check {target} needs --allow-exec")
        try:
            result = await call_function(load_callable(target, "python check"), output, timeout_s)
        except ProviderError as exc:
            return Verdict(False, exc.message)
        except TimeoutError:
            return Verdict(False, f"{target} took longer than {timeout_s:g}s")
        except Exception as exc:  # the predicate's own failure is a failed check, not a crash
            return Verdict(False, f"{target} raised {type(exc).__name__}: {exc}")
        if isinstance(result, tuple) and len(result) == 2:
            return Verdict(bool(result[0]), str(result[1]))
        return Verdict(bool(result), f"{target} returned {result!r}"[:200])

    async def _judge(self, agent: Agent, judge: Judge, output: Any, version: int, judge_call: JudgeCall) -> Verdict:
        tier = self.tiers.get(judge.tier)
        if tier is None:
            return Verdict(False, f"the judge's tier {judge.tier!r} is not defined")
        request = CallRequest(
            agent,
            tier.model,
            judge.tier,
            judge_prompt(judge, output),
            version=version,
            attempt=version - 1,
            context={"threshold": judge.threshold},
            purpose="judge",
        )
        try:
            if self.fit is not None:
                text = shown(output)
                request = self.fit(request, lambda answer: judge_prompt(judge, answer), text)
            answer = await judge_call(request)
        except Exception as exc:  # a judge that cannot answer fails the check, it does not crash the run
            return Verdict(False, f"the judge ({tier.model}) failed: {getattr(exc, 'message', None) or exc}")
        score, reason = judge_score(answer.result.output)
        if score is None:
            return Verdict(False, f"the judge ({answer.result.model}) gave no score: {reason!r}")
        passed = score >= judge.threshold
        return Verdict(passed, f"judge scored {score:.2f} (threshold {judge.threshold:g}): {reason}")
