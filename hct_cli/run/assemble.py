"""Building a run: its score, journal, providers, gates and performer, ready to play.

:func:`prepare` does everything between "run this score" and the first call, for the library
(:mod:`hct_cli.run.api`), ``hct perform`` and ``hct bench`` alike: it loads the score (a resume:
from the journal), claims the run, picks the providers by name from the registry, starts the
journal. The :class:`Run` it yields is driven by its caller, since only the caller knows where the
run plays: in this loop, in ``asyncio.run`` or inside the conductor's Textual app.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.errors import UsageError
from hct_cli.events import Observer
from hct_cli.program.checks import SchemaRefs
from hct_cli.program.compile import Program, StationSpec, compile_score
from hct_cli.program.lint import load_score, load_score_text
from hct_cli.program.routing import tiers_of
from hct_cli.providers.base import Provider
from hct_cli.providers.registry import make_provider
from hct_cli.run.config import Resume, Trust, Tuning
from hct_cli.run.guard import check_credentials, refuse_exec, refuse_untrusted_tools, schema_refs, trusted_tools
from hct_cli.score import Score
from hct_cli.store.journal import RunConfig

if TYPE_CHECKING:
    from hct_cli.distributed.session import Session
    from hct_cli.engine.context import Tokenizer
    from hct_cli.providers.human import HumanDesk
    from hct_cli.store.journal import Journal
    from hct_cli.store.runs import RecalledCall, RunRow, ToolJournal
    from hct_cli.tools.base import ToolBox

__all__ = ["Calls", "Past", "Run", "Setting", "Source", "build_performer", "model_provider_name", "prepare"]

#: A run's source: a score's path, a loaded score, or a compiled program (``hct bench``).
Source = Score | Program | str | Path


def _silent(line: str) -> None:
    """Say nothing: a library call prints nothing unless asked to."""


@dataclass(frozen=True)
class Setting:
    """What a run is: its id, score, program and what it was given."""

    run_id: str
    score: Score
    program: Program
    config: RunConfig
    trust: Trust = field(default_factory=Trust)
    tuning: Tuning = field(default_factory=Tuning)
    refs: SchemaRefs | None = None  # None: the performer's own (hct bench)


@dataclass(frozen=True)
class Calls:
    """Who makes a run's calls."""

    models: Provider  # model calls, through the cache and the bus where the run has them
    judges: Provider  # the gates' judge calls: decided in this process, in any mode
    code: Provider | None  # python and shell agents; None: simulated as model calls (hct bench)
    tokenizer: Tokenizer | None = None  # None: about four characters a token
    tools: ToolBox | None = None  # the score's tool servers (None: it declares none)


@dataclass(frozen=True)
class Past:
    """What a resumed run brings from its journal; empty for a new run."""

    row: RunRow | None = None
    recalled: Mapping[tuple[str, int, str], RecalledCall] | None = None
    spent_usd: float = 0.0
    versions: Mapping[str, int] = field(default_factory=dict)  # squashed versions a caesura left
    tools: ToolJournal | None = None  # its tool calls: answered, or sent with no result journaled


class Run:
    """A run prepared to play: :meth:`cast` builds its performer, :meth:`play` performs it, and
    :meth:`finish` journals its end and completes its result."""

    def __init__(
        self,
        setting: Setting,
        calls: Calls,
        past: Past,
        db: sqlite3.Connection | None,
        journal: Journal | None,
        session: Session | None,
    ) -> None:
        self.setting = setting
        self.calls = calls
        self.past = past
        self.db = db
        self.journal = journal
        self.session = session
        self.desk: HumanDesk | None = None
        self._performer: Performer | None = None

    @property
    def run_id(self) -> str:
        return self.setting.run_id

    @property
    def program(self) -> Program:
        return self.setting.program

    @property
    def score(self) -> Score:
        return self.setting.score

    @property
    def config(self) -> RunConfig:
        return self.setting.config

    @property
    def segment(self) -> int | None:
        """This segment's number in the journal (1 for a new run); None when not journaled."""
        return self.journal.segment if self.journal is not None else None

    @property
    def budget_usd(self) -> float | None:
        """The spend cap in force (``hct bench`` keeps none but the one it is given)."""
        config = self.config
        return config.budget_usd if self.setting.tuning.engine_only else config.budget(self.score)

    @property
    def performer(self) -> Performer:
        if self._performer is None:
            raise UsageError("the run has no performer yet", hint="Call run.cast() before run.play().")
        return self._performer

    def cast(self, observers: Sequence[Observer] = (), *, terminal: bool = False) -> Performer:
        """Build the performer with ``observers`` after the journal; ``terminal``: a person at this
        terminal may be asked for approvals. A person can also decide from another shell (``hct
        approve``) wherever the run is journaled; without either, nobody can be asked."""
        from hct_cli.providers.human import HumanDesk

        if not self.setting.tuning.engine_only and (self.db is not None or terminal):
            self.desk = HumanDesk(self.run_id, self.db, terminal=terminal)
        every: list[Observer] = [self.journal, *observers] if self.journal is not None else list(observers)
        self._performer = build_performer(self, every, self.desk)
        if self.journal is not None:
            self.journal.on_failure = self._performer.fail
        return self._performer

    async def play(self) -> RunResult:
        """Perform the run in this event loop (over the bus in distributed mode)."""
        performer = self.performer
        try:
            if self.session is not None:
                return await self.session.play(performer, list(self.program.tiers))
            return await performer.run()
        finally:
            if self.calls.tools is not None:  # every server it started stops with the run
                await self.calls.tools.aclose()

    def finish(self, result: RunResult) -> RunResult:
        """Journal the segment's end; the result then holds the run's call counts and segment."""
        if self.journal is None or self.db is None:
            return result
        from hct_cli.store.runs import call_counts

        self.journal.finish(result.status, result.cost_usd, result.to_json())
        result.call_counts = call_counts(self.db, self.run_id)
        result.segment = self.journal.segment
        return result


def build_performer(run: Run, observers: Sequence[Observer], desk: HumanDesk | None) -> Performer:
    """The one place a run's :class:`Performer` is built."""
    from hct_cli.engine import EngineOptions, Hands, ResumeState
    from hct_cli.engine.gates import Gatekeeper
    from hct_cli.store.cache import Predictors

    setting, calls, past = run.setting, run.calls, run.past
    config, program, code = setting.config, setting.program, calls.code
    measured = setting.tuning.engine_only

    def provider_for(spec: StationSpec) -> Provider:
        return code if code is not None and spec.agent.kind in ("python", "shell") else calls.models

    gates = None
    if not measured:
        gates = Gatekeeper(
            tiers=program.tiers,
            simulate_seed=config.seed if config.simulate else None,
            allow_exec=setting.trust.allow_exec,
            desk=desk,
            refs=setting.refs,
        )
    return Performer(
        program,
        Hands(
            provider_for,
            judge_provider=calls.judges,
            tokenizer=calls.tokenizer,
            gates=gates,
            predictors=Predictors(run.db) if run.db is not None and not measured else None,
            tools=calls.tools,
        ),
        inputs=config.inputs,
        options=EngineOptions(
            dispatch=config.dispatch,
            budget_usd=run.budget_usd,
            coherence=setting.tuning.coherence,
            listening=setting.tuning.listening,
            digests=run.journal is not None,
            run_id=run.run_id,
        ),
        resume=ResumeState(past.recalled or {}, past.versions, past.spent_usd, past.tools),
        observers=observers,
    )


@contextmanager
def prepare(
    source: Source | None,
    config: RunConfig | None = None,
    *,
    resume: Resume | None = None,
    trust: Trust | None = None,
    journal: bool = True,
    home: Path | None = None,
    tuning: Tuning | None = None,
    say: Callable[[str], None] = _silent,
    quiet: bool = False,
) -> Iterator[Run]:
    """A run of ``source`` with ``config`` (or, with ``resume``, the next segment of a journaled
    run), claimed and journaled under ``home`` (default ``$HCT_HOME``) unless ``journal`` is
    off; ``say`` tells a person what takes time (the local server starting, a bus without
    workers), ``quiet`` keeps the bus's lines back. The run's resources (its lock, the local
    server) are released on exit."""
    from hct_cli.store.lock import claim
    from hct_cli.store.runs import find_run

    trust = trust or Trust()
    tuning = tuning or Tuning()
    config = config or RunConfig()
    if (source is None) == (resume is None):
        raise UsageError("give a score or a run to resume, not both", hint="e.g. perform('scores/x.yaml').")
    if resume is not None and not journal:
        raise UsageError("a resume continues a journaled run", hint="Resume with the journal on.")
    refs: SchemaRefs | None = None
    program: Program | None = None
    score: Score | None = None
    if source is not None:
        if isinstance(source, Program):
            program, score = source, source.score
        else:
            score = source if isinstance(source, Score) else load_score(source)
        if not tuning.engine_only:
            refuse_exec(score, trust.allow_exec)  # before anything is written
            refuse_untrusted_tools(score, trust.allow_exec, home, distributed=config.bus is not None)
            refs = schema_refs(score, trust.allow_path)
    db = None
    if journal:
        from hct_cli.store.home import connect

        db = connect(durable=resume.durable or "normal" if resume is not None else config.durable, home=home)
    run_id = uuid.uuid4().hex[:12]
    if resume is not None:
        assert db is not None
        run_id = _resumed_row(db, resume).run_id
    with ExitStack() as stack:
        if db is not None:
            stack.callback(db.close)
            # One performer a run: held from before the journal is read (a resume recalls what it
            # holds) until the segment's end is journaled.
            stack.enter_context(claim(db, run_id))
        past = Past()
        if resume is not None:
            assert db is not None
            row = find_run(db, run_id)  # again, now that it is ours: a segment may have ended meanwhile
            score, config, past = _resumed(db, row, resume, trust)
        assert score is not None
        if config.local is not None:
            score = _route_to_local(score, everything=config.local == "all")
            program = None
        program = program or compile_score(score)
        if not tuning.engine_only:
            refuse_exec(score, trust.allow_exec)
            refuse_untrusted_tools(score, trust.allow_exec, home, distributed=config.bus is not None)
            refs = refs or schema_refs(score, trust.allow_path)  # a resume: the files beside its path, read again
        setting = Setting(run_id, score, program, config, trust, tuning, refs)
        session = _session(program, config, say=_silent if quiet else say)
        calls = _calls(stack, setting, session, db, say, home)
        journaled = _journal(db, setting, past.row)
        yield Run(setting, calls, past, db, journaled, session)


def _resumed_row(db: sqlite3.Connection, resume: Resume) -> RunRow:
    from hct_cli.run.resume import RunCompleted, latest_resumable
    from hct_cli.store.runs import find_run

    row = find_run(db, resume.run_id) if resume.run_id is not None else latest_resumable(db)
    if row.status == "completed":
        raise RunCompleted(row.run_id)
    return row


def _resumed(db: sqlite3.Connection, row: RunRow, resume: Resume, trust: Trust) -> tuple[Score, RunConfig, Past]:
    """The score, configuration and journaled past of the run ``row`` continues."""
    from hct_cli.run.resume import RunCompleted, unsealed
    from hct_cli.store.home import set_durability
    from hct_cli.store.runs import recall, spend, squashed_versions, tool_journal

    if row.status == "completed":
        raise RunCompleted(row.run_id)
    config = row.config
    if resume.durable is None and config.durable != "normal":
        set_durability(db, config.durable)  # as journaled, unless --durable says otherwise
    base = Path(row.score_path) if row.score_path else None
    score = load_score_text(row.score_text, row.score_path or row.score, base)
    config = unsealed(config, score, row.run_id, resume.given, allow_path=trust.allow_path)
    tools = tool_journal(db, row.run_id)
    if resume.resend_writes:  # a person has checked: the calls in doubt did not happen
        tools = replace(tools, sent={})
    past = Past(row, recall(db, row.run_id), spend(db, row.run_id), squashed_versions(db, row.run_id), tools)
    if resume.bus is not None:
        config = replace(config, bus=resume.bus)
    elif config.bus is not None:
        from hct_cli.distributed.session import journaled_bus_url

        config = replace(config, bus=journaled_bus_url(config.bus, row.run_id))
    return score, config, past


def _route_to_local(score: Score, *, everything: bool) -> Score:
    """The score with its local tier (or every tier) served by the local model."""
    from hct_cli.providers.local import LOCAL_MODEL, LocalServer

    tiers = {
        name: replace(spec, model=LOCAL_MODEL, concurrency=LocalServer.slots, api_base=None)
        if everything or name == "local"
        else spec
        for name, spec in tiers_of(score).items()
    }
    return replace(score, routing=replace(score.routing, tiers=MappingProxyType(tiers)))


def model_provider_name(config: RunConfig) -> str:
    """The registry's name for the provider of a run's model calls."""
    if config.simulate:
        return "simulated"
    return "local" if config.local is not None else "litellm"


def _model_options(name: str, program: Program, config: RunConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """The keywords the provider ``name`` is built with for this run."""
    if name == "simulated":
        return {"seed": config.seed, "time_scale": config.time_scale}
    from hct_cli.providers.litellm_provider import Endpoint

    # A tier may name its own OpenAI-compatible server (routing.tiers.NAME.api_base).
    endpoints = {tier.model: Endpoint(tier.api_base, api_key=None) for tier in program.tiers.values() if tier.api_base}
    return {"endpoints": endpoints, "say": say} if name == "local" else {"endpoints": endpoints}


def _calls(
    stack: ExitStack,
    setting: Setting,
    session: Session | None,
    db: sqlite3.Connection | None,
    say: Callable[[str], None],
    home: Path | None = None,
) -> Calls:
    """The run's providers, each picked by name from the registry."""
    config = setting.config
    name = model_provider_name(config)
    models = make_provider(name, **_model_options(name, setting.program, config, say))
    if isinstance(models, AbstractContextManager):  # a server to start now and stop with the run
        stack.enter_context(models)
    if session is None:  # in distributed mode the workers' own keys make the calls
        check_credentials(setting.program, models)
    tokenizer = getattr(models, "tokenizer", None)
    judges = models  # gates are decided in the conductor, in any mode
    if session is not None:
        models = session.provider
    if config.cache and db is not None:
        from hct_cli.store.cache import ResultCache

        seed = config.seed if config.simulate else None
        models = make_provider("cached", models, ResultCache(db), simulated_seed=seed)
    code = None if setting.tuning.engine_only else make_provider("exec")
    return Calls(models, judges, code, tokenizer, _tool_box(setting, home, session))


def _tool_box(setting: Setting, home: Path | None, session: Session | None) -> ToolBox | None:
    """The score's tool servers, each started on first use and stopped when the run is played
    (in distributed mode, those ``on: worker`` by the workers)."""
    score = setting.score
    if not score.tools:
        return None
    from hct_cli.tools.toolbox import McpToolBox

    return McpToolBox(
        score.tools,
        inputs=setting.config.inputs,
        allow_exec=setting.trust.allow_exec,
        trusted=trusted_tools(home),
        remote=session.tools if session is not None else None,
    )


def _journal(db: sqlite3.Connection | None, setting: Setting, row: RunRow | None) -> Journal | None:
    if db is None:
        return None
    from hct_cli.store.journal import Journal

    if row is not None:
        return Journal.resume(db, row)
    score = setting.score
    text = score.document.text if score.document is not None else ""
    path = str(score.path.resolve()) if score.path is not None else None
    return Journal.start(db, setting.run_id, score.name, path, text, setting.config)


def _session(program: Program, config: RunConfig, *, say: Callable[[str], None]) -> Session | None:
    """Distributed mode's session when the run has a bus; Redis must answer before anything runs."""
    if config.bus is None:
        return None
    from hct_cli.distributed.session import Session
    from hct_cli.distributed.work import Mode

    if config.simulate:
        mode = Mode("simulated", config.seed, config.time_scale)
    else:
        endpoints = {tier.model: tier.api_base for tier in program.tiers.values() if tier.api_base}
        mode = Mode("models", endpoints=endpoints, local=config.local is not None)
    session = Session(config.bus, mode, say=say)
    session.preflight()
    return session
