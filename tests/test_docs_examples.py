"""Every Python example in README.md and docs/*.md runs on its own, in a fresh interpreter.

Each block is what a reader copies: it runs alone (its own imports and data), never in a namespace that
earlier blocks filled. A block that cannot run here (it needs a provider's key and the network) is
preceded by ``<!-- skip-test: reason -->``. Examples that point at a local server
(``http://localhost:8000/v1``) are run against the fault-injecting test server instead. The blocks share
only the caches (the response store, datasets' cache), as a reader's runs do.
"""

from pathlib import Path

import pytest

from tests.docs_examples import python_blocks, run_each_alone

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.llamacpp
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_run_alone(path, fault_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert python_blocks(path), f"{path.name} has no python example"
    run_each_alone(path, tmp_path / "reader", replace={"http://localhost:8000/v1": fault_server.base_url})


def test_a_block_runs_without_the_names_of_the_blocks_before_it(tmp_path):
    """The runner itself: a block that uses a name only an earlier block defined fails."""
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nx = 1\n```\n\n```python\nprint(x)\n```\n")
    with pytest.raises(AssertionError, match="NameError: name 'x' is not defined"):
        run_each_alone(doc, tmp_path)


def test_a_block_naming_a_file_is_saved_there_and_tests_run_with_pytest(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```python\n# helpers.py\nTWO = 2\n```\n\n"
        "```python\n# tests/test_helpers.py\nfrom helpers import TWO\n\n\n"
        "def test_two():\n    assert TWO == 3\n```\n"
    )
    with pytest.raises(AssertionError, match="assert 2 == 3"):
        run_each_alone(doc, tmp_path / "reader")
    assert (tmp_path / "reader" / "helpers.py").read_text() == "# helpers.py\nTWO = 2\n"


def test_skipped_blocks_say_why():
    for path in DOCS:
        for _, reason in python_blocks(path):
            assert reason is None or len(reason.strip()) > 10, f"{path.name}: skip-test needs a reason"
