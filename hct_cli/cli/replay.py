"""``hct replay RUN``: play a journaled run again in the conductor, at its own pace or faster."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps

__all__ = ["replay_command"]


def replay_command(run: str, *, speed: float, exit_on_finish: bool, as_json: bool, tui: bool = True) -> int:
    if not math.isfinite(speed) or speed <= 0:
        raise UsageError("--speed must be above zero", hint="1 plays the run at its own pace, 10 ten times faster.")
    from hct_cli.store.home import connect
    from hct_cli.store.runs import events_of, find_run
    from hct_cli.tui.stage import journal_events

    db = connect()
    row = find_run(db, run)
    events = journal_events(events_of(db, row.run_id))
    if as_json:
        rows = [
            {"at": round(e.time_s, 6), "kind": e.kind, "station": e.station, "version": e.version, "data": e.data}
            for e in events
        ]
        sys.stdout.write(dumps({"run_id": row.run_id, "score": row.score, "events": rows}, indent=2) + "\n")
        return 0
    from hct_cli.tui import on_a_terminal

    if not (tui and on_a_terminal()):
        from hct_cli.cli.plain import PlainLog

        log = PlainLog(0, stream=sys.stdout, live=False)
        for event in events:
            log(event)
        return 0
    from hct_cli.program.compile import compile_score
    from hct_cli.program.lint import load_score_text
    from hct_cli.tui.app import Conductor
    from hct_cli.tui.ensemble import Ensemble
    from hct_cli.tui.stage import ReplayStage

    # Files the score names (an input's default_file) resolve beside the score, as on a resume.
    base = Path(row.score_path) if row.score_path else None
    score = load_score_text(row.score_text, row.score_path or row.score, base)
    ensemble = Ensemble(
        compile_score(score),
        budget_usd=row.config.budget(score),
        run_id=row.run_id,
    )
    app = Conductor(ensemble, ReplayStage(events, ensemble, speed, row.status), exit_on_finish=exit_on_finish)
    app.run()
    if app.error is not None:
        raise app.error
    if row.result is not None:
        from hct_cli.cli.console import table_console
        from hct_cli.cli.plain import SUMMARY_ROWS, summary_table

        table_console().print(summary_table(row.result, SUMMARY_ROWS))
    return 0
