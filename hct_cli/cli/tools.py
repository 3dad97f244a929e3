"""``hct tools SCORE``: start each tool server of a score, list what it offers, stop it.

The listing shows each tool's description, input schema and effects (the score's word for it,
``write`` unless declared otherwise), and is saved under ``$HCT_HOME/tools/`` so ``hct lint``
can check the tool names agents use. ``--trust`` first adds the score's stdio servers to the
allow list (``$HCT_HOME/tools.allow``), so later runs may start them without ``--allow-exec``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps
from hct_cli.program.inputs import parse_input_args, resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.redact import Redactor
from hct_cli.score.model import Score
from hct_cli.score.tools import ToolServer
from hct_cli.store.home import home_dir
from hct_cli.tools.base import ToolSpec
from hct_cli.tools.listing import save_listing
from hct_cli.tools.trust import add_trusted, fingerprint, is_trusted

__all__ = ["allow_list_path", "list_tools", "listings_dir", "tools"]


def allow_list_path() -> Path:
    return home_dir() / "tools.allow"


def listings_dir() -> Path:
    return home_dir() / "tools"


def tools(
    path: Path, *, as_json: bool, inputs: Sequence[str], trust: bool, allow_exec: bool, allow_path: bool = False
) -> int:
    """List the tools of the score at ``path``; 0 when every server listed."""
    score = load_score(path)
    if not score.tools:
        raise UsageError(
            f"{path} declares no tool servers",
            hint="Declare MCP servers under tools: (see docs/tools.md), then name them in an agent's tools:.",
        )
    values = resolve_inputs(score, parse_input_args(inputs), allow_path=allow_path)
    allow = allow_list_path()
    if trust:
        stdio = [server for server in score.tools.values() if server.transport == "stdio"]
        added = add_trusted(allow, stdio, score=str(path))
        for server in stdio:
            state = "trusted" if fingerprint(server) in added else "already trusted"
            sys.stderr.write(f"{state}: {server.name} ({' '.join(server.command)}) in {allow}\n")
    listings = list_tools(score, values, allow_exec=allow_exec, trusted_path=allow)
    for name, specs in listings.items():
        save_listing(listings_dir(), score.tools[name], specs)
    redact = Redactor.from_environ()
    if as_json:
        sys.stdout.write(redact.text(dumps(_document(score, path, listings), indent=2)) + "\n")
    else:
        _print(score, listings, redact)
    return 0


def list_tools(
    score: Score, inputs: Mapping[str, Any], *, allow_exec: bool, trusted_path: Path
) -> dict[str, tuple[ToolSpec, ...]]:
    """Start each server of ``score``, list its tools, stop them all (also when one fails)."""
    from hct_cli.tools.toolbox import McpToolBox

    async def run() -> dict[str, tuple[ToolSpec, ...]]:
        box = McpToolBox(score.tools, inputs=inputs, allow_exec=allow_exec, trusted=is_trusted(trusted_path))
        async with box:
            return {name: await box.list_server(name) for name in score.tools}

    return asyncio.run(run())


def _document(score: Score, path: Path, listings: Mapping[str, Sequence[ToolSpec]]) -> dict[str, Any]:
    return {
        "score": str(path),
        "servers": {
            name: {
                "transport": score.tools[name].transport,
                "on": score.tools[name].on,
                "tools": [spec.to_data() for spec in specs],
            }
            for name, specs in listings.items()
        },
    }


def _schema_line(spec: ToolSpec) -> str:
    schema = dict(spec.input_schema)
    properties = schema.get("properties")
    required = set(schema.get("required", ()))
    if not isinstance(properties, dict) or not properties:
        return "(no arguments)"
    parts = []
    for arg, rule in properties.items():
        kind = rule.get("type", "any") if isinstance(rule, dict) else "any"
        parts.append(f"{arg}{'' if arg in required else '?'}: {kind}")
    return ", ".join(parts)


def _where(server: ToolServer) -> str:
    """How a server is reached, and where it runs when that is not the conductor."""
    return f"{server.transport}, on: worker" if server.on == "worker" else server.transport


def _print(score: Score, listings: Mapping[str, Sequence[ToolSpec]], redact: Redactor) -> None:
    from hct_cli.cli.console import table_console

    console = table_console()
    if not console.is_terminal or console.is_dumb_terminal:
        lines = []
        for name, specs in listings.items():
            server = score.tools[name]
            lines.append(f"{name} ({_where(server)}, {len(specs)} tools)")
            for spec in specs:
                lines.append(
                    f"  {spec.qualified}  [{spec.effects}]  {spec.description.splitlines()[0] if spec.description else ''}".rstrip()
                )
                lines.append(f"    input: {json.dumps(dict(spec.input_schema), sort_keys=True)}")
        sys.stdout.write(redact.text("\n".join(lines)) + "\n")
        return
    from rich.table import Table

    for name, specs in listings.items():
        table = Table(title=f"{name} ({_where(score.tools[name])})", title_justify="left")
        for column in ("tool", "effects", "arguments", "description"):
            table.add_column(column)
        for spec in specs:
            summary = spec.description.splitlines()[0] if spec.description else ""
            table.add_row(spec.qualified, spec.effects, _schema_line(spec), redact.text(summary))
        console.print(table)
