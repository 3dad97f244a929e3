"""Read-only views for python agents, and refusal of writes an agent did not declare."""

from __future__ import annotations

import copy
import json

import pytest

from hct_cli.providers.enclave import ReadOnlyError, readonly, refused_write

pytestmark = pytest.mark.timeout(10)


def view() -> dict[str, object]:
    data = {"state": {"findings": [{"line": 1}]}, "reference_frame": {"objective": "x"}}
    result: dict[str, object] = readonly(data)
    return result


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v.__setitem__("state", {}),
        lambda v: v["reference_frame"].__setitem__("objective", "y"),
        lambda v: v["reference_frame"].update(objective="y"),
        lambda v: v["reference_frame"].pop("objective"),
        lambda v: v["state"]["findings"].append({"line": 2}),
        lambda v: v["state"]["findings"][0].__setitem__("line", 9),
        lambda v: v["state"]["findings"].__iadd__([1]),
        lambda v: v["state"].setdefault("other", 1),
        lambda v: v["state"]["findings"].sort(),
    ],
)
def test_every_change_to_a_view_is_refused(change: object) -> None:
    target = view()
    with pytest.raises(ReadOnlyError):
        change(target)  # type: ignore[operator]
    assert target == {"state": {"findings": [{"line": 1}]}, "reference_frame": {"objective": "x"}}


def test_a_view_reads_like_plain_data_and_copies_are_free_to_change() -> None:
    target = view()
    assert json.loads(json.dumps(target)) == {
        "state": {"findings": [{"line": 1}]},
        "reference_frame": {"objective": "x"},
    }
    findings = target["state"]["findings"]  # type: ignore[index]
    grown = findings + [{"line": 2}]  # noqa: RUF005 - what a python agent would write
    assert grown == [{"line": 1}, {"line": 2}]
    mine = copy.deepcopy(target)
    mine["state"]["findings"].append(3)  # type: ignore[index]
    assert len(target["state"]["findings"]) == 1  # type: ignore[index]
    assert type(mine) is dict and type(mine["state"]["findings"]) is list  # type: ignore[index]


def test_writes_beyond_the_declaration_are_refused() -> None:
    frame, state = {"objective"}, {"summary", "findings"}
    assert refused_write("a", ["summary", "notes"], frame, state, ["summary"]) is None  # "notes" is not state
    assert "reference frame" in (refused_write("a", ["summary", "objective"], frame, state, ["summary"]) or "")
    message = refused_write("a", ["summary", "findings"], frame, state, ["summary"])
    assert message is not None and "'findings'" in message and "does not declare" in message
