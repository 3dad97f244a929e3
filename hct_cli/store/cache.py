"""L5, the long-term store: what one run leaves for the next, in ``$HCT_HOME``'s database.

* :class:`ResultCache` serves an identical call (same model, same messages, same output limit;
  calls are made at temperature 0) at zero cost. Simulated calls key on their draw as well
  (seed, agent, attempt), so a cached simulated run answers exactly as an uncached one would.
* :class:`Predictors` keeps one 2-bit saturating counter per fermata gate for
  ``speculate: auto``: 0-1 predict a failure (wait for the gate), 2-3 a pass (speculate).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from hct_cli.call_result import CallResult
from hct_cli.jsonio import dumps, loads
from hct_cli.providers.base import CallRequest
from hct_cli.redact import Redactor

__all__ = ["Predictors", "ResultCache", "cache_key"]


def cache_key(namespace: str, request: CallRequest) -> str:
    """The identity of a call: who answers it and exactly what it is asked (with the tools it is
    offered and the earlier rounds' messages, when there are some: a round with tool results is
    another call; without them the key is what it always was)."""
    text = "\x1f".join(
        (namespace, request.model, str(request.agent.max_tokens), request.purpose, request.system, request.user_text)
    )
    if request.tools or request.turns:
        tools = [dict(tool) for tool in request.tools]
        turns = [dict(turn) for turn in request.turns]
        text += "\x1e" + dumps({"tools": tools, "turns": turns}, compact=True, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


class ResultCache:
    """Results of earlier calls, by :func:`cache_key`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.hits = 0
        self._redact = Redactor.from_environ()  # the store keeps no secret a model echoed

    def get(self, key: str) -> CallResult | None:
        row = self.db.execute(
            "SELECT model, output, prompt_tokens, completion_tokens FROM cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        model, output, prompt_tokens, completion_tokens = row
        try:
            answer = loads(output)
        except ValueError:  # stored by an older hct, which wrote NaN: not an answer to give again
            return None
        self.hits += 1
        return CallResult(answer, model, prompt_tokens, completion_tokens, 0.0, 0.0, cached=True)

    def put(self, key: str, result: CallResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO cache (key, model, output, prompt_tokens, completion_tokens, cost_usd, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                result.model,
                dumps(self._redact.data(result.output)),
                result.prompt_tokens,
                result.completion_tokens,
                result.cost_usd,
                time.time(),
            ),
        )


class Predictors:
    """2-bit saturating counters, one per gate (``score/agent``), kept across runs."""

    INITIAL = 2  # weakly "passes": a new gate is speculated on until it fails

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self.db = db
        self.counters: dict[str, int] = {}
        if db is not None:
            self.counters = {gate: counter for gate, counter in db.execute("SELECT gate, counter FROM predictors")}

    def predict(self, gate: str) -> bool:
        """True when the gate is predicted to pass."""
        return self.counters.get(gate, self.INITIAL) >= 2

    def update(self, gate: str, passed: bool) -> None:
        counter = self.counters.get(gate, self.INITIAL)
        counter = min(3, counter + 1) if passed else max(0, counter - 1)
        self.counters[gate] = counter
        if self.db is not None:
            self.db.execute("INSERT OR REPLACE INTO predictors (gate, counter) VALUES (?, ?)", (gate, counter))
