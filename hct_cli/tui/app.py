"""The conductor: a Textual app that shows the ensemble play and lets a person act on it.

It observes: the engine calls the :class:`Ensemble` with every event, and a frame timer redraws
the panels at most ``FPS`` times a second from it. Keys act on the :class:`Stage` (a live run or
a replay): space pauses and resumes issuing, ``a`` / ``r`` decide a human fermata, ``c`` calls
a caesura, ``/`` filters the signals log, ``q`` quits (asking first while work is running).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import Question, Stage
from hct_cli.tui.views import (
    AgentsView,
    CoherenceView,
    CostView,
    Panel,
    SignalsView,
    TimelineView,
    WorkersView,
    money,
)

if TYPE_CHECKING:
    from hct_cli.distributed.roster import WorkerStatus

__all__ = ["Conductor", "Confirm"]

#: Frames a second at most; events between two frames are drawn together.
FPS = 12


class Confirm(ModalScreen[bool]):
    """A yes / no question over the conductor."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Static { width: 64; height: auto; border: thick $warning; padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "no", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{self.question}\n\n[b]y[/b] yes    [b]n[/b] no", id="question")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Conductor(App[None]):
    """The ensemble on one screen: agents, coherence, signals, cost and a timeline."""

    TITLE = "hct conductor"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 1; padding: 0 1; background: $primary; color: $text; }
    #status.finished { background: $success; }
    #agents { height: 17; }
    #lower { height: 1fr; }
    #timeline { width: 42%; }
    #side { width: 1fr; }
    #gauges { height: 10; }
    #cost { width: 25; height: 100%; }
    #coherence { width: 1fr; height: 100%; }
    #signals { height: 1fr; }
    #filter { display: none; height: 3; }
    #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "pause", "pause/resume"),
        Binding("a", "decide('approve')", "approve"),
        Binding("r", "decide('reject')", "reject"),
        Binding("c", "caesura", "caesura"),
        Binding("slash", "filter", "filter log"),
        Binding("q", "quit_run", "quit"),
        Binding("ctrl+c", "interrupt", "interrupt", show=False, priority=True),
        Binding("ctrl+q", "quit_run", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        ensemble: Ensemble,
        stage: Stage,
        *,
        exit_on_finish: bool = False,
        roster: Callable[[], Sequence[WorkerStatus]] | None = None,
    ) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.stage = stage
        self.roster = roster  # distributed mode: the workers as last seen on the bus
        self.exit_on_finish = exit_on_finish
        self.error: BaseException | None = None  # a fault the run ended with, raised again after the app
        self.frames = 0
        self._drawn = -1
        self._play: asyncio.Task[None] | None = None
        self._panels: list[Panel] = []
        self._asked: set[tuple[str, int]] = set()  # questions already announced
        self._decided: set[tuple[str, int]] = set()  # and those this conductor answered
        self._cost: CostView | None = None
        self._roster_view: WorkersView | None = None
        self._status: Static | None = None
        self._agent_lines = 0  # lines of the agents panel when it was last fitted
        self._agents: AgentsView | None = None

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ensemble = self.ensemble
        yield Static(id="status")
        yield AgentsView(ensemble)
        with Horizontal(id="lower"):
            yield TimelineView(ensemble)
            with Vertical(id="side"):
                with Horizontal(id="gauges"):
                    yield CostView(ensemble)
                    yield CoherenceView(ensemble)
                    if self.roster is not None:
                        yield WorkersView(self.roster)
                yield SignalsView(ensemble)
                yield Input(placeholder="filter the signals (Enter keeps it, Esc clears it)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "ansi-dark"  # the terminal's own colours
        # Found once: a frame draws them without querying the DOM.
        self._panels = list(self.query(Panel))
        self._cost = self.query_one(CostView)
        self._agents = self.query_one(AgentsView)
        self._roster_view = next(iter(self.query(WorkersView)), None)
        self._status = self.query_one("#status", Static)
        self._fit_agents()
        self._frame()
        self.set_interval(1 / FPS, self._frame)
        self._play = asyncio.create_task(self._perform())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.action_interrupt)

    def on_resize(self) -> None:
        self._fit_agents()

    def _fit_agents(self, view: AgentsView | None = None) -> None:
        """The agents panel takes what its rows need, up to half the screen."""
        view = view or self.query_one(AgentsView)
        self._agent_lines = view.count()
        rows = self._agent_lines + 3  # a header and two borders; tool rows under their agents count too
        view.styles.height = max(6, min(rows, (self.size.height - 2) // 2))

    async def on_unmount(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        await self._stop_playing()

    # -- the run --------------------------------------------------------------------------

    async def _perform(self) -> None:
        try:
            await self.stage.play()
        except asyncio.CancelledError:
            return
        except Exception as exc:  # a fault of the run: shown after the app closes
            self.error = exc
            self.exit()
            return
        self._frame()
        if self.exit_on_finish:
            self.exit()

    async def _stop_playing(self) -> None:
        task = self._play
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def playing(self) -> bool:
        return self._play is not None and not self._play.done()

    # -- drawing --------------------------------------------------------------------------

    def _frame(self) -> None:
        """Redraw from the ensemble: every panel once, whatever number of events came since."""
        ensemble = self.ensemble
        if self._cost is None or self._status is None:
            return  # not mounted yet
        if self._roster_view is not None:
            self._roster_view.sync()  # the roster moves on its own (heartbeats), not with the ensemble
        if ensemble.revision == self._drawn and ensemble.finished:
            return  # nothing moved, not even the clock
        self._drawn = ensemble.revision
        self.frames += 1
        for panel in self._panels:
            panel.sync()
        agents = self._agents
        if ensemble.tool_calls and agents is not None and agents.count() != self._agent_lines:
            self._fit_agents(agents)  # tool rows came or went
        self._cost.sync()
        self._status.update(self.status_line())
        self._status.set_class(ensemble.finished, "finished")
        self._announce()

    def _questions(self) -> list[Question]:
        """What a person is asked now and has not answered here yet, oldest first."""
        return [q for q in self.stage.waiting() if (q.agent, q.version) not in self._decided]

    def _announce(self) -> None:
        """Say once, with an excerpt of the result, that a person is needed."""
        if not self.stage.live:
            return
        for question in self._questions():
            if (question.agent, question.version) in self._asked:
                continue
            self._asked.add((question.agent, question.version))
            text = str(question.output)
            excerpt = text if len(text) <= 300 else text[:300] + " …"
            self.notify(
                f"{excerpt}\n\na approves, r rejects",
                title=f"{question.agent}@{question.version} waits for you",
                timeout=60,
            )

    def status_line(self) -> str:
        ensemble = self.ensemble
        parts = [f"hct · {ensemble.score_name}"]
        if ensemble.run_id:
            parts.append(f"run {ensemble.run_id}")
        if not self.stage.live:
            parts.append("replay")
        parts.append(f"{ensemble.now():.1f}s")
        parts.append(f"{ensemble.done}/{len(ensemble.agents)} done")
        if ensemble.finished:
            parts.append(f"{ensemble.status} · {money(ensemble.spend_usd)}")
            parts.append("finished — q to quit")
        else:
            parts.append(f"{ensemble.running} running")
            asked = self._questions()
            if asked:
                parts.append(f"{asked[0].agent}@{asked[0].version} waits for you (a / r)")
                if len(asked) > 1:
                    parts.append(f"{len(asked) - 1} more")
            if self.stage.paused:
                parts.append("PAUSED — space resumes")
        return " · ".join(parts)

    # -- keys -----------------------------------------------------------------------------

    def action_pause(self) -> None:
        if self.ensemble.finished:
            self.notify("the run has ended", severity="warning")
            return
        if self.stage.paused:
            self.stage.resume()
            self.notify("issuing again")
        else:
            self.stage.pause()
            if self.stage.paused:
                self.notify("paused: calls in flight finish, nothing new is issued")
            else:
                self.notify("issuing has already stopped (the budget or a caesura)", severity="warning")
        self._frame()

    def action_decide(self, verdict: str) -> None:
        asked = self._questions()
        if not asked:
            self.notify("no result is waiting for a person", severity="warning")
            return
        question = asked[0]
        problem = self.stage.decide(question.agent, question.version, verdict)
        if problem is not None:
            self.notify(problem, severity="warning")
            return
        self._decided.add((question.agent, question.version))  # the next key goes to the next one
        more = f"; {len(asked) - 1} more waiting" if len(asked) > 1 else ""
        self.notify(f"{question.agent}@{question.version}: {'approved' if verdict == 'approve' else 'rejected'}{more}")
        self._frame()

    def action_caesura(self) -> None:
        if not self.stage.live or self.ensemble.finished:
            self.notify(self.stage.caesura() or "the run has already ended", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                problem = self.stage.caesura()
                if problem is not None:
                    self.notify(problem, severity="warning")

        self.push_screen(
            Confirm("Call a caesura? Work in flight is squashed and shared state rolls back to the last checkpoint."),
            answer,
        )

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, message: Input.Changed) -> None:
        self.query_one(SignalsView).filter(message.value)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.input.remove_class("shown")
        self.query_one(SignalsView).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.query_one(SignalsView).focus()

    def action_quit_run(self) -> None:
        if not (self.stage.live and self.playing):
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.action_interrupt()

        self.push_screen(
            Confirm(
                "Work is running. Stop the run? It is journaled: "
                f"`hct perform --resume {self.ensemble.run_id}` continues it."
            ),
            answer,
        )

    def action_interrupt(self) -> None:
        """Stop now (Ctrl-C, SIGTERM, or a confirmed q): the run ends interrupted."""

        async def stop() -> None:
            await self._stop_playing()
            self.exit()

        self.run_worker(stop(), exclusive=True, group="stop")
