"""A saved dataset mapped twice, in two processes: the second run loads datasets' cache, no model."""

import json
import subprocess
import sys
import textwrap

import datasets
import pytest

pytestmark = pytest.mark.llamacpp

SCRIPT = """
import json, sys
import datasets, mapgen
ds = datasets.load_from_disk(sys.argv[1])
llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0, n_threads=int(sys.argv[2]))
fn = mapgen.generate(llm)
out = ds.map(fn, batched=True)
print(json.dumps({
    "generations": [row["generations"] for row in out],
    "cache_files": [f["filename"] for f in out.cache_files],
    "model_loaded": "llama_cpp" in sys.modules,
}))
"""


def run(saved: str, n_threads: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), saved, str(n_threads)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_second_run_loads_from_datasets_cache_without_the_model(tmp_path):
    saved = str(tmp_path / "prompts")
    datasets.Dataset.from_dict({"input": ["Say one word.", "Say two words."]}).save_to_disk(saved)

    first = run(saved, n_threads=1)
    # A different thread count is a knob: same fingerprint, so the same cache file.
    second = run(saved, n_threads=2)

    assert first["model_loaded"] is True
    assert second["model_loaded"] is False
    assert second["cache_files"] == first["cache_files"]
    assert second["generations"] == first["generations"]
    assert all(g[0] for g in first["generations"])
