"""What travels on a run's CDB stream: a result with its provider's notes, or a notice.

The common data bus on Redis carries more than a :class:`~hct_cli.bus.base.Broadcast`: a
worker's result keeps the notes its provider made (retries, fallbacks), and a worker may send
a notice about a call (``reclaim``, ``hand_back``). Whoever writes the stream and whoever
reads it share this one format, so it lives with the bus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.jsonio import dumps

__all__ = ["Result", "decode_result", "encode_notice", "encode_result"]


@dataclass(slots=True)
class Result:
    """What comes back on the CDB stream: a result, or a notice about a call (``reclaim``)."""

    kind: str  # "result" or a notice's kind
    station: str
    version: int
    message: Broadcast | None = None  # for a result
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # a provider's retries, fallbacks
    data: dict[str, Any] = field(default_factory=dict)  # for a notice
    step: int = 0  # the tool loop's round the result answers (0: the first, or a call without tools)


def encode_result(message: Broadcast, notes: list[tuple[str, dict[str, Any]]] | None = None, step: int = 0) -> str:
    data: dict[str, Any] = {"kind": "result", "station": message.station, "version": message.version}
    if step:  # a later round of a tool loop: its tag alone is the same as the first round's
        data["step"] = step
    data["result"] = message.to_data()
    if notes:
        data["notes"] = [[kind, note] for kind, note in notes]
    return dumps(data, ensure_ascii=False, compact=True)


def encode_notice(kind: str, station: str, version: int, **data: Any) -> str:
    return dumps({"kind": kind, "station": station, "version": version, "data": data}, compact=True)


def decode_result(text: str) -> Result:
    """The inverse of :func:`encode_result` and :func:`encode_notice`; ``ValueError`` for anything else."""
    try:
        data = json.loads(text)
        station, version = str(data["station"]), int(data["version"])
        if data.get("kind") != "result":
            return Result(str(data.get("kind")), station, version, data=dict(data.get("data") or {}))
        message = Broadcast.from_data(station, version, data["result"])
        notes = [(str(kind), dict(note)) for kind, note in data.get("notes", ())]
        return Result("result", station, version, message, notes, step=int(data.get("step", 0)))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a result: {type(exc).__name__}: {exc}") from exc
