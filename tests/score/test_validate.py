from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from hct_cli.score.load import load_text
from hct_cli.score.validate import schema, schema_text, validate

pytestmark = pytest.mark.timeout(120)

MINIMAL = "hct: 1\nname: x\nagents:\n  a:\n    prompt: hi\n"


def _findings(text: str) -> list[tuple[str, int, int]]:
    return [(f.code, f.line, f.col) for f in validate(load_text(text, "s.yaml"))]


def test_schema_is_valid_2020_12_with_id() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"].endswith("2020-12/schema")
    assert schema()["$id"]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and ("title" not in node or "description" not in node):
        target: Any = schema()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            found.append((f"{path}.{name}", sub))
        for key, sub in node.items():
            if key not in ("if", "not"):  # conditions restate properties, they do not define them
                found += _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            found += _properties(sub, f"{path}[{i}]")
    return found


def test_every_property_has_title_and_description() -> None:
    props = _properties(schema())
    assert len(props) > 80
    missing = [p for p, sub in props if not ("title" in _resolve(sub) and "description" in _resolve(sub))]
    assert missing == []


def test_only_hct_name_agents_required() -> None:
    assert sorted(schema()["required"]) == ["agents", "hct", "name"]
    assert _findings(MINIMAL) == []


def test_language_covers_design() -> None:
    agent = schema()["$defs"]["agent"]["properties"]
    for key in [
        "kind",
        "prompt",
        "call",
        "command",
        "model",
        "max_tokens",
        "tempo",
        "dynamics",
        "cues",
        "priorities",
        "reads",
        "writes",
        "appends",
        "fermata",
        "vamp",
        "tacet_if",
        "attacca",
        "downbeat",
        "speculate",
        "timeout_s",
        "simulate",
    ]:
        assert key in agent, key
    top = schema()["properties"]
    for key in [
        "hct",
        "name",
        "description",
        "reference_frame",
        "inputs",
        "state",
        "routing",
        "defaults",
        "coherence",
        "agents",
    ]:
        assert key in top, key
    assert top["coherence"]["enum"] == ["replay", "hold", "off"]


def test_unknown_key_points_at_the_key_with_a_suggestion() -> None:
    doc = load_text(MINIMAL + "    cuse: [b]\n", "s.yaml")
    (finding,) = validate(doc)
    assert (finding.code, finding.line, finding.col) == ("HCT101", 6, 5)
    assert "cues" in finding.hint


def test_a_tool_server_runs_on_the_conductor_or_a_worker() -> None:
    server = "tools:\n  fs:\n    url: http://127.0.0.1:9/mcp\n    effects: read\n"
    for where in ("", "    on: worker\n", "    on: conductor\n"):
        assert (
            validate(load_text("hct: 1\nname: x\n" + server + where + "agents:\n  a: {prompt: hi}\n", "s.yaml")) == []
        )
    doc = load_text("hct: 1\nname: x\n" + server + "    on: gpu\nagents:\n  a: {prompt: hi}\n", "s.yaml")
    (finding,) = validate(doc)
    assert (finding.code, finding.line, finding.col) == ("HCT104", 7, 9)
    assert schema()["$defs"]["tool_server"]["properties"]["on"]["enum"] == ["conductor", "worker"]


def test_wrong_values_point_at_the_value() -> None:
    assert _findings(MINIMAL + "    tempo: fast\n") == [("HCT104", 6, 12)]
    assert _findings(MINIMAL + "    max_tokens: many\n") == [("HCT103", 6, 17)]
    assert _findings("hct: 1\nagents:\n  a: {prompt: x}\n") == [("HCT102", 1, 1)]
    assert _findings("- 1\n- 2\n") == [("HCT103", 1, 1)]
    assert _findings("hct: 1\nname: x\nagents:\n  bad-name: {prompt: x}\n") == [("HCT104", 4, 3)]


def test_kind_requirements() -> None:
    assert _findings("hct: 1\nname: x\nagents:\n  a: {kind: python}\n") == [("HCT102", 4, 3)]
    assert _findings("hct: 1\nname: x\nagents:\n  a: {kind: python, call: 'm:f'}\n") == []
    assert _findings("hct: 1\nname: x\nagents:\n  a: {kind: shell, command: [ls]}\n") == []


def test_top_level_schema_file_is_a_symlink_to_the_package_copy(repo: Path) -> None:
    link = repo / "schemas" / "score.schema.json"
    assert link.is_symlink()
    assert link.resolve() == (repo / "hct_cli" / "schemas" / "score.schema.json").resolve()
    assert json.loads(link.read_text()) == json.loads(schema_text())


@pytest.mark.slow
def test_built_wheel_ships_the_schema(repo: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(repo)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    (wheel,) = tmp_path.glob("hct-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "hct_cli/schemas/score.schema.json" in names
        assert "hct_cli/py.typed" in names
        target = tmp_path / "site"
        archive.extractall(target)
    code = "from hct_cli.score.validate import schema; print(schema()['$id'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == schema()["$id"]
