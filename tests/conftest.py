import os

import pytest

import mapgen
from mapgen.runtime.progress import request_progress

# mapgen honours HTTP(S)_PROXY as the SDKs do: a proxy in a developer's shell must not divert the requests
# to the test servers on 127.0.0.1 (the proxy tests clear NO_PROXY themselves).
if any(
    os.environ.get(name)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
):
    _bypass = [os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "", "127.0.0.1,localhost,::1"]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(part for part in _bypass if part)

# The servers the tests start: fault-injecting, llama.cpp's and vLLM's (OpenAI-compatible), argilla-server,
# PostgreSQL.
pytest_plugins = [
    "tests.servers.fixtures",
    "tests.servers.vllm_fixtures",
    "tests.servers.argilla_fixtures",
    "tests.servers.postgres",
]


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Each test gets its own datasets cache and mapgen store, fresh counters and request bar."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    monkeypatch.setenv("MAPGEN_CACHE_DIR", str(tmp_path / "mapgen_cache"))
    monkeypatch.delenv("MAPGEN_STORE", raising=False)  # never a store of the user's (store_url sets one)
    mapgen.counters.reset()
    yield
    request_progress.close()


@pytest.fixture(scope="session")
def tiny_llm():
    """The embedded model, greedy and short: fast and deterministic."""
    return mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=12, seed=0)


# tests/servers/ holds the servers the tests start (some import packages of their own virtualenv), not tests.
collect_ignore = ["servers", "real_vllm"]  # real_vllm: scripts run in vLLM's own venv
