"""Shared fixtures: every test runs with its own HCT_HOME and working directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = Path(__file__).resolve().parent / "resources"
SCORES = REPO / "scores"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep journals, stores and predictors of a test out of the user's directories."""
    home = tmp_path_factory.mktemp("hct-home")
    monkeypatch.setenv("HCT_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    yield home


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def resources() -> Path:
    return RESOURCES
