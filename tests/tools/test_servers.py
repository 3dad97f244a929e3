"""The test servers themselves work: the counter server answers over HTTP and the repository has its commits."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.tools.servers import counter_state, git


def test_counter_http_server_answers_initialize(counter_http: tuple[str, Path]) -> None:
    url, state = counter_http
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert '"serverInfo"' in text and '"counter"' in text
    assert counter_state(state)["appends"] == 0


def test_git_repo_has_three_commits(temp_git_repo: Path) -> None:
    subjects = git(temp_git_repo, "log", "--format=%s").splitlines()
    assert subjects == ["Add the subtracter", "Add the adder", "Add a readme"]
    assert git(temp_git_repo, "status", "--porcelain") == ""
