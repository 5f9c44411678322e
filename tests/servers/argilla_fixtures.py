"""The ``argilla_server`` fixture: a real argilla-server on 127.0.0.1 for the whole test session.

It starts Debian's ``redis-server`` and the server (:mod:`tests.servers.argilla_server`, in its own
virtual environment, SQLite in a temporary folder, in-memory search), and stops both at the end. It
skips, saying what to install, when ``redis-server`` or the server's virtual environment is missing;
``make test`` installs both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import argilla_server as setup
from tests.servers.fixtures import free_port, skip_unless_ci, started, wait_until_ready

STARTUP_TIMEOUT = 90.0


@dataclass(frozen=True)
class ArgillaServer:
    """A running argilla-server: where it is, the owner's API key, and its workspace."""

    api_url: str
    api_key: str
    workspace: str
    log: Path


def _wait_for_redis(port: int, process: subprocess.Popen, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server not ready:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgillaServer]:
    """A fresh argilla-server (owner user, workspace ``argilla``) for the session."""
    if importlib.util.find_spec("argilla") is None:
        skip_unless_ci("the argilla SDK is not installed (pip install 'mapgen[argilla]')")
    redis = shutil.which("redis-server")
    if redis is None:
        skip_unless_ci("redis-server is missing: apt-get install -y redis-server")
    python = setup.server_python()
    if python is None:
        skip_unless_ci(
            f"argilla-server's virtual environment {setup.server_venv()} is missing: "
            "run `python tests/servers/argilla_server.py install`"
        )
    folder = tmp_path_factory.mktemp("argilla")
    redis_port, port = free_port(), free_port()
    api_key = "mapgen-" + secrets.token_hex(8)
    redis_command = [
        redis,
        "--port",
        str(redis_port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    with started([*redis_command, "--dir", str(folder)], folder / "redis.log", folder) as redis_process:
        _wait_for_redis(redis_port, redis_process, folder / "redis.log")
        command = [
            str(python),
            str(Path(setup.__file__)),
            "serve",
            f"--port={port}",
            f"--home={folder / 'home'}",
            f"--redis-url=redis://127.0.0.1:{redis_port}/0",
            f"--api-key={api_key}",
        ]
        log = folder / "server.log"
        with started(command, log, folder) as server:
            url = f"http://127.0.0.1:{port}/api/v1/version"
            wait_until_ready(url, server, log, "argilla-server", STARTUP_TIMEOUT)
            yield ArgillaServer(
                api_url=f"http://127.0.0.1:{port}",
                api_key=api_key,
                workspace=setup.OWNER["workspace"],
                log=log,
            )
