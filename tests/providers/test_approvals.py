"""Approvals: a person's verdicts, read in order per agent."""

from __future__ import annotations

import pytest

from hct_cli.providers.approvals import next_verdict, record_verdict
from hct_cli.store.home import connect
from tests.store.journaled import start_run

pytestmark = pytest.mark.timeout(60)


def test_verdicts_are_read_in_order_per_agent() -> None:
    db = connect()
    start_run(db)
    first = record_verdict(db, "run000000001", "a", "approve", "looks right")
    other = record_verdict(db, "run000000001", "b", "reject")
    second = record_verdict(db, "run000000001", "a", "reject", "changed my mind")
    assert first < other < second
    assert next_verdict(db, "run000000001", "a", 0) == (first, "approve", "looks right")
    assert next_verdict(db, "run000000001", "a", first) == (second, "reject", "changed my mind")
    assert next_verdict(db, "run000000001", "a", second) is None
    assert next_verdict(db, "run000000001", "b", 0) == (other, "reject", "")
    assert next_verdict(db, "other-run", "a", 0) is None
