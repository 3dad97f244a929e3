"""The cache of tool lists ``hct tools`` saw, so ``hct lint`` can check the names agents use.

Each listing is one JSON file under the directory the caller passes (``$HCT_HOME/tools/``), named
by the server entry's fingerprint: a listing is trusted only for exactly the entry that produced
it, so an edited command or URL is checked against nothing rather than against an old list.
A file that cannot be read or parsed counts as no listing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from hct_cli.score.tools import ToolServer
from hct_cli.tools.base import ToolSpec
from hct_cli.tools.trust import fingerprint, write_atomically

__all__ = ["load_listings", "save_listing"]


def _file(directory: Path, server: ToolServer) -> Path:
    return directory / f"{fingerprint(server)}.json"


def save_listing(directory: Path, server: ToolServer, specs: Sequence[ToolSpec]) -> Path:
    """Save what ``server`` listed; returns the file written."""
    path = _file(directory, server)
    data = {"server": server.name, "entry": server.to_data(), "tools": [spec.to_data() for spec in specs]}
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True), f"the tool list of {server.name!r}")
    return path


def load_listings(directory: Path, servers: Mapping[str, ToolServer]) -> dict[str, list[str]]:
    """Each server's listed tool names, for the servers a listing of exactly their entry exists."""
    listings: dict[str, list[str]] = {}
    for name, server in servers.items():
        try:
            data = json.loads(_file(directory, server).read_text(encoding="utf-8"))
            names = [tool["name"] for tool in data["tools"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if all(isinstance(tool, str) for tool in names):
            listings[name] = names
    return listings
