"""DVFS routing: the default table, score overrides, pins and fallbacks."""

from __future__ import annotations

import pytest

from hct_cli.program.routing import DEFAULT_TABLE, DEFAULT_TIERS, Route, fallbacks_of, routing_table, tiers_of
from hct_cli.score.model import DYNAMICS, TierSpec, build_score
from hct_cli.score.tempo import TEMPOS
from tests.engine.fakes import program_of


@pytest.mark.parametrize(
    ("tempo", "dynamics", "tier"),
    [("presto", "ff", "frontier"), ("allegro", "mf", "mid"), ("andante", "pp", "local"), ("presto", "pp", "local")],
)
def test_the_seed_cells(tempo: str, dynamics: str, tier: str) -> None:
    assert DEFAULT_TABLE[(tempo, dynamics)] == tier


def test_the_table_is_full_and_monotone_in_dynamics() -> None:
    order = ("local", "mid", "frontier")
    assert set(DEFAULT_TABLE) == {(t, d) for t in TEMPOS for d in DYNAMICS}
    for tempo in TEMPOS:
        ranks = [order.index(DEFAULT_TABLE[(tempo, d)]) for d in DYNAMICS]
        assert ranks == sorted(ranks), f"{tempo}: louder work must never go to a cheaper tier"


def test_default_tiers() -> None:
    assert {name: spec.model for name, spec in DEFAULT_TIERS.items()} == {
        "local": "ollama/llama3.1",
        "mid": "gpt-4o-mini",
        "frontier": "claude-sonnet-4-5",
    }


def test_score_overrides_cells_tiers_and_pins() -> None:
    program = program_of(
        {
            "a": {"prompt": "p", "tempo": "presto", "dynamics": "ff"},
            "b": {"prompt": "p", "tempo": "andante", "dynamics": "pp"},
            "c": {"prompt": "p", "tempo": "andante", "dynamics": "pp", "model": "gpt-4o"},
        },
        routing={"table": {"presto": {"ff": "mid"}}, "tiers": {"local": {"model": "ollama/qwen2.5"}}},
    )
    routes = {name: spec.route for name, spec in program.stations.items()}
    assert routes["a"] == Route("mid", "gpt-4o-mini", "routing.table presto x ff")
    assert routes["b"].model == "ollama/qwen2.5"
    assert routes["c"] == Route(None, "gpt-4o", "pinned by model:")
    table = routing_table(program.score)
    assert table[("presto", "ff")] == "mid" and table[("allegro", "mf")] == "mid"


def test_fallbacks_go_up_the_ladder_and_skip_same_model_tiers() -> None:
    tiers = dict(DEFAULT_TIERS)
    assert [r.tier for r in fallbacks_of(tiers, "local")] == ["mid", "frontier"]
    assert [r.tier for r in fallbacks_of(tiers, "frontier")] == []
    tiers["frontier"] = TierSpec("frontier", "gpt-4o-mini")
    assert [r.tier for r in fallbacks_of(tiers, "mid")] == []
    score = build_score({"hct": 1, "name": "t", "agents": {"a": {"prompt": "p"}}})
    assert fallbacks_of(tiers_of(score), "custom") == ()
