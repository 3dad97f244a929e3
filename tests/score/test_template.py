from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from hct_cli.score.template import check_template, render

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    "source",
    [
        "{{ cues.a() }}",
        "{{ cues.a[cues.b] }}",
        "{{ cues.a[-1] }}",
        "{{ cues.a[1:2] }}",
        "{{ cues[0] }}",
        "{{ 'x' }}",
        "{{ cues.a + cues.b }}",
        "{% if cues.a %}x{% endif %}",
        "{{ cues.__class__ }}",
        "{{ cues.a._secret }}",
        "{{ lipsum }}",
        "{{ cues }}",
        "{{ cues.a | truncate(3) }}",
        "{{ cues.a | attr('x') }}",
        "{{ cues.a if cues.b }}",
    ],
)
def test_refused_constructs(source: str) -> None:
    _, problems = check_template(source)
    assert problems and problems[0].code == "HCT222"


def test_references_and_lines() -> None:
    refs, problems = check_template("a {{ cues.x }}\n{{ inputs.y.z | tojson }}\n{{ state.k }}")
    assert problems == []
    assert [(r.namespace, r.name, r.line) for r in refs] == [("cues", "x", 1), ("inputs", "y", 2), ("state", "k", 3)]


def test_fields_of_a_typed_result_are_reached_by_constant_keys_and_indexes() -> None:
    refs, problems = check_template("{{ cues.parse.files[0].path }} {{ state.k['a b'] }}")
    assert problems == []
    assert [(r.namespace, r.name, r.fields) for r in refs] == [
        ("cues", "parse", ("files", 0, "path")),
        ("state", "k", ("a b",)),
    ]
    context = {"cues": {"parse": {"files": [{"path": "x.py"}]}}, "state": {"k": {"a b": 1}}}
    assert render("{{ cues.parse.files[0].path }} {{ state.k['a b'] }}", context) == "x.py 1"
    with pytest.raises(UndefinedError):
        render("{{ cues.parse.files[3].path }}", context)


def test_syntax_error_has_its_line() -> None:
    _, problems = check_template("ok\n{{ cues.x")
    assert problems[0].code == "HCT221" and problems[0].line == 2


def test_render_prints_json_for_data_and_steps_into_keys_only() -> None:
    context = {"cues": {"a": {"files": ["x.py"], "n": 2}}, "state": {"s": [1, "a"]}}
    assert render("{{ cues.a.files }} {{ state.s }} {{ cues.a.n }}", context) == '["x.py"] [1, "a"] 2'
    with pytest.raises(UndefinedError):
        render("{{ cues.a.items }}", context)


def test_render_sandbox_refuses_unsafe_access() -> None:
    with pytest.raises((SecurityError, UndefinedError)):
        render("{{ cues.a.__class__ }}", {"cues": {"a": "x"}})
