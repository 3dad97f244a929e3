"""Every error hct raises on purpose derives from :class:`HctError`.

The tree::

    HctError                      exit 1 unless a subclass says otherwise
    ├── UsageError                exit 2: the command line itself is wrong
    ├── ScoreError                a score failed to load, validate or lint; carries findings
    ├── InputError                an --input value or file cannot be used
    ├── CheckError                a check cannot be evaluated as written (a JSON Schema $ref hct
    │                             refuses or cannot resolve)
    ├── ExecNotAllowedError       a python/shell agent or check without --allow-exec
    ├── RunError                  a run could not start or continue
    │   ├── CredentialsError      a routed model has no key, or its server does not answer
    │   ├── LocalModelError       the local model is not installed or its server did not start
    │   ├── BusError              the distributed bus (Redis) cannot be reached, or was lost mid-run
    │   ├── RunNotFoundError      no journaled run has that id
    │   └── RunBusyError          another live process is performing that run
    ├── StoreError                hct's database under $HCT_HOME cannot be opened or written
    │   └── CorruptStoreError     the database file is damaged (or is not an SQLite database)
    ├── AgentError                one agent cannot go on; that agent fails, the run carries on
    │   ├── ContextError          the reference frame and the prompt alone exceed the model's window
    │   ├── AccessError           an agent reached beyond what it declared (the reference frame,
    │   │                         a key it does not read or write)
    │   └── ToolError             a tool server failed to start, died, hung or answered malformed
    │       └── InDoubtWriteError a write call was sent but its result never journaled: it may
    │                             have happened, so it is not sent again (needs_attention)
    └── BenchError                a benchmark was asked for something it cannot measure

``ProviderError`` (in ``hct_cli.providers.base``) sits beside ``AgentError``: a call that failed.

Every message says what went wrong and ``hint`` says what to do next. The CLI turns these
into exit codes and messages in one place (``hct_cli.cli.boundary``); a traceback reaching a
user is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hct_cli.score.findings import Finding

__all__ = [
    "AccessError",
    "AgentError",
    "BenchError",
    "BusError",
    "CheckError",
    "ContextError",
    "CorruptStoreError",
    "CredentialsError",
    "ExecNotAllowedError",
    "HctError",
    "InDoubtWriteError",
    "InputError",
    "LocalModelError",
    "RunBusyError",
    "RunError",
    "RunNotFoundError",
    "ScoreError",
    "StoreError",
    "ToolError",
    "UsageError",
]


class HctError(Exception):
    """Root of hct's errors: a message, a hint saying what to do next, an exit code."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, object]:
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint}


class UsageError(HctError):
    """The command line is wrong: an unknown option value, a missing argument."""

    exit_code = 2


class ScoreError(HctError):
    """A score has findings of error level; nothing was run and nothing written."""

    def __init__(self, message: str, findings: Sequence[Finding], *, hint: str = "") -> None:
        super().__init__(message, hint=hint or "Run `hct lint SCORE` to see every finding.")
        self.findings = tuple(findings)

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        data["findings"] = [f.to_json() for f in self.findings]
        return data


class InputError(HctError):
    """An ``--input`` value or file cannot be used."""


class CheckError(HctError):
    """A check cannot be evaluated as written: its JSON Schema has a ``$ref`` that reaches beyond
    the score (a URL, a file outside its directory) or that does not resolve."""


class ExecNotAllowedError(HctError):
    """A score needs to run code (python/shell agents) and ``--allow-exec`` was not given."""


class RunError(HctError):
    """A run could not start or could not continue."""


class CredentialsError(RunError):
    """A model the run routes to cannot be called: a key is missing or its server does not answer."""


class LocalModelError(RunError):
    """The local model cannot be served (not installed, or its server did not start)."""


class RunNotFoundError(RunError):
    """No journaled run has the given id."""


class RunBusyError(RunError):
    """The run is being performed by another process that is still alive: one performer a run."""


class StoreError(HctError):
    """hct's database (``$HCT_HOME/hct.db``) cannot be opened or written."""


class CorruptStoreError(StoreError):
    """hct's database file is damaged, empty or not an SQLite database at all."""

    def __init__(self, message: str, *, file: str, integrity: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.integrity = integrity

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        data["file"] = self.file
        data["integrity_check"] = self.integrity
        return data


class AgentError(HctError):
    """One agent cannot go on: its station fails with this message, the run carries on."""


class ContextError(AgentError):
    """Even with every cue, input and state value paged out, a call does not fit its model's window."""


class AccessError(AgentError):
    """An agent tried to reach beyond what it declared: the reference frame, or a key it does
    not read or write."""


class ToolError(AgentError):
    """A tool server cannot serve an agent's call: the agent fails, the run carries on."""


class InDoubtWriteError(ToolError):
    """A write call whose result the journal lacks: it may have reached the world already."""


class BenchError(HctError):
    """A benchmark cannot be run as asked."""


class BusError(RunError):
    """The distributed bus (Redis) cannot be reached, or was lost while a run used it."""


class UnknownProviderError(HctError):
    """A provider was asked for by a name the provider registry does not hold."""
