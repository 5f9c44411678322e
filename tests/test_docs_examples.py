"""Every Python example in README.md and docs/*.md runs, in order, one namespace per file.

A block that cannot run here (it needs a provider's key and the network) is preceded by
``<!-- skip-test: reason -->``. Examples that point at a local server (``http://localhost:8000/v1``) are
run against the fault-injecting test server instead.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- skip-test: (?P<reason>.+?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def python_blocks(path: Path) -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(path.read_text())]


@pytest.mark.llamacpp
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_run(path, fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    blocks = python_blocks(path)
    assert blocks, f"{path.name} has no python example"
    namespace: dict = {"__name__": "__docs__"}
    for code, skip_reason in blocks:
        if skip_reason:
            continue
        code = code.replace("http://localhost:8000/v1", fault_server.base_url)
        exec(compile(code, str(path), "exec"), namespace)


def test_skipped_blocks_say_why():
    for path in DOCS:
        for _, reason in python_blocks(path):
            assert reason is None or len(reason.strip()) > 10, f"{path.name}: skip-test needs a reason"
