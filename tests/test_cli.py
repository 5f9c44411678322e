"""The `mapgen` command, run as users run it: a real process, real files."""

import json
import os
import signal
import subprocess
import sys
import time

import datasets
import pytest

from mapgen import cli
from mapgen._version import __version__ as mapgen_version
from mapgen.errors import FatalAPIError, StoreError
from mapgen.report.summary import describe_failures, failures_by_kind
from tests.servers.fixtures import default_sigint

llamacpp = pytest.mark.llamacpp


def mapgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mapgen.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``mapgen ARGS`` in this process (for what needs no model): exit status, stdout, stderr."""
    try:
        status = cli.main(list(args))
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def summary(stdout: str) -> dict[str, str]:
    """The closing table as {name: value}."""
    pairs = (line.split("  ", 1) for line in stdout.splitlines() if "  " in line)
    return {name.strip(): value.strip() for name, value in pairs}


@llamacpp
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
    table = summary(done.stdout)
    assert table["ratings"] == "4 of 4 generations"
    # mapgen.summary of the label step alone: one judge answer per generation (for_small_models)
    assert (table["answers"], table["failed answers"]) == ("4 of 4", "0")
    assert table["requests sent"] == "4"
    weighted = ds[0]["weighted_rating"]
    best_first = sorted(range(2), key=lambda i: -weighted[i])
    assert table["row 0 ranked"] == " > ".join(f"answer {i + 1}" for i in best_first)
    # Where the ratings are shown, the command says what a 135M judge's ratings are worth.
    assert "note: the embedded judge (SmolLM2-135M) is too small to judge" in done.stdout
    assert "11 of 16 test pairs" in done.stdout


@llamacpp
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


def test_a_missing_column_names_the_flag_to_use(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "hi"}\n')
    done = mapgen("generate", "--dataset", str(source))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "mapgen: error: the dataset has no column 'input'; its columns are ['prompt']. Pass --column with "
        "the column that holds the prompts (e.g. --column prompt)."
    )


def test_label_names_what_it_rates(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"input": "hi"}\n')
    done = mapgen("label", "--dataset", str(source))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "mapgen: error: mapgen label rates a 'generations' column (a list of answers per row), which the "
        "dataset does not have; its columns are ['input']. Pass --dataset the output of 'mapgen generate'."
    )


def test_configuration_errors_name_flags_not_python_parameters():
    message = cli._error_message(ValueError("max_new_tokens must be at least 1; pass input_columns={x: y}"))
    assert message == "--max-new-tokens must be at least 1; pass --column NAME"


def test_without_a_key_the_command_says_which_variable_to_set(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    status, _, err = run_main(capsys, "generate", "--llm", "openai:gpt-4o-mini")
    assert status == 2
    assert err.splitlines()[-1] == (
        "mapgen: error: --llm openai:MODEL needs an API key for OpenAI's API: set OPENAI_API_KEY (or pass "
        "--base-url for a server that needs none)."
    )


def test_a_rejected_key_names_the_variable_not_a_python_argument(fault_server):
    # A process of its own: this process would keep the client (and key) of a config it met before.
    key = {"OPENAI_API_KEY": "sk-wrong-key-0123456789"}
    done = mapgen("generate", "--llm", "openai:m", "--base-url", fault_server.base_url, env=key)
    assert done.returncode == 2
    line = done.stderr.splitlines()[-1]
    assert line.startswith("mapgen: error: HTTP 401: ")
    assert line.endswith(
        "(check the API key in OPENAI_API_KEY); stopped before sending the remaining requests."
    )
    assert "api_key" not in line and "sk-wrong-key" not in line


@pytest.mark.parametrize(
    ("error", "shell"),
    [
        (
            FatalAPIError("HTTP 404: Not Found (check the model name and base_url); stopped."),
            "HTTP 404: Not Found (check the model name (--llm openai:MODEL) and --base-url); stopped.",
        ),
        (
            StoreError(
                "Store s is damaged. Run `mapgen cache clear`, or pass cache=False to run without it."
            ),
            "Store s is damaged. Run `mapgen cache clear`, or set MAPGEN_CACHE_DIR to another folder to run "
            "on a new store.",
        ),
        (
            StoreError("Set $MAPGEN_CACHE_DIR to keep the store elsewhere, or pass cache=False."),
            "Set $MAPGEN_CACHE_DIR to keep the store elsewhere.",
        ),
    ],
)
def test_other_python_advice_becomes_shell_advice(error, shell):
    assert cli._error_message(error) == shell


def test_unknown_backend_is_a_clear_error(capsys):
    status, _, err = run_main(capsys, "generate", "--llm", "claude")
    assert status == 2
    assert err == (
        "mapgen: error: --llm 'claude' is not one of: llamacpp, llamacpp:PATH.gguf, openai:MODEL, "
        "anthropic:MODEL.\n"
    )


def test_help_reads_as_plain_text(capsys):
    for command in ([], ["generate"], ["label"], ["cache"]):
        status, out, _ = run_main(capsys, *command, "--help")
        assert status == 0
        assert "``" not in out and ":func:" not in out and ":class:" not in out, out
    status, out, _ = run_main(capsys, "--help")
    assert out.startswith("usage: mapgen [-h] [--version] COMMAND ...\n\nMake synthetic and AI-feedback")
    assert "  mapgen label --dataset out/generated --output out/labelled\n" in out


def test_label_requires_a_dataset_and_says_so(capsys):
    _, out, _ = run_main(capsys, "label", "--help")
    words = " ".join(out.split())
    assert "built-in" not in words
    assert (
        "--dataset PATH what to rate: the output of 'mapgen generate' (a folder, .jsonl or .parquet" in words
    )
    status, _, err = run_main(capsys, "label")
    assert status == 2
    assert "the following arguments are required: --dataset" in err


def test_version(capsys):
    assert run_main(capsys, "--version") == (0, f"mapgen {mapgen_version}\n", "")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("out.csv", "CSV cannot hold the list columns"),
        ("out.TSV", "TSV cannot hold the list columns"),
        ("out.txt", "a text file cannot hold the list columns mapgen writes (one answer per generation)"),
    ],
)
def test_an_output_format_mapgen_does_not_write_is_refused_before_anything_runs(
    tmp_path, capsys, fault_server, name, says
):
    output = tmp_path / name
    status, _, err = run_main(
        capsys, "generate", "--llm", "openai:m", "--base-url", fault_server.base_url, "--output", str(output)
    )
    assert status == 2
    assert f"argument --output: {output}: {says}" in err
    assert not output.exists()
    assert fault_server.stats()["total"] == 0


@pytest.mark.parametrize(
    ("name", "written_as"),
    [
        ("runs/llama-3.1", "folder"),  # a dot in a folder name is not a format
        ("out.JSONL", "json lines"),
        ("out.Parquet", "parquet"),
        ("out.Json", "json"),
        ("out.jsonl.d", "folder"),
    ],
)
def test_the_output_format_follows_the_suffix_in_any_case_and_else_is_a_folder(
    tmp_path, capsys, monkeypatch, fault_server, name, written_as
):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    output = tmp_path / name
    command = ["generate", "--limit", "2", "--llm", "openai:m", "--base-url", fault_server.base_url]
    status, _, err = run_main(capsys, *command, "--output", str(output))
    assert status == 0, err
    readers = {
        "folder": lambda: datasets.load_from_disk(str(output)),
        "json lines": lambda: datasets.Dataset.from_list([json.loads(line) for line in output.open()]),
        "json": lambda: datasets.Dataset.from_list(json.loads(output.read_text())),
        "parquet": lambda: datasets.Dataset.from_parquet(str(output)),
    }
    assert output.is_dir() == (written_as == "folder")
    ds = readers[written_as]()
    assert ds["generations"] == [[f"echo: {text}"] for text in cli.EXAMPLE_INSTRUCTIONS[:2]]


def test_input_suffixes_are_read_in_any_case(tmp_path, capsys, monkeypatch, fault_server):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    source = tmp_path / "prompts.JSONL"
    source.write_text('{"input": "hi"}\n')
    output = tmp_path / "out.jsonl"
    command = ["generate", "--llm", "openai:m", "--base-url", fault_server.base_url, "--output", str(output)]
    status, _, err = run_main(capsys, *command, "--dataset", str(source))
    assert status == 0, err
    assert json.loads(output.read_text())["generations"] == ["echo: hi"]


def test_the_summary_counts_failures_apart_and_says_when_datasets_served_the_map(tmp_path, fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "too long", "status": 400, "message": "maximum context length exceeded"}],
    )
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"input": text}) + "\n" for text in ["hi", "too long", "bye"]))
    output = tmp_path / "out.jsonl"
    command = ["generate", "--dataset", str(source), "--llm", "openai:m", "--base-url", fault_server.base_url]
    key = {"OPENAI_API_KEY": fault_server.api_key}

    done = mapgen(*command, "--output", str(output), env=key)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    errors = [e for row in rows for e in row["generation_errors"]]
    table = summary(done.stdout)
    assert table["answers"] == "2 of 3"
    assert table["failed answers"] == describe_failures(failures_by_kind(errors))
    assert table["failed answers"].startswith("1 (")
    assert (table["requests sent"], table["answers reused"]) == ("3", "0 from the response store")

    # The same command again: datasets returns its cached map without calling mapgen.
    done = mapgen(*command, env=key)
    assert done.returncode == 0, done.stderr
    table = summary(done.stdout)
    assert table["requests sent"] == "0"
    assert table["datasets' cache"] == (
        "this map came whole from datasets' cache (nothing was sent or re-read); its 1 failed "
        "answer(s) were not retried: pass --retry-failed to send them again"
    )
    assert table["answers"] == "2 of 3"  # the dataset's own numbers, as the run that made it left them
    assert fault_server.stats()["total"] == 3

    # Another batch size is another map for datasets: the store answers the two, the failure is re-sent.
    done = mapgen(*command, "--batch-size", "2", env=key)
    assert done.returncode == 0, done.stderr
    table = summary(done.stdout)
    assert (table["requests sent"], table["answers reused"]) == ("1", "2 from the response store")
    assert fault_server.stats()["total"] == 4


def test_retry_failed_sends_only_what_failed(tmp_path, fault_server):
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"contains": "bye", "status": 400, "message": "bad request"}]
    )
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"input": text}) + "\n" for text in ["hi", "bye", "hello"]))
    output = tmp_path / "out"
    command = ["generate", "--dataset", str(source), "--llm", "openai:m", "--base-url", fault_server.base_url]
    command += ["--output", str(output)]
    key = {"OPENAI_API_KEY": fault_server.api_key}
    done = mapgen(*command, env=key)
    assert done.returncode == 0, done.stderr
    assert summary(done.stdout)["failed answers"] == "1 (http_400 1)"

    fault_server.configure(api_key=fault_server.api_key)  # the server now answers every row
    done = mapgen(*command, "--retry-failed", env=key)
    assert done.returncode == 0, done.stderr
    table = summary(done.stdout)
    assert (table["answers"], table["failed answers"]) == ("3 of 3", "0")
    assert (table["requests sent"], table["answers reused"]) == ("1", "2 from the response store")
    assert fault_server.stats()["total"] == 1
    generations = datasets.load_from_disk(str(output))["generations"]
    assert generations == [["echo: hi"], ["echo: bye"], ["echo: hello"]]

    # datasets' cache now holds the map without failures: the plain command is served from it.
    done = mapgen(*command, env=key)
    assert summary(done.stdout)["datasets' cache"] == (
        "this map came whole from datasets' cache (nothing was sent or re-read)"
    )


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=2.0)
    command = ["generate", "--llm", "openai:m", "--base-url", fault_server.base_url]
    process = subprocess.Popen(
        [sys.executable, "-m", "mapgen.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": fault_server.api_key},
        preexec_fn=default_sigint,
    )
    try:
        while fault_server.stats()["in_flight"] < 4:  # every request is out, and waits on the server
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("mapgen")]
    assert lines == [
        # the 4 requests in flight land (and are stored) before the run stops
        "mapgen: interrupted: 4 new answer(s) kept in the response store; run the same command again to "
        "resume (it sends only what is missing)."
    ]


def test_sampling_flags_reach_the_llm_and_their_errors_name_the_flags(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = cli.build_parser().parse_args(
        [
            "generate",
            "--top-k",
            "5",
            "--min-p",
            "0.1",
            "--stop",
            ".",
            "--stop",
            "!",
            "--repetition-penalty",
            "1.2",
        ]
    )
    llm = cli.build_llm(args)
    assert (llm.top_k, llm.min_p, llm.stop, llm.repetition_penalty) == (5, 0.1, (".", "!"), 1.2)
    assert (llm.presence_penalty, llm.frequency_penalty) == (None, None)

    status, _, err = run_main(capsys, "generate", "--llm", "openai:gpt-4o-mini", "--top-k", "5")
    assert status == 2
    assert err.startswith("mapgen: error: --llm openai:MODEL cannot honour --top-k=5: ")
    assert "--base-url" in err and "top_k" not in err
    status, _, err = run_main(capsys, "generate", "--presence-penalty", "3")
    assert (status, err) == (2, "mapgen: error: --presence-penalty must be between -2 and 2, got 3.0.\n")


def test_anthropic_spec_generates_and_labels_through_the_messages_api(
    tmp_path, capsys, monkeypatch, anthropic_server
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_server.api_key)
    generated, labelled = tmp_path / "generated.jsonl", tmp_path / "labelled.jsonl"
    llm = ["--llm", "anthropic:claude-test", "--base-url", anthropic_server.base_url]
    status, out, err = run_main(
        capsys, "generate", "--limit", "2", "--num-generations", "2", *llm, "--output", str(generated)
    )
    assert status == 0, err
    rows = [json.loads(line) for line in generated.open()]
    assert [row["generations"] for row in rows] == [[f"echo: {t}"] * 2 for t in cli.EXAMPLE_INSTRUCTIONS[:2]]
    assert rows[0]["generation_metadata"][0]["prompt_tokens"] > 0  # the Messages API's usage
    assert summary(out)["requests sent"] == "4"  # no n at Anthropic: one request per generation
    assert anthropic_server.stats()["total"] == 4

    status, _, err = run_main(capsys, "label", "--dataset", str(generated), *llm, "--output", str(labelled))
    assert status == 0, err
    # One judge request per (row, answer); a row's two answers are the same echo: one request answers both.
    assert anthropic_server.stats()["total"] == 4 + 2
    assert len(labelled.read_text().splitlines()) == 2


def test_anthropic_errors_name_its_key_variable(capsys, monkeypatch, anthropic_server):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    status, _, err = run_main(capsys, "generate", "--llm", "anthropic:claude-sonnet-4-5")
    assert status == 2
    assert err.splitlines()[-1] == (
        "mapgen: error: --llm anthropic:MODEL needs an API key for Anthropic's API: set ANTHROPIC_API_KEY "
        "(or pass --base-url for a server that needs none)."
    )
    status, _, err = run_main(capsys, "generate", "--llm", "anthropic:claude-test", "--seed", "1")
    assert status == 2 and "--llm anthropic:MODEL cannot honour --seed=1" in err

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-0123456789")
    command = ["generate", "--limit", "1", "--llm", "anthropic:claude-wrong-key"]
    status, _, err = run_main(capsys, *command, "--base-url", anthropic_server.base_url)
    line = err[err.rindex("mapgen: error:") :]  # the Requests bar may end without a newline before it
    assert status == 2 and line.startswith("mapgen: error: HTTP 401: "), err
    assert "(check the API key in ANTHROPIC_API_KEY)" in line and "sk-ant-wrong" not in line
