"""Signals in words: what the conductor's log and the plain log say of an event, the same in both."""

from __future__ import annotations

from typing import Any

from hct_cli.events import Event
from hct_cli.tui.tools import TOOL_KINDS, tool_words

__all__ = ["describe"]


def describe(event: Event) -> str:
    """A signal in a few words, as the log shows it."""
    data: dict[str, Any] = dict(event.data)
    kind = event.kind
    if kind == "cue":
        keys = data.get("keys") or {}
        shared = f" → {', '.join(keys)}" if keys else ""
        return f"${float(data.get('cost_usd') or 0.0):.4f}{shared}"
    if kind == "fermata":
        hold = data.get("hold")
        return "waits for a person (a approves, r rejects)" if hold == "approval" else f"held for its {hold} gate"
    if kind in ("gate", "tacet", "vamp", "caesura"):
        passed = data.get("passed")
        verdict = "" if passed is None else "passed: " if passed else "failed: "
        extra = f" (back to checkpoint {data.get('checkpoint')})" if kind == "caesura" else ""
        writes = data.get("writes") or [] if kind == "caesura" else []
        if writes:
            tools = ", ".join(f"{w.get('agent')}@{w.get('version')} {w.get('tool')}" for w in writes[:3])
            more = f" +{len(writes) - 3}" if len(writes) > 3 else ""
            extra += f"; {len(writes)} write call(s) after the checkpoint are not undone: {tools}{more}"
        return f"{verdict}{data.get('reason', '')}{extra}".strip()
    if kind == "squash":
        return (
            f"fired on {data.get('on')}, which did not commit (${float(data.get('cost_usd') or 0.0):.4f} thrown away)"
        )
    if kind == "speculate":
        return f"fires on {data.get('on')} before it commits"
    if kind == "downbeat":
        return f"checkpoint {data.get('checkpoint')}"
    if kind in ("fail", "skip"):
        return str(data.get("error") or data.get("reason") or "")
    if kind in ("step_down", "boost", "fallback"):
        return f"→ {data.get('tier')} {data.get('model')}: {data.get('reason', '')}"
    if kind in ("retry", "fallback_skipped"):
        return ", ".join(f"{k}={v}" for k, v in data.items())
    if kind in ("stale_read", "replay"):
        keys = ", ".join(data.get("keys") or [])
        if kind == "stale_read":
            return f"read {keys}, which changed while it ran; committed anyway (coherence: off)"
        turns = "; replays did not converge, it takes turns from now on" if data.get("hold") else ""
        return (
            f"read {keys}, which changed while it ran: runs again on fresh values (replay {data.get('replay')}){turns}"
        )
    if kind == "hold":
        keys = ", ".join(data.get("keys") or [])
        return f"{keys} behind {data['behind']}" if data.get("behind") else keys
    if kind == "run_end":
        return f"{data.get('status')} · ${float(data.get('cost_usd') or 0.0):.4f}"
    if kind in ("pause", "resume"):
        return "issuing paused" if kind == "pause" else "issuing again"
    if kind == "reclaim":
        return f"{data.get('by')} took it over from silent worker {data.get('from')}"
    if kind == "hand_back":
        return f"{data.get('by')} stopped and handed it back"
    if kind == "interrupt":
        return str(data.get("reason", ""))
    if kind == "warm_up_failed":
        return f"the warm-up call failed ({data.get('reason')}); the calls go without a warm cache"
    if kind == "listen":
        tokens = int(data.get("prefix_tokens") or 0)
        wait = data.get("wait")
        if wait == "never":
            return f"presto: goes without waiting for {data.get('leader')}'s cache of {tokens:,} tokens"
        bound = " (for a bounded time)" if wait == "bounded" else ""
        return (
            f"waits{bound} for {data.get('leader')} to cache the {tokens:,}-token prefix "
            f"(saves ~${float(data.get('expected_saving_usd') or 0.0):.4f})"
        )
    if kind == "page":
        cuts = data.get("cuts") or []
        what = ", ".join(f"{c.get('ref')} {int(c.get('tokens') or 0):,}/{int(c.get('of') or 0):,}" for c in cuts)
        return f"paged out to fit {data.get('model')}: {what} tokens"
    if kind in TOOL_KINDS or (kind == "refused" and "tool" in data):
        return tool_words(kind, data)
    if kind == "refused":
        return str(data.get("reason", ""))
    return ", ".join(f"{k}={v}" for k, v in data.items())
