"""The template language of prompts: a whitelisted subset of Jinja2.

A template may only print ``{{ cues.NAME }}``, ``{{ inputs.NAME }}`` or ``{{ state.NAME }}``,
each optionally followed by ``.KEY`` steps into JSON data (never a name starting with ``_``)
and filters without arguments from :data:`FILTERS`. Parsing is Jinja2's own; this module only
checks the parsed node types against that whitelist and renders in a sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import SandboxedEnvironment

from hct_cli.errors import AgentError
from hct_cli.jsonio import encoder

__all__ = [
    "FILTERS",
    "MAX_RENDER_CHARS",
    "NAMESPACES",
    "Marker",
    "Reference",
    "TemplateProblem",
    "check_template",
    "compile_template",
    "literal_text",
    "parse_template",
    "render",
    "render_compiled",
    "shown",
]

NAMESPACES = ("cues", "inputs", "state")
#: Filters a template may use, none of which take arguments.
FILTERS = (
    "capitalize",
    "first",
    "join",
    "last",
    "length",
    "lower",
    "sort",
    "string",
    "tojson",
    "trim",
    "unique",
    "upper",
    "wordcount",
)


@dataclass(frozen=True)
class Reference:
    """A use of ``namespace.name`` on a line of the template (1-based), and the fields it reaches
    beyond the name (``cues.parse.files[0].path``: ``("files", 0, "path")``)."""

    namespace: str
    name: str
    line: int
    fields: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class TemplateProblem:
    code: str
    message: str
    hint: str
    line: int


class Marker(str):
    """Text standing in for a value (a paged-out cue, say): any ``.KEY`` step into it gives the
    same text, so a template that looks inside the value still renders."""

    __slots__ = ()


_as_json = encoder(ensure_ascii=False)  # every value a template shows that is not text


def shown(value: Any) -> str:
    """A value as a prompt shows it: text as it is, other JSON data as JSON."""
    return value if isinstance(value, str) else _as_json(value)


def _finalize(value: Any) -> Any:
    """Print text as it is and any other JSON value as JSON, not as a Python repr."""
    if isinstance(value, str | Undefined):
        return value
    return _as_json(value)


class _DataEnvironment(SandboxedEnvironment):
    """A sandbox where ``.KEY`` only ever looks up a key of JSON data, never an attribute."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Marker):
            return obj
        if isinstance(obj, Mapping) and attribute in obj and not attribute.startswith("_"):
            return obj[attribute]
        if isinstance(obj, list) and attribute.isdigit() and int(attribute) < len(obj):
            return obj[int(attribute)]
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``[KEY]`` and ``[INDEX]`` look up data too, never an attribute (Jinja's own falls back to one)."""
        if isinstance(obj, Marker):
            return obj
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        is_index = isinstance(argument, int) and not isinstance(argument, bool)
        if isinstance(obj, list) and is_index and 0 <= argument < len(obj):
            return obj[argument]
        return self.undefined(obj=obj, name=str(argument))


def _passing_markers(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as a filter that gives a :class:`Marker` back unchanged: a paged-out value
    shows its marker, never the length or the first character of the marker's text."""
    takes = getattr(function, "jinja_pass_arg", None)  # a filter that is given the environment first
    if takes is None:

        def plain(value: Any, *args: Any, **kwargs: Any) -> Any:
            return value if isinstance(value, Marker) else _materialised(function(value, *args, **kwargs))

        return plain

    def passing(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return value if isinstance(value, Marker) else _materialised(function(context, value, *args, **kwargs))

    passing.jinja_pass_arg = takes  # type: ignore[attr-defined]
    return passing


def _materialised(value: Any) -> Any:
    """A filter's lazy result (``unique`` gives a generator) as a list, printable as JSON."""
    return list(value) if isinstance(value, Iterator) else value


@cache
def _environment() -> SandboxedEnvironment:
    env = _DataEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters = {name: _passing_markers(env.filters[name]) for name in FILTERS}
    env.tests = {}
    env.globals = {}
    return env


_NODE_WORDS = {
    "Call": "function calls",
    "Const": "literals",
    "Getitem": "`[]` subscripts",
    "List": "literals",
    "Dict": "literals",
    "Tuple": "literals",
    "TemplateData": "text",
}


def _describe(node: nodes.Node) -> str:
    name = type(node).__name__
    if isinstance(node, nodes.Stmt):
        return "statements ({% ... %})"
    if isinstance(node, nodes.BinExpr | nodes.UnaryExpr | nodes.Compare):
        return "operators"
    return _NODE_WORDS.get(name, f"{name} expressions")


class _Checker:
    def __init__(self) -> None:
        self.references: list[Reference] = []
        self.problems: list[TemplateProblem] = []

    def refuse(self, node: nodes.Node, message: str, hint: str) -> None:
        self.problems.append(TemplateProblem("HCT222", message, hint, node.lineno or 1))

    def template(self, tree: nodes.Template) -> None:
        for node in tree.body:
            if not isinstance(node, nodes.Output):
                self.refuse(
                    node,
                    f"{_describe(node)} are not allowed in templates",
                    "Templates only print values: {{ cues.NAME }}, {{ inputs.NAME }}, {{ state.NAME }}.",
                )
                continue
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expression(child)

    def expression(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Filter):
            if node.name not in FILTERS:
                self.refuse(
                    node,
                    f"filter {node.name!r} is not allowed",
                    f"Allowed filters: {', '.join(FILTERS)}.",
                )
            elif node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
                self.refuse(
                    node,
                    f"filter {node.name!r} may not take arguments",
                    "Write the filter without arguments, as {{ cues.NAME | tojson }}.",
                )
            if node.node is None:
                self.refuse(node, "a filter must apply to a value", "Write {{ cues.NAME | upper }}.")
            else:
                self.expression(node.node)
            return
        steps: list[str | int] = []
        dotted = True  # whether the step nearest the namespace was written with a dot
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            dotted = isinstance(node, nodes.Getattr)
            if isinstance(node, nodes.Getattr):
                steps.append(node.attr)
            else:  # a field of a typed result: [0] or ["key"], constants only
                key = node.arg.value if isinstance(node.arg, nodes.Const) else None
                if isinstance(key, bool) or not isinstance(key, int | str) or (isinstance(key, int) and key < 0):
                    self.refuse(
                        node,
                        "a subscript must be a constant index or key, as [0] or ['path']",
                        "Write {{ cues.NAME.items[0].field }}: no expressions inside [ ].",
                    )
                    return
                steps.append(key)
            node = node.node
        steps.reverse()
        if not isinstance(node, nodes.Name):
            self.refuse(
                node,
                f"{_describe(node)} are not allowed in templates",
                "Templates only print values: {{ cues.NAME }}, {{ inputs.NAME }}, {{ state.NAME }}.",
            )
            return
        if node.name not in NAMESPACES:
            self.refuse(
                node,
                f"unknown name {node.name!r}",
                "Refer to cues.NAME, inputs.NAME or state.NAME.",
            )
            return
        if not steps:
            self.refuse(
                node,
                f"{{{{ {node.name} }}}} must name an entry",
                f"Write {{{{ {node.name}.NAME }}}}.",
            )
            return
        if not dotted:
            self.refuse(
                node,
                f"{{{{ {node.name}[...] }}}}: name the entry with a dot",
                f"Write {{{{ {node.name}.NAME }}}} (a subscript may follow it: {{{{ {node.name}.NAME[0] }}}}).",
            )
            return
        hidden = [step for step in steps if isinstance(step, str) and step.startswith("_")]
        if hidden:
            self.refuse(
                node,
                f"names starting with '_' are not allowed ({hidden[0]!r})",
                "Refer only to public keys of the data.",
            )
            return
        name, *fields = steps
        assert isinstance(name, str)  # the step nearest the namespace is dotted (checked above)
        self.references.append(Reference(node.name, name, node.lineno or 1, tuple(fields)))


def check_template(source: str) -> tuple[list[Reference], list[TemplateProblem]]:
    """Parse ``source`` and return the names it refers to and anything it may not do."""
    checker = _Checker()
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        problem = TemplateProblem(
            "HCT221",
            f"template syntax error: {exc.message}",
            "Check the braces: values are written {{ cues.NAME }} and nothing else may stand between '{{' and '}}'.",
            exc.lineno or 1,
        )
        return [], [problem]
    checker.template(tree)
    return checker.references, checker.problems


def parse_template(source: str) -> nodes.Template | None:
    """The parsed template; None when it does not parse."""
    try:
        return _environment().parse(source)
    except TemplateSyntaxError:
        return None


def literal_text(source: str) -> str:
    """The text of a template without its values: what every rendering of it contains."""
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError:
        return source
    return "".join(node.data for node in tree.find_all(nodes.TemplateData))


#: The most characters one rendering may produce; past it the agent fails (its model's window
#: bounds what is sent: this bounds the work of rendering a template that repeats a large value).
MAX_RENDER_CHARS = 8 * 1024 * 1024


def render_compiled(template: Template, context: Mapping[str, Any], limit: int = MAX_RENDER_CHARS) -> str:
    """Render a compiled template, refusing output longer than ``limit`` characters."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(**context):
        size += len(chunk)
        if size > limit:
            raise AgentError(
                f"the template renders to more than {limit:,} characters",
                hint="Refer to each large value once; the model's window is far smaller than that anyway.",
            )
        parts.append(chunk)
    return "".join(parts)


def compile_template(source: str) -> Template:
    """Compile a template that :func:`check_template` accepted, for repeated rendering."""
    return _environment().from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a template that :func:`check_template` accepted, in the sandbox."""
    return render_compiled(compile_template(source), context)
