"""Typer wiring: parse the command line, call one plain function, nothing else.

Each command imports its implementation inside its body, so ``hct --help`` and ``hct lint``
load only what they use (never litellm, textual or redis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hct_cli import __version__
from hct_cli.cli.boundary import run_command
from hct_cli.cli.options import JsonOption

__all__ = ["app", "main"]

app = typer.Typer(
    name="hct",
    help="Run teams of LLM agents from a declarative YAML score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hct {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run teams of LLM agents from a declarative YAML score.

    Start with `hct init NAME`, check with `hct lint SCORE`, run with `hct perform SCORE --simulate`.
    """


@app.command()
def lint(
    scores: Annotated[list[Path], typer.Argument(help="Score files to check.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="Output: text, json, github (workflow annotations) or sarif."),
    ] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check scores: schema, cue graph, state access, templates, routing.

    Exit 0 when clean, 1 when a finding is an error (or a warning with --strict), 2 on misuse.
    """
    from hct_cli.cli.lint import lint as run

    chosen = "json" if as_json else fmt
    run_command(lambda: run(scores, chosen, strict=strict), as_json=chosen == "json")


@app.command()
def schema() -> None:
    """Print the score JSON Schema (for editors and other tools)."""
    from hct_cli.cli.schema import print_schema

    run_command(print_schema)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the score; writes NAME.yaml.")],
    directory: Annotated[Path, typer.Option("--dir", help="Directory to write into.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a commented starter score."""
    from hct_cli.cli.init import init_score

    run_command(lambda: init_score(name, directory, force=force, as_json=as_json), as_json=as_json)


def main() -> None:
    """Entry point of the ``hct`` console script."""
    app()
