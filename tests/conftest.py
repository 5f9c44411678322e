import pytest

import mapgen
from mapgen.runtime.progress import request_progress

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
collect_ignore = ["servers"]
