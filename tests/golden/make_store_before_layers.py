"""How ``store_before_layers.sqlite3`` was made: a response store written by the release before the layers
(``d1cc6f7~1``), which ``tests/test_store_keys.py`` re-runs with today's code, expecting every answer from
the file and no request. Run from the repository root, with that release first on the path:

    mkdir -p /tmp/before_layers && git archive d1cc6f7~1 | tar -x -C /tmp/before_layers
    PYTHONPATH=/tmp/before_layers .venv/bin/python tests/golden/make_store_before_layers.py

It maps :data:`ROWS` through :func:`golden_llm`, a dedicated Inference Endpoint named ``golden-endpoint``:
its store keys hold the endpoint's name, not the URL it is looked up at (on the Hub; here :func:`lookup`,
the fault server on whatever port it got), so the file serves any run of the test. The fault server answers
with :data:`REPLIES`, which its echo never writes: an answer in the test's output came from the file.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

OUTPUT = Path(__file__).with_name("store_before_layers.sqlite3")
ENDPOINT = "golden-endpoint"
NAMESPACE = "mapgen-tests"
ROWS = ["Name a fruit.", "Name a colour.", "Name a planet."]
REPLIES = {
    "Name a fruit.": "A pear, stored before the layers.",
    "Name a colour.": "Teal, stored before the layers.",
    "Name a planet.": "Mars, stored before the layers.",
}


def golden_llm(token: str) -> Any:
    """The config that wrote the file (the token is no part of its store keys)."""
    import mapgen

    return mapgen.InferenceEndpointsLLM(
        ENDPOINT, namespace=NAMESPACE, token=token, temperature=0.0, max_new_tokens=32, seed=0
    )


def lookup(root: str) -> Any:
    """A stand-in for ``huggingface_hub.get_inference_endpoint`` that finds the endpoint at ``root``."""

    def get_inference_endpoint(name: str, *, namespace: str | None = None, token: str | None = None) -> Any:
        assert (name, namespace) == (ENDPOINT, NAMESPACE)
        return SimpleNamespace(url=root, status="running")

    return get_inference_endpoint


def main() -> None:
    import datasets
    import huggingface_hub

    import mapgen
    from tests.servers.fixtures import FaultServerHandle, free_port, running

    print(f"writing {OUTPUT} with mapgen from {mapgen.__file__}")
    port, key = free_port(), "sk-golden-0123456789"
    command = [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port), "--api-key", key]
    with (
        tempfile.TemporaryDirectory() as folder,
        running(command, f"http://127.0.0.1:{port}/stats", timeout=30, log=Path(folder) / "server.log"),
    ):
        server = FaultServerHandle(port, key)
        server.configure(api_key=key, replies=[{"contains": q, "reply": a} for q, a in REPLIES.items()])
        huggingface_hub.get_inference_endpoint = lookup(server.root)
        written = Path(folder) / "store.sqlite3"
        fn = mapgen.generate(golden_llm(key), store=f"sqlite:///{written}")
        out = datasets.Dataset.from_dict({"input": ROWS}).map(fn, batched=True)
        assert [g[0] for g in out["generations"]] == [REPLIES[q] for q in ROWS], out["generations"]
        assert server.stats()["total"] == len(ROWS)
        # A compact copy without its write-ahead log: one small file to commit.
        OUTPUT.unlink(missing_ok=True)
        with sqlite3.connect(written) as source, sqlite3.connect(OUTPUT) as copy:
            source.backup(copy)
        copy = sqlite3.connect(OUTPUT)
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("VACUUM")
        print(copy.execute("SELECT key FROM responses ORDER BY key").fetchall())
        copy.close()


if __name__ == "__main__":
    main()
