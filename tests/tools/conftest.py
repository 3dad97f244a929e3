"""Fixtures of the tool tests: real MCP servers (see :mod:`tests.tools.servers`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import servers


@pytest.fixture
def counter_http(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The counter server over streamable HTTP: (url, state file); stopped after the test."""
    with servers.counter_http_server(tmp_path) as started:
        yield started


@pytest.fixture
def counter_stdio(tmp_path: Path) -> tuple[list[str], Path]:
    """The argv of the counter server over stdio and its state file (the test starts it)."""
    state = tmp_path / "counter-stdio.json"
    return servers.counter_stdio_argv(state), state


@pytest.fixture
def temp_git_repo(tmp_path: Path) -> Path:
    """A repository with three commits, made by the real ``git``."""
    return servers.git_repo(tmp_path)
