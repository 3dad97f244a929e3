"""What an agent may see and change: read-only views, and the refusal of undeclared writes.

The reference frame (L0) is an enclave: no agent writes it, at lint time (HCT212) or at run
time. An agent reads the shared keys in its ``reads`` and writes only those in ``writes`` and
``appends``. A ``python`` agent gets its cues, the inputs, the keys it reads and the reference
frame as a :func:`readonly` view: changing it raises :class:`ReadOnlyError`, and the agent fails.
A result that names a key the agent may not write (a JSON object result of an agent with several
``writes``) is refused by :func:`refused_write`, and nothing of it reaches shared state.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NoReturn

__all__ = ["ReadOnlyDict", "ReadOnlyError", "ReadOnlyList", "readonly", "refused_write"]


class ReadOnlyError(TypeError):
    """An agent tried to change a view it may only read."""


def _refuse(*_: object, **__: object) -> NoReturn:
    raise ReadOnlyError("this view is read-only: build a new value and return it as the agent's result")


class ReadOnlyDict(dict[str, Any]):
    """A dict that refuses every change. ``dict(view)`` or ``copy.deepcopy`` gives a mutable copy."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickles as the plain dict it reads like
        return (dict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(item, memo) for key, item in self.items()}


class ReadOnlyList(list[Any]):
    """A list that refuses every change; ``view + [x]`` and ``list(view)`` give new lists."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def copy(self) -> list[Any]:
        return list(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickles as the plain list it reads like
        return (list, (list(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(item, memo) for item in self]


def readonly(value: Any) -> Any:
    """A deep read-only copy of JSON-like data (dicts and lists; anything else as it is)."""
    if isinstance(value, Mapping):
        view = ReadOnlyDict()
        for key, item in value.items():
            dict.__setitem__(view, key, readonly(item))
        return view
    if isinstance(value, list | tuple):
        return ReadOnlyList(readonly(item) for item in value)
    return value


def refused_write(
    agent: str, keys: Iterable[str], frame: Collection[str], state: Collection[str], allowed: Collection[str]
) -> str | None:
    """Why a result naming ``keys`` may not be kept: a reference-frame entry, or a state key the
    agent does not write; None when it may. Keys that are neither are not state and pass."""
    for key in keys:
        if key in allowed:
            continue
        if key in frame:
            return f"agent {agent!r} tried to write {key!r}, which is in the reference frame (read-only at all times)"
        if key in state:
            return f"agent {agent!r} tried to write {key!r}, which it does not declare in writes or appends"
    return None
