"""The conductor in distributed mode: a real run over a private Redis, served by a real worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hct_cli.distributed.queue import RedisWorkQueue
from hct_cli.distributed.roster import WorkerStatus
from hct_cli.distributed.session import Session
from hct_cli.distributed.work import Mode
from hct_cli.distributed.worker import Worker
from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.perform import Performer
from hct_cli.tui.app import Conductor
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import LiveStage
from hct_cli.tui.views import WorkersView
from tests.tui.conftest import SIZE, program_of, screen_text, wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.anyio]


def workers_text(app: Conductor) -> str:
    return app.query_one(WorkersView).text()


async def test_the_workers_panel_shows_who_serves_the_run(repo: Path, redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    program, inputs = program_of(repo / "scores" / "code-review.yaml")
    ensemble = Ensemble(program, run_id="tui-redis")
    session = Session(url, Mode("simulated", 0, 0.3))
    performer = Performer(
        program,
        Hands(lambda spec: session.provider),
        inputs=inputs,
        observers=[ensemble],
        options=EngineOptions(run_id="tui-redis"),
    )
    stage = LiveStage(performer, play=lambda: session.play(performer, list(program.tiers)))
    app = Conductor(ensemble, stage, roster=session.roster)
    queue = await RedisWorkQueue.open(url, "wT", claim_after_s=2.0)
    stop = asyncio.Event()
    worker = Worker(queue, concurrency=4, heartbeat_s=0.2)
    serving = asyncio.create_task(worker.run(stop))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "wT" in workers_text(app), "the worker appears on the panel")
            assert "● wT" in workers_text(app)
            # The result is set once the session has closed its bus, a moment after run_end.
            await wait_for(pilot, lambda: stage.result is not None, "the run ends")
            assert stage.result is not None and stage.result.status == "completed"
            # The panel shows the worker's own count as of its last heartbeat before the run ended.
            await pilot.pause(0.2)
            done = int(workers_text(app).split(" run ")[1].split(" done")[0])
            assert 0 < done <= 14
            assert "workers" in screen_text(app)
            assert {record.worker for record in stage.result.agents.values()} == {"wT"}
    finally:
        stop.set()
        await serving
        await queue.close()


async def test_a_silent_worker_is_shown_as_such() -> None:
    roster = [WorkerStatus("up", True, in_flight=2, completed=7), WorkerStatus("gone", False, completed=3)]
    view = WorkersView(lambda: roster)
    text = view.text()
    assert text.splitlines()[0] == "1 alive of 2"
    assert "● up" in text and "2 run" in text and "7 done" in text
    assert "✕ gone" in text and "silent" in text
    assert "hct worker --bus" in WorkersView(lambda: []).text()
