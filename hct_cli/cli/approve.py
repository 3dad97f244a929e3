"""``hct approve`` / ``hct reject``: decide a held result of a run from another shell."""

from __future__ import annotations

import sys

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps

__all__ = ["decide_command"]


def decide_command(run_id: str, agent: str, verdict: str, *, note: str, as_json: bool) -> int:
    from hct_cli.providers.approvals import record_verdict
    from hct_cli.score.load import load_text
    from hct_cli.store.home import connect
    from hct_cli.store.runs import find_run

    db = connect()
    run = find_run(db, run_id)
    agents = load_text(run.score_text, run.score).data.get("agents", {})
    if agent not in agents:
        raise UsageError(
            f"run {run.run_id} ({run.score}) has no agent {agent!r}",
            hint=f"Agents: {', '.join(list(agents)[:10])}.",
        )
    record_verdict(db, run.run_id, agent, verdict, note)
    if run.status not in ("running",):
        sys.stderr.write(f"note: run {run.run_id} is {run.status}; the decision applies if it resumes\n")
    if as_json:
        sys.stdout.write(dumps({"run_id": run.run_id, "agent": agent, "verdict": verdict}) + "\n")
    else:
        sys.stderr.write(f"{verdict}d {agent} of run {run.run_id}\n")
    return 0
