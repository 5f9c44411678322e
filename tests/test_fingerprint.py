"""datasets' fingerprint of our callables: stable across processes, sensitive to output, blind to knobs.

Every fingerprint here is computed in a fresh Python process: a hash that depends on memory addresses or
on set ordering would pass an in-process comparison and still miss the cache on the next run.
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

import mapgen
import mapgen.map_function
from mapgen.llms.base import Request
from mapgen.store import request_key

# Each entry builds one callable; `base` is compared against every other.
CONFIGS = {
    "base": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask())",
    "base_again": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask())",
    # knobs: speed and placement only
    "threads": "generate(LlamaCppLLM(temperature=0.5, n_threads=2), TextGenerationTask())",
    "context": "generate(LlamaCppLLM(temperature=0.5, n_ctx=1024), TextGenerationTask())",
    "gpu_layers": "generate(LlamaCppLLM(temperature=0.5, n_gpu_layers=4), TextGenerationTask())",
    "devices": "generate(LlamaCppLLM(temperature=0.5, devices=[1]), TextGenerationTask())",
    "store_off": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask(), cache=False)",
    # an API backend: key, concurrency, timeout and retries are knobs too
    "api": "generate(OpenAILLM('m', base_url=URL, temperature=0.5), TextGenerationTask())",
    "api_knobs": (
        "generate(OpenAILLM('m', base_url=URL, temperature=0.5, api_key='sk-other', max_concurrency=3,"
        " timeout=5, max_retries=1, rpm=60), TextGenerationTask())"
    ),
    "api_model": "generate(OpenAILLM('m2', base_url=URL, temperature=0.5), TextGenerationTask())",
    # output-affecting
    "temperature": "generate(LlamaCppLLM(temperature=0.9), TextGenerationTask())",
    "max_tokens": "generate(LlamaCppLLM(temperature=0.5, max_new_tokens=10), TextGenerationTask())",
    "seed": "generate(LlamaCppLLM(temperature=0.5, seed=3), TextGenerationTask())",
    "format": "generate(LlamaCppLLM(temperature=0.5, prompt_format='chatml'), TextGenerationTask())",
    "model": "generate(LlamaCppLLM(temperature=0.5, model_path=OTHER_MODEL), TextGenerationTask())",
    "system": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask(system_prompt='Be brief.'))",
    "template": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask(template='Q: {{ input }}'))",
    "n": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask(), num_generations=2)",
    "columns": "generate(LlamaCppLLM(temperature=0.5), TextGenerationTask(), input_columns={'input': 'q'})",
}
KNOBS = ["base_again", "threads", "context", "gpu_layers", "devices", "store_off"]
OUTPUT_AFFECTING = [
    "temperature",
    "max_tokens",
    "seed",
    "format",
    "model",
    "system",
    "template",
    "n",
    "columns",
]

SCRIPT = """
import json, sys
from mapgen import *
OTHER_MODEL = sys.argv[1]
URL = "http://127.0.0.1:8000/v1"
configs = json.loads(sys.argv[2])
print(json.dumps({name: fingerprint(eval(code)) for name, code in configs.items()}))
"""


def fingerprints_in_subprocess(other_model: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), other_model, json.dumps(CONFIGS)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    # A second model file: same weights under another name is another model to a user.
    other = tmp_path_factory.mktemp("models") / "other-model.gguf"
    other.write_bytes(b"GGUF" + b"\0" * 64)
    return fingerprints_in_subprocess(str(other)), fingerprints_in_subprocess(str(other))


def test_same_config_hashes_the_same_in_separate_processes(two_runs):
    first, second = two_runs
    assert first == second


@pytest.mark.parametrize("name", KNOBS)
def test_speed_and_placement_knobs_do_not_change_the_fingerprint(two_runs, name):
    first, _ = two_runs
    assert first[name] == first["base"]


def test_api_keys_and_throughput_knobs_do_not_change_the_fingerprint(two_runs):
    first, _ = two_runs
    assert first["api_knobs"] == first["api"]
    assert first["api_model"] != first["api"]


@pytest.mark.parametrize("name", OUTPUT_AFFECTING)
def test_output_affecting_changes_change_the_fingerprint(two_runs, name):
    first, _ = two_runs
    assert first[name] != first["base"]


def test_output_format_version_is_part_of_the_fingerprint(monkeypatch):
    fn = mapgen.generate(mapgen.LlamaCppLLM(), mapgen.TextGenerationTask())
    before = mapgen.fingerprint(fn)
    monkeypatch.setattr(mapgen.map_function, "OUTPUT_FORMAT_VERSION", mapgen.OUTPUT_FORMAT_VERSION + 1)
    assert mapgen.fingerprint(fn) != before


def test_an_engine_loaded_in_this_process_does_not_change_the_fingerprint(tiny_llm):
    fn = mapgen.generate(tiny_llm, mapgen.TextGenerationTask())
    before = mapgen.fingerprint(fn)
    fn({"input": ["Say yes."]})  # builds the llama.cpp engine in this process
    assert mapgen.fingerprint(fn) == before


USER_TASK = """
from dataclasses import dataclass
import mapgen

TEMPLATE = "{template}"


@dataclass(frozen=True, kw_only=True)
class MyTask(mapgen.Task):
    outputs = ("generations",)

    @property
    def inputs(self):
        return ("input",)

    def prompt(self, row):
        return mapgen.Prompt(TEMPLATE.format(row["input"]))

    def parse(self, text):
        return {{"generations": text}}
"""


def user_task_fingerprint(folder, template: str) -> str:
    (folder / "my_tasks.py").write_text(USER_TASK.format(template=template))
    code = (
        "import mapgen, my_tasks\n"
        "print(mapgen.fingerprint(mapgen.generate(mapgen.LlamaCppLLM(), my_tasks.MyTask())))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_editing_a_user_tasks_module_level_template_changes_the_fingerprint(tmp_path):
    first = user_task_fingerprint(tmp_path, "Answer: {{}}")
    assert user_task_fingerprint(tmp_path, "Answer: {{}}") == first
    assert user_task_fingerprint(tmp_path, "Answer briefly: {{}}") != first


# Structured outputs: an answer model counts by its JSON schema and its source, the same in every process.

MODEL_SCRIPT = """
from typing import Literal
from pydantic import BaseModel, field_validator
import mapgen


class Review(BaseModel):
    sentiment: Literal["positive", "negative"]
    stars: {stars_type}
{validator}

task = mapgen.StructuredTask(Review, template="Review: {{{{ text }}}}")
as_dict = mapgen.StructuredTask(Review.model_json_schema(), template="Review: {{{{ text }}}}")
llm = mapgen.OpenAILLM("m", base_url="http://127.0.0.1:8000/v1")
print(mapgen.fingerprint(mapgen.generate(llm, task)))
print(mapgen.fingerprint(mapgen.generate(llm, as_dict)))
print(mapgen.fingerprint(mapgen.generate(llm, task, max_reasks=3)))
"""

VALIDATOR = """
    @field_validator("stars")
    @classmethod
    def in_range(cls, value):
        assert 1 <= value <= 5
        return value
"""


def structured_fingerprints(folder, *, stars_type="int", validator="") -> list[str]:
    script = folder / "make_reviews.py"  # run as __main__: where a class would be pickled by value
    script.write_text(MODEL_SCRIPT.format(stars_type=stars_type, validator=validator))
    command = [sys.executable, str(script)]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True).stdout.split()


def test_a_pydantic_answer_model_fingerprints_by_schema_and_source_in_a_new_process(tmp_path):
    first = structured_fingerprints(tmp_path)
    assert structured_fingerprints(tmp_path) == first  # a new process, the same script
    assert structured_fingerprints(tmp_path, stars_type="float")[0] != first[0]  # the schema changed
    assert structured_fingerprints(tmp_path, validator=VALIDATOR)[0] != first[0]  # same schema, new source
    assert first[2] != first[0]  # max_reasks changes the output
    assert first[1] != first[0]  # a schema dict is another task (validated by a model built from it)
    assert structured_fingerprints(tmp_path, stars_type="float")[1] != first[1]


def test_store_keys_of_first_asks_are_unchanged_and_reasks_differ():
    request = Request(mapgen.Prompt("q"), 1, {"type": "object"})
    before_reasks = [
        "llm",
        *request.prompt.identity(),
        request.index,
        request.schema,
        request.top_logprobs,
    ]  # the key's identity as it was before re-asks existed
    old = hashlib.sha256(json.dumps(before_reasks, sort_keys=True, default=repr).encode()).hexdigest()
    assert request_key("llm", request) == old
    keys = {request_key("llm", Request(request.prompt, 1, request.schema, attempt=a)) for a in range(3)}
    assert len(keys) == 3
