"""The typed, frozen model of a validated score.

:func:`build_score` is only called on data that passed the schema, so it trusts shapes and
applies defaults; semantic checks live in :mod:`hct_cli.program.lint`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from hct_cli.score.load import Document
from hct_cli.score.tempo import Tempo
from hct_cli.score.tools import ScriptedCall, ToolServer, tool_servers_from_data

__all__ = [
    "DYNAMICS",
    "Agent",
    "Check",
    "Fermata",
    "InputSpec",
    "Judge",
    "Output",
    "Routing",
    "Score",
    "Simulate",
    "StateKey",
    "TacetIf",
    "TierSpec",
    "Vamp",
    "agent_from_data",
    "build_score",
    "checks_of",
]

Dynamics = Literal["pp", "p", "mf", "f", "ff"]
Kind = Literal["llm", "python", "shell", "human"]

#: Dynamics from softest to loudest, with their budget multipliers.
DYNAMICS: Mapping[str, float] = MappingProxyType({"pp": 0.25, "p": 0.5, "mf": 1.0, "f": 1.5, "ff": 2.0})
DEFAULT_MAX_TOKENS = 1024


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Judge:
    criteria: str
    threshold: float = 0.7
    tier: str = "mid"


@dataclass(frozen=True)
class Check:
    """A test of an output; every kind given must pass."""

    regex: str | None = None
    json_schema: Any = None
    min_length: int | None = None
    max_length: int | None = None
    contains: tuple[str, ...] = ()
    python: str | None = None
    judge: Judge | None = None
    human: bool = False

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Check:
        contains = data.get("contains", ())
        judge = data.get("judge")
        return cls(
            regex=data.get("regex"),
            json_schema=data.get("json_schema"),
            min_length=data.get("min_length"),
            max_length=data.get("max_length"),
            contains=(contains,) if isinstance(contains, str) else tuple(contains),
            python=data.get("python"),
            judge=Judge(**judge) if judge else None,
            human=bool(data.get("human", False)),
        )


@dataclass(frozen=True)
class Fermata:
    check: Check
    on_fail: Literal["retry", "escalate", "caesura"] = "retry"
    retries: int = 1
    hold: Literal["gate", "approval"] = "gate"
    timeout_s: float | None = None
    default: Literal["approve", "reject"] = "reject"


@dataclass(frozen=True)
class Output:
    """A typed result (``output:``): the JSON Schema every answer must satisfy, and what an
    invalid answer leads to (as a fermata's failed check does)."""

    schema: Any
    on_fail: Literal["retry", "escalate", "caesura"] = "retry"
    retries: int = 1

    @property
    def fermata(self) -> Fermata:
        """The gate an invalid answer fails (its reason goes back to the model on a retry)."""
        return Fermata(Check(json_schema=self.schema), self.on_fail, self.retries)


@dataclass(frozen=True)
class Vamp:
    until: Check
    max: int | None = None


@dataclass(frozen=True)
class TacetIf:
    cue: str
    check: Check


@dataclass(frozen=True)
class Simulate:
    """Figures for the simulated provider; None means "derive it"."""

    latency_ms: tuple[float, float] | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    pass_rate: float | None = None
    output: Any = None
    tool_calls: tuple[tuple[ScriptedCall, ...], ...] = ()  # the scripted model's calls, per round

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Simulate:
        latency = data.get("latency_ms")
        if isinstance(latency, int | float):
            latency = (float(latency), float(latency))
        elif latency is not None:
            low, high = sorted(float(x) for x in latency)
            latency = (low, high)
        return cls(
            latency_ms=latency,
            prompt_tokens=data.get("prompt_tokens"),
            output_tokens=data.get("output_tokens"),
            pass_rate=data.get("pass_rate"),
            output=data.get("output"),
            tool_calls=tuple(
                tuple(ScriptedCall(call["tool"], _frozen(call.get("args"))) for call in round_)
                for round_ in data.get("tool_calls", ())
            ),
        )


@dataclass(frozen=True)
class Agent:
    """One agent, with the score's defaults applied."""

    name: str
    index: int
    kind: Kind = "llm"
    description: str = ""
    prompt: str | None = None
    call: str | None = None
    command: tuple[str, ...] = ()
    model: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    tempo: Tempo = "moderato"
    dynamics: Dynamics = "mf"
    cues: tuple[str, ...] = ()
    priorities: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    appends: tuple[str, ...] = ()
    fermata: Fermata | None = None
    output: Output | None = None
    vamp: Vamp | None = None
    tacet_if: TacetIf | None = None
    attacca: bool = False
    downbeat: bool = False
    speculate: bool | Literal["auto"] = False
    timeout_s: float | None = None
    simulate: Simulate = field(default_factory=Simulate)
    tools: tuple[str, ...] = ()  # references to the score's tools (server.tool, server.*, tool)
    max_steps: int | None = None  # model-tool rounds; None: DEFAULT_MAX_STEPS


def checks_of(agent: Agent) -> Iterator[tuple[tuple[str, ...], Check]]:
    """Every check an agent declares, with where it sits under the agent: its fermata's, its
    vamp's ``until``, its ``tacet_if``."""
    if agent.fermata is not None:
        yield ("fermata", "check"), agent.fermata.check
    if agent.vamp is not None:
        yield ("vamp", "until"), agent.vamp.until
    if agent.tacet_if is not None:
        yield ("tacet_if",), agent.tacet_if.check


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: Literal["text", "json", "number", "integer", "boolean"] = "text"
    default: Any = None
    has_default: bool = False
    default_file: str | None = None
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class StateKey:
    name: str
    initial: Any = None
    description: str = ""
    schema: Any = None  # JSON Schema every value must satisfy; None: anything


@dataclass(frozen=True)
class TierSpec:
    name: str
    model: str
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    api_base: str | None = None
    context_window: int | None = None  # prompt and answer together; overrides the price map


@dataclass(frozen=True)
class Routing:
    """The score's routing section: tier overrides, table overrides, budget."""

    tiers: Mapping[str, TierSpec] = field(default_factory=lambda: MappingProxyType({}))
    table: Mapping[tuple[str, str], str] = field(default_factory=lambda: MappingProxyType({}))
    budget_usd: float | None = None


@dataclass(frozen=True)
class Score:
    name: str
    agents: Mapping[str, Agent]
    description: str = ""
    reference_frame: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    inputs: Mapping[str, InputSpec] = field(default_factory=lambda: MappingProxyType({}))
    state: Mapping[str, StateKey] = field(default_factory=lambda: MappingProxyType({}))
    coherence: Literal["replay", "hold", "off"] = "replay"
    routing: Routing = field(default_factory=Routing)
    tools: Mapping[str, ToolServer] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None
    document: Document | None = field(default=None, compare=False, repr=False)

    @property
    def base_dir(self) -> Path:
        """Directory that ``default_file`` paths are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()


def agent_from_data(
    name: str, index: int, data: Mapping[str, Any], defaults: Mapping[str, Any] = MappingProxyType({})
) -> Agent:
    """An :class:`Agent` from its data, as a score declares it (``defaults``: the score's
    ``defaults`` section) or as a work item carries it to a worker: the one place one is built."""
    merged = {**defaults, **data}
    simulate = {**defaults.get("simulate", {}), **data.get("simulate", {})}
    fermata = data.get("fermata")
    output = data.get("output")
    vamp = data.get("vamp")
    tacet = data.get("tacet_if")
    return Agent(
        name=name,
        index=index,
        kind=merged.get("kind", "llm"),
        description=merged.get("description", ""),
        prompt=merged.get("prompt"),
        call=merged.get("call"),
        command=tuple(merged.get("command", ())),
        model=merged.get("model"),
        max_tokens=merged.get("max_tokens", DEFAULT_MAX_TOKENS),
        tempo=merged.get("tempo", "moderato"),
        dynamics=merged.get("dynamics", "mf"),
        cues=tuple(merged.get("cues", ())),
        priorities=_frozen(merged.get("priorities")),
        reads=tuple(merged.get("reads", ())),
        writes=tuple(merged.get("writes", ())),
        appends=tuple(merged.get("appends", ())),
        fermata=(
            Fermata(
                check=Check.from_data(fermata["check"]),
                on_fail=fermata.get("on_fail", "retry"),
                retries=fermata.get("retries", 1),
                hold=fermata.get("hold", "approval" if fermata["check"].get("human") else "gate"),
                timeout_s=fermata.get("timeout_s"),
                default=fermata.get("default", "reject"),
            )
            if fermata
            else None
        ),
        output=Output(output["schema"], output.get("on_fail", "retry"), output.get("retries", 1)) if output else None,
        vamp=Vamp(Check.from_data(vamp["until"]), vamp.get("max")) if vamp else None,
        tacet_if=(
            TacetIf(tacet["cue"], Check.from_data({k: v for k, v in tacet.items() if k != "cue"})) if tacet else None
        ),
        attacca=bool(merged.get("attacca", False)),
        downbeat=bool(merged.get("downbeat", False)),
        speculate=merged.get("speculate", False),
        timeout_s=merged.get("timeout_s"),
        simulate=Simulate.from_data(simulate),
        tools=tuple(merged.get("tools", ())),
        max_steps=merged.get("max_steps"),
    )


def _routing(data: Mapping[str, Any]) -> Routing:
    tiers: dict[str, TierSpec] = {}
    for name, spec in data.get("tiers", {}).items():
        if isinstance(spec, str):
            tiers[name] = TierSpec(name, spec)
        else:
            tiers[name] = TierSpec(name, **spec)
    table = {(tempo, dynamics): tier for tempo, row in data.get("table", {}).items() for dynamics, tier in row.items()}
    return Routing(MappingProxyType(tiers), MappingProxyType(table), data.get("budget_usd"))


def build_score(data: Mapping[str, Any], *, path: Path | None = None, document: Document | None = None) -> Score:
    """Build the typed model from schema-valid data."""
    defaults = data.get("defaults", {})
    agents = {
        name: agent_from_data(name, index, spec, defaults) for index, (name, spec) in enumerate(data["agents"].items())
    }
    inputs = {
        name: InputSpec(
            name=name,
            type=spec.get("type", "text"),
            default=spec.get("default"),
            has_default="default" in spec,
            default_file=spec.get("default_file"),
            required=bool(spec.get("required", False)),
            description=spec.get("description", ""),
        )
        for name, spec in data.get("inputs", {}).items()
    }
    state = {
        name: StateKey(name, spec.get("initial"), spec.get("description", ""), spec.get("schema"))
        for name, spec in data.get("state", {}).items()
    }
    return Score(
        name=data["name"],
        description=data.get("description", ""),
        agents=MappingProxyType(agents),
        reference_frame=_frozen(data.get("reference_frame")),
        inputs=MappingProxyType(inputs),
        state=MappingProxyType(state),
        coherence=data.get("coherence", "replay"),
        routing=_routing(data.get("routing", {})),
        tools=tool_servers_from_data(data.get("tools", {})),
        path=path,
        document=document,
    )
