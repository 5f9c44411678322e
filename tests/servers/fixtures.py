"""Pytest fixtures that start real servers on 127.0.0.1 and stop them after the session.

- ``fault_server``: :mod:`tests.servers.fault_server`, an OpenAI-compatible server with configurable
  latency and injected errors (``fault_server.configure(latency=0.05, error_rate=0.1)``) and counters
  (``fault_server.stats()``); scripted answers (``fault_server.configure(replies=[{"contains": "2 + 2",
  "reply": "4"}], default_reply="...")``) and the bodies it was sent (``fault_server.requests()``).
- ``anthropic_server``: :mod:`tests.servers.anthropic_server`, Anthropic's Messages and Message Batches APIs
  (``anthropic.Anthropic(base_url=anthropic_server.base_url, api_key=anthropic_server.api_key)``), with the
  same kind of settings (``anthropic_server.configure(min_cache_tokens=8, batch_delay=None)``), counters,
  received bodies, and ``anthropic_server.control_batch(batch_id, processed=2)`` to move a batch along.
- ``llamacpp_server``: ``python -m llama_cpp.server`` serving the embedded GGUF model, OpenAI-compatible;
  skipped when the server's dependencies (fastapi, uvicorn, sse-starlette, starlette-context,
  pydantic-settings) are missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def skip_unless_ci(reason: str) -> None:
    """Skip a test whose server cannot start here; in CI (``CI`` set), where `make test` installed
    everything, that is a failure instead: a missing install step must not pass as a green run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see the Makefile)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def started(command: list[str], log: Path, cwd: Path = ROOT) -> Iterator[subprocess.Popen]:
    """Run ``command`` (output to ``log``) for the duration of the block, then stop it."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, what: str, timeout: float) -> None:
    """Return once ``url`` answers; raise with the end of ``log`` if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what} not ready after {timeout}s:\n{log.read_text()[-3000:]}"
                ) from error
            time.sleep(0.1)


@contextlib.contextmanager
def running(command: list[str], ready_url: str, *, timeout: float, log: Path) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until ``ready_url`` answers, and stop it on exit."""
    with started(command, log) as process:
        wait_until_ready(ready_url, process, log, command[2], timeout)
        yield process


class FaultServerHandle:
    """A running fault server: its ``base_url`` (ending in ``/v1``), and its settings and counters."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.api_key = api_key
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v1"

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Clear the counters and apply ``settings`` (see ``fault_server.DEFAULTS``); others reset."""
        return http_json(f"{self.root}/reset", settings)

    def stats(self, times: bool = False) -> dict[str, Any]:
        return http_json(f"{self.root}/stats" + ("?times=1" if times else ""))

    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests received since the last ``configure``, in order."""
        return http_json(f"{self.root}/requests")

    def control_batch(self, batch_id: str, **order: Any) -> dict[str, Any]:
        """Move a batch along: ``processed=k`` (the first ``k`` requests), ``expire=True``, or nothing."""
        return http_json(f"{self.root}/control/batches/{batch_id}", order)


@pytest.fixture(scope="session")
def fault_server_process(tmp_path_factory) -> Iterator[FaultServerHandle]:
    port = free_port()
    api_key = "sk-fault-server-key-0123456789"
    command = [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port), "--api-key", api_key]
    log = tmp_path_factory.mktemp("fault_server") / "server.log"
    with running(command, f"http://127.0.0.1:{port}/stats", timeout=30, log=log):
        yield FaultServerHandle(port, api_key)


@pytest.fixture
def fault_server(fault_server_process: FaultServerHandle) -> FaultServerHandle:
    """The session's fault server, reset to no latency and no errors for each test."""
    fault_server_process.configure(api_key=fault_server_process.api_key)
    return fault_server_process


class AnthropicServerHandle(FaultServerHandle):
    """A running Anthropic test server: its ``base_url`` (the SDK's, without ``/v1``), settings, counters."""

    def __init__(self, port: int, api_key: str) -> None:
        super().__init__(port, api_key)
        self.base_url = self.root

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Clear counters, cache and batches, and apply ``settings`` (see ``anthropic_server.DEFAULTS``)."""
        return http_json(f"{self.root}/reset", settings)


@pytest.fixture(scope="session")
def anthropic_server_process(tmp_path_factory) -> Iterator[AnthropicServerHandle]:
    port = free_port()
    api_key = "sk-ant-test-server-key-0123456789"
    command = [
        sys.executable,
        "-m",
        "tests.servers.anthropic_server",
        "--port",
        str(port),
        "--api-key",
        api_key,
    ]
    log = tmp_path_factory.mktemp("anthropic_server") / "server.log"
    with running(command, f"http://127.0.0.1:{port}/stats", timeout=30, log=log):
        yield AnthropicServerHandle(port, api_key)


@pytest.fixture
def anthropic_server(anthropic_server_process: AnthropicServerHandle) -> AnthropicServerHandle:
    """The session's Anthropic test server, reset to its defaults (with its key) for each test."""
    anthropic_server_process.configure(api_key=anthropic_server_process.api_key)
    return anthropic_server_process


LLAMACPP_SERVER_DEPS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


@pytest.fixture(scope="session")
def llamacpp_server(tmp_path_factory) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of llama.cpp's OpenAI-compatible server."""
    missing = [name for name in LLAMACPP_SERVER_DEPS if importlib.util.find_spec(name) is None]
    if missing or importlib.util.find_spec("llama_cpp") is None:
        skip_unless_ci(f"llama_cpp.server needs {missing or ['llama-cpp-python']}")
    from mapgen.llms.llamacpp import embedded_model_path

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        os.fspath(embedded_model_path()),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
    ]
    log = tmp_path_factory.mktemp("llamacpp_server") / "server.log"
    with running(command, f"http://127.0.0.1:{port}/v1/models", timeout=120, log=log):
        yield f"http://127.0.0.1:{port}/v1"


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a suite started in the background
    (``cmd &``, ``nohup``) ignores SIGINT, children inherit that, and Python then installs no
    KeyboardInterrupt handler; the child must get the default disposition, as a terminal gives it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
