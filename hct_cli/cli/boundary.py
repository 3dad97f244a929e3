"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from hct_cli.errors import HctError, ScoreError
from hct_cli.jsonio import dumps
from hct_cli.redact import Redactor

__all__ = ["run_command"]


def _print_error(exc: HctError, *, as_json: bool) -> None:
    redact = Redactor.from_environ()  # a secret may be quoted in a provider's error
    if as_json:
        sys.stdout.write(dumps({"error": redact.data(exc.to_json())}, indent=2) + "\n")
        return
    lines = [f"error: {exc.message}"]
    if isinstance(exc, ScoreError):
        for f in exc.findings[:5]:
            lines.append(f"  {f.file}:{f.line}:{f.col}: {f.severity.value}[{f.code}]: {f.message}")
        if len(exc.findings) > 5:
            lines.append(f"  ... and {len(exc.findings) - 5} more")
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    sys.stderr.write(redact.text("\n".join(lines)) + "\n")


def run_command(action: Callable[[], int], *, as_json: bool = False) -> None:
    """Run a command's plain function; turn its result or error into the process's exit code."""
    try:
        code = action()
    except HctError as exc:
        _print_error(exc, as_json=as_json)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        raise typer.Exit(0) from None
    raise typer.Exit(code)
