"""Every Python example in README.md and docs/*.md runs, in order, one namespace per file.

A block that cannot run here (it needs a provider's key and the network) is preceded by
``<!-- skip-test: reason -->``. Examples that point at a local server (``http://localhost:8000/v1``) are
run against the fault-injecting test server instead.
"""

from pathlib import Path

import pytest

from tests.docs_examples import python_blocks, run_examples

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.llamacpp
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_run(path, fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert python_blocks(path), f"{path.name} has no python example"
    run_examples(path, replace={"http://localhost:8000/v1": fault_server.base_url})


def test_skipped_blocks_say_why():
    for path in DOCS:
        for _, reason in python_blocks(path):
            assert reason is None or len(reason.strip()) > 10, f"{path.name}: skip-test needs a reason"
