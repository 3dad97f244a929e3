"""The user's allow list of local tool servers: ``$HCT_HOME/tools.allow``.

A stdio server is a program hct starts on this machine, so a score may start one only with
``--allow-exec`` or when the user trusted that exact entry before (``hct tools --trust SCORE``).
The list holds fingerprints of entries (the canonical JSON of what the score wrote: the command,
its env), so an edited command is a new, untrusted entry. One fingerprint a line, then a comment
naming the score and server for the person reading it; a line that is not a fingerprint is
ignored, never trusted. The caller passes the path (this package does not know where the home is).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from hct_cli.errors import StoreError
from hct_cli.score.tools import ToolServer

__all__ = ["add_trusted", "fingerprint", "is_trusted", "load_trusted", "write_atomically"]

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def fingerprint(server: ToolServer) -> str:
    """sha256 of the canonical JSON of the entry as the score wrote it."""
    canonical = json.dumps(server.to_data(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_trusted(path: Path) -> frozenset[str]:
    """The fingerprints in the allow list; none when it is missing or unreadable."""
    try:
        raw = path.read_bytes()
    except OSError:
        return frozenset()
    found = set()
    for line in raw.decode("utf-8", errors="replace").splitlines():
        first = line.split("#", 1)[0].strip()
        if _FINGERPRINT.fullmatch(first):
            found.add(first)
    return frozenset(found)


def add_trusted(path: Path, servers: Iterable[ToolServer], *, score: str = "") -> list[str]:
    """Add the servers' fingerprints to the allow list; returns those that were not in it yet.

    The file is rewritten whole (a temporary beside it, then renamed) so a crash never leaves half
    a list; the lines it had, readable or not, are kept as they were.
    """
    known = load_trusted(path)
    try:
        before = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        before = ""
    except OSError as exc:
        raise StoreError(
            f"cannot read the tool allow list {path}: {exc.strerror or exc}",
            hint=f"Make {path} readable for this user, or set HCT_HOME to another directory.",
        ) from exc
    added: list[str] = []
    lines: list[str] = []
    for server in servers:
        mark = fingerprint(server)
        if mark in known or mark in added:
            continue
        added.append(mark)
        where = f"score {score}, " if score else ""
        lines.append(f"{mark}  # {where}server {server.name}: {' '.join(server.command) or server.url}")
    if not added:
        return added
    text = before if not before or before.endswith("\n") else before + "\n"
    text += "".join(line.replace("\n", " ") + "\n" for line in lines)
    write_atomically(path, text)
    return added


def is_trusted(path: Path) -> Callable[[ToolServer], bool]:
    """Whether an entry is in the allow list (read once, now), for the run's assembly."""
    trusted = load_trusted(path)

    def check(server: ToolServer) -> bool:
        return fingerprint(server) in trusted

    return check


def write_atomically(path: Path, text: str, what: str = "the tool allow list") -> None:
    """Write ``text`` to ``path`` whole or not at all (another process may read it meanwhile)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StoreError(
            f"cannot write {what} {path}: {exc.strerror or exc}",
            hint=f"Make {path.parent} writable for this user, or set HCT_HOME to another directory.",
        ) from exc
