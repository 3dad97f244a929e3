"""Python predicates for the gate, vamp and tacet tests (``python: gatechecks:NAME``).

The tests put this directory on ``sys.path``. ``held`` is a gate the test decides: each call
waits until the test resolves it with :func:`resolve`, so a test can order the gate's verdict
against everything else the engine does without waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Every output a predicate of this module was called with, in call order.
seen: list[Any] = []
_pending: list[tuple[Any, asyncio.Future[tuple[bool, str]]]] = []


def reset() -> None:
    seen.clear()
    for _, future in _pending:
        if not future.done():
            future.cancel()
    _pending.clear()


def long_enough(output: Any) -> bool:
    seen.append(output)
    return len(str(output)) >= 10


def needs_number(output: Any) -> tuple[bool, str]:
    seen.append(output)
    if any(ch.isdigit() for ch in str(output)):
        return True, "has a number"
    return False, "needs a number"


def explode(output: Any) -> bool:
    seen.append(output)
    raise ValueError("boom")


async def async_has_done(output: Any) -> bool:
    seen.append(output)
    await asyncio.sleep(0)
    return "DONE" in str(output)


async def async_says_skip(output: Any) -> bool:
    seen.append(output)
    await asyncio.sleep(0)
    return "skip" in str(output)


async def forever(output: Any) -> bool:
    seen.append(output)
    await asyncio.get_running_loop().create_future()  # never resolves: only a timeout ends it
    return True


async def held(output: Any) -> tuple[bool, str]:
    """Waits for the test's verdict on ``output``."""
    seen.append(output)
    future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
    entry = (output, future)
    _pending.append(entry)
    try:
        return await future
    finally:
        if entry in _pending:
            _pending.remove(entry)


def pending() -> list[Any]:
    """Outputs whose ``held`` gate waits for a verdict, oldest first."""
    return [output for output, future in _pending if not future.done()]


def resolve(passed: bool, reason: str = "", output: Any = None) -> None:
    """Decide the oldest waiting ``held`` gate (the one on ``output`` when given)."""
    for waiting, future in _pending:
        if future.done() or (output is not None and waiting != output):
            continue
        future.set_result((passed, reason or ("looks right" if passed else "looks wrong")))
        return
    raise AssertionError(f"no held gate waits (on {output!r})")
