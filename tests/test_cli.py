"""The `mapgen` command, run as users run it: a real process, real files."""

import json
import subprocess
import sys

import datasets
import pytest

pytestmark = pytest.mark.llamacpp


def mapgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mapgen.cli", *args], capture_output=True, text=True, timeout=600
    )


def summary(stdout: str) -> dict[str, str]:
    """The closing table as {name: value}."""
    pairs = (line.split("  ", 1) for line in stdout.splitlines() if "  " in line)
    return {name.strip(): value.strip() for name, value in pairs}


def test_quickstart_generates_then_labels_with_the_embedded_model(tmp_path):
    generated, labelled = tmp_path / "generated", tmp_path / "labelled"
    small = ["--max-new-tokens", "24", "--seed", "0", "--limit", "2"]
    done = mapgen("generate", "--num-generations", "2", *small, "--output", str(generated))
    assert done.returncode == 0, done.stderr
    assert summary(done.stdout)["requests sent"] == "4"

    done = mapgen("label", "--dataset", str(generated), "--max-new-tokens", "80", "--output", str(labelled))
    assert done.returncode == 0, done.stderr
    ds = datasets.load_from_disk(str(labelled))
    assert len(ds) == 2
    assert all(g for row in ds["generations"] for g in row)
    ratings = [r for row in ds["rating"] for r in row]
    assert len(ratings) == 4 and all(isinstance(r, float) for r in ratings)
    assert "rated 4 of 4 generations" in done.stdout


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_reads_a_local_file_and_writes_the_asked_format(tmp_path, suffix):
    source = tmp_path / f"prompts{suffix}"
    prompts = datasets.Dataset.from_dict({"question": ["Say hi.", "Say bye."]})
    writers = {".jsonl": prompts.to_json, ".parquet": prompts.to_parquet, ".csv": prompts.to_csv}
    writers[suffix](str(source))
    output = tmp_path / "out.jsonl"
    done = mapgen(
        "generate",
        "--dataset",
        str(source),
        "--column",
        "question",
        "--max-new-tokens",
        "8",
        "--output",
        str(output),
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["question"] for r in rows] == ["Say hi.", "Say bye."]
    assert all(r["generations"][0] for r in rows)


def test_a_missing_column_is_a_clear_error_before_anything_runs(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "hi"}\n')
    done = mapgen("generate", "--dataset", str(source))
    assert done.returncode == 2
    assert "reads column(s) ['input']" in done.stderr and "['prompt']" in done.stderr


def test_unknown_backend_is_a_clear_error():
    done = mapgen("generate", "--llm", "claude")
    assert done.returncode == 2
    assert "--llm 'claude' is not one of: llamacpp, llamacpp:PATH.gguf, openai:MODEL" in done.stderr
