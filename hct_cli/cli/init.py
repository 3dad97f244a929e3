"""``hct init NAME``: write a commented starter score."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps

__all__ = ["STARTER", "init_score"]

STARTER = """\
# yaml-language-server: $schema={schema}
# A starter score. Check it with `hct lint {file}`, run it with `hct perform {file} --simulate`.
hct: 1
name: {name}
description: Two researchers work in parallel; an editor merges what they found.

# L0: put in front of every prompt; no agent can change it.
reference_frame:
  objective: Answer the question accurately and briefly.

# Inputs: override with `--input question="..."` or `--input question=@file.txt`.
inputs:
  question:
    type: text
    default: Why do orchestras need a conductor?

# Shared state, kept coherent between agents (MESI).
state:
  notes: {{initial: []}}
  answer: {{initial: ""}}

# Tools: MCP servers agents may call (uncomment this and the historian's tools: to try it).
# `hct tools {file}` starts them and lists what they offer; a server hct starts (command:)
# runs only with --allow-exec, or once trusted with `hct tools --trust {file}`.
# tools:
#   git:
#     command: [python, -m, mcp_server_git, --repository, "."]
#     effects: read     # read | write; unsaid, a tool counts as write (never run speculatively)
#     concurrency: 2    # calls in flight to this server at once

agents:
  historian:
    prompt: "Give the historical view on: {{{{ inputs.question }}}}"
    tempo: allegro      # largo, andante, moderato, allegro, presto
    dynamics: p         # pp, p, mf, f, ff: with tempo, picks the model tier
    appends: [notes]    # appends never conflict with each other
    simulate: {{latency_ms: [300, 600], output_tokens: 150}}
    # tools: [git.git_log, git.git_show]   # only these tools are reachable
    # max_steps: 4                          # model-tool rounds (required with a write tool)
  engineer:
    prompt: "Give the engineering view on: {{{{ inputs.question }}}}"
    tempo: allegro
    dynamics: mf
    appends: [notes]
    simulate: {{latency_ms: [400, 900], output_tokens: 200}}
  editor:
    prompt: |
      Merge these notes into one short answer:
      {{{{ state.notes }}}}
      Historian said: {{{{ cues.historian }}}}
      Engineer said: {{{{ cues.engineer }}}}
    cues: [historian, engineer]   # fires the moment both have finished
    reads: [notes]
    writes: [answer]
    dynamics: f
    fermata:                      # a gate on the result before it is broadcast
      check: {{min_length: 20}}
      on_fail: retry
      retries: 2
    simulate: {{latency_ms: [500, 800], output_tokens: 250}}
"""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def init_score(name: str, directory: Path, *, force: bool, as_json: bool) -> int:
    if not _NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid score name",
            hint="Use letters, digits, '.', '_' or '-' (64 at most), starting with a letter or digit.",
        )
    target = directory / f"{name}.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="Pick another name, or pass --force to overwrite it.")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", hint="Create it first, or pass another --dir.")
    from hct_cli.score.validate import schema_reference

    schema_ref = schema_reference(directory)
    target.write_text(STARTER.format(name=name, file=target, schema=schema_ref), encoding="utf-8")
    if as_json:
        sys.stdout.write(dumps({"path": str(target), "name": name}) + "\n")
    else:
        sys.stdout.write(f"wrote {target}\nnext: hct lint {target} && hct perform {target} --simulate\n")
    return 0
