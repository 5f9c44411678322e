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
import mapgen.mapping.map_function
from mapgen.core.request import Request
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
    monkeypatch.setattr(
        mapgen.mapping.map_function, "OUTPUT_FORMAT_VERSION", mapgen.OUTPUT_FORMAT_VERSION + 1
    )
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


# Images and reasoning options (issue 11, items 4 and 5): fingerprints and store keys, each process anew.

MEDIA_SCRIPT = """
import io, json, sys
from PIL import Image as PILImage
from datasets.fingerprint import Hasher
from mapgen import *
from mapgen.core.request import Request
from mapgen.core.prompt import Image
from mapgen.store import request_key

URL = "http://127.0.0.1:8000/v1"


def png(color):
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def api(**kwargs):
    return OpenAILLM("m", base_url=URL, temperature=0.5, **kwargs)


def key(llm, prompt):
    return request_key(Hasher.hash(llm.fingerprint()), Request(prompt))


task = TextGenerationTask(template="Describe.", image_column="image")
plain = TextGenerationTask()
fingerprints = {
    "api": fingerprint(generate(api(), plain)),
    "effort": fingerprint(generate(api(reasoning_effort="low"), plain)),
    "effort_high": fingerprint(generate(api(reasoning_effort="high"), plain)),
    "template_kwargs": fingerprint(generate(api(chat_template_kwargs={"enable_thinking": False}), plain)),
    "image_task": fingerprint(generate(api(), task)),
    "image_column": fingerprint(generate(api(), TextGenerationTask(template="Describe.", image_column="p"))),
}
text = Prompt("Describe.")
keys = {
    "text": key(api(), text),
    "red": key(api(), Prompt("Describe.", images=[Image(png("red"))])),
    "red_again": key(api(), Prompt("Describe.", images=[Image(png("red"))])),
    "red_from_pil": key(api(), task.prompt({"image": PILImage.new("RGB", (8, 8), "red")})),
    "blue": key(api(), Prompt("Describe.", images=[Image(png("blue"))])),
    "two_images": key(api(), Prompt("Describe.", images=[Image(png("red")), Image(png("red"))])),
    "url": key(api(), Prompt("Describe.", images=[Image(url="https://example.com/a.png")])),
    "effort": key(api(reasoning_effort="low"), text),
    "template_kwargs": key(api(chat_template_kwargs={"enable_thinking": False}), text),
    "api_knobs": key(api(max_concurrency=3, timeout=5, api_key="sk-other"), text),
}
print(json.dumps({"fingerprints": fingerprints, "keys": keys}))
"""


@pytest.fixture(scope="module")
def media_runs():
    def run():
        out = subprocess.run([sys.executable, "-c", MEDIA_SCRIPT], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    return run(), run()


def test_image_and_reasoning_fingerprints_and_keys_are_the_same_in_separate_processes(media_runs):
    first, second = media_runs
    assert first == second


def test_reasoning_options_change_the_fingerprint(media_runs):
    prints = media_runs[0]["fingerprints"]
    others = ["effort", "effort_high", "template_kwargs", "image_task", "image_column"]
    assert len({prints["api"], *(prints[name] for name in others)}) == len(others) + 1


def test_store_keys_follow_the_image_bytes_and_the_reasoning_options(media_runs):
    keys = media_runs[0]["keys"]
    assert keys["red_again"] == keys["red"]
    assert keys["red_from_pil"] == keys["red"]  # a PIL image is its lossless PNG: same bytes, same key
    assert keys["api_knobs"] == keys["text"]
    different = ["text", "red", "blue", "two_images", "url", "effort", "template_kwargs"]
    assert len({keys[name] for name in different}) == len(different)


def test_fields_added_since_a_release_leave_the_state_of_configs_that_do_not_set_them():
    # Their store keys and caches from before the fields existed stay valid: the state is the same data.
    llm = mapgen.OpenAILLM("m", base_url="http://127.0.0.1:8000/v1")
    assert not {"reasoning_effort", "chat_template_kwargs"} & set(llm.fingerprint())
    assert "image_column" not in mapgen.TextGenerationTask().fingerprint()
    assert mapgen.OpenAILLM("m", reasoning_effort="low").fingerprint()["reasoning_effort"] == "low"


# Conversations (issue 11, items 1-2): store keys change with every message and with a continued final
# message; fingerprints with the chat and multi-turn tasks' options, never with knobs.
CHAT_SCRIPT = """
import json
from mapgen import *
from mapgen.store import request_key
chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a color."}]
edited = [chat[0], {"role": "assistant", "content": "Hello there!"}, chat[2]]
prompts = {
    "chat": Prompt(messages=chat),
    "chat_again": Prompt(messages=[dict(m) for m in chat]),
    "assistant_turn_edited": Prompt(messages=edited),
    "last_turn_only": Prompt(messages=chat[2:]),
    "continued": Prompt(messages=chat, continue_final_message=True),
    "open_user_turn": Prompt(messages=[{"role": "user", "content": ""}], continue_final_message=True),
}
llm = LlamaCppLLM(temperature=0.5)
functions = {
    "chat_task": generate(llm, ChatGenerationTask()),
    "chat_task_again": generate(LlamaCppLLM(temperature=0.5), ChatGenerationTask()),
    "chat_system": generate(llm, ChatGenerationTask(system_prompt="Be brief.")),
    "magpie": generate(llm, MagpieTask()),
    "magpie_threads": generate(LlamaCppLLM(temperature=0.5, n_threads=2), MagpieTask()),
    "magpie_turns": generate(llm, MagpieTask(num_turns=2)),
    "magpie_system": generate(llm, MagpieTask(system_prompt="You help with cooking.")),
    "magpie_only_instruction": generate(llm, MagpieTask(only_instruction=True)),
    "conversation": generate(llm, ConversationTask()),
    "conversation_turns": generate(llm, ConversationTask(num_turns=3)),
    "conversation_persona": generate(llm, ConversationTask(persona="a {{ job }}")),
}
print(json.dumps({
    "keys": {name: request_key("llm-state", Request(p)) for name, p in prompts.items()},
    "functions": {name: fingerprint(fn) for name, fn in functions.items()},
}))
"""


@pytest.fixture(scope="module")
def chat_runs():
    def run():
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CHAT_SCRIPT)], check=True, capture_output=True, text=True
        )
        return json.loads(out.stdout)

    return run(), run()


def test_conversation_store_keys_and_fingerprints_are_the_same_in_separate_processes(chat_runs):
    first, second = chat_runs
    assert first == second


def test_store_keys_change_with_every_message_and_a_continued_final_message(chat_runs):
    keys = chat_runs[0]["keys"]
    assert keys["chat_again"] == keys["chat"]
    others = [name for name in keys if name not in ("chat", "chat_again")]
    assert len({keys[name] for name in others} | {keys["chat"]}) == len(others) + 1


def test_chat_and_multi_turn_task_options_change_the_fingerprint_and_knobs_do_not(chat_runs):
    fps = chat_runs[0]["functions"]
    assert fps["chat_task_again"] == fps["chat_task"]
    assert fps["magpie_threads"] == fps["magpie"]
    changed = [name for name in fps if name not in ("chat_task_again", "magpie_threads")]
    assert len({fps[name] for name in changed}) == len(changed)


# The typed sampling parameters (issue 11, item 6): each changes the fingerprint and the store key; knobs
# and the spelling of an equal value do not; unset ones leave older configs' fingerprints as they were.

SAMPLING_CONFIGS = {
    "base": "LlamaCppLLM(temperature=0.5)",
    "top_k": "LlamaCppLLM(temperature=0.5, top_k=5)",
    "top_k_off": "LlamaCppLLM(temperature=0.5, top_k=0)",
    "min_p": "LlamaCppLLM(temperature=0.5, min_p=0.1)",
    "stop": "LlamaCppLLM(temperature=0.5, stop=['.'])",
    "stop_other": "LlamaCppLLM(temperature=0.5, stop=['.', '!'])",
    "presence_penalty": "LlamaCppLLM(temperature=0.5, presence_penalty=0.5)",
    "frequency_penalty": "LlamaCppLLM(temperature=0.5, frequency_penalty=0.5)",
    "repetition_penalty": "LlamaCppLLM(temperature=0.5, repetition_penalty=1.2)",
    "generation_kwargs": "LlamaCppLLM(temperature=0.5, generation_kwargs={'mirostat_mode': 2})",
    "api": "OpenAILLM('m', base_url=URL, temperature=0.5)",
    "api_top_k": "OpenAILLM('m', base_url=URL, temperature=0.5, top_k=5)",
    "api_stop": "OpenAILLM('m', base_url=URL, temperature=0.5, stop='.')",
    # equal values, or knobs beside them: the same answers
    "stop_as_string": "LlamaCppLLM(temperature=0.5, stop='.')",
    "top_k_threads": "LlamaCppLLM(temperature=0.5, top_k=5, n_threads=2, n_ctx=1024)",
    "api_top_k_knobs": "OpenAILLM('m', base_url=URL, temperature=0.5, top_k=5, api_key='sk-x', timeout=5)",
}
SAMPLING_CHANGES = [
    "top_k",
    "top_k_off",
    "min_p",
    "stop",
    "stop_other",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "generation_kwargs",
]
SAMPLING_SCRIPT = """
import json, sys
from datasets.fingerprint import Hasher
from mapgen import *
from mapgen.store import request_key
URL = "http://127.0.0.1:8000/v1"
configs = json.loads(sys.argv[1])
out = {}
for name, code in configs.items():
    llm = eval(code)
    out[name] = {
        "fingerprint": fingerprint(generate(llm, TextGenerationTask())),
        "store_key": request_key(Hasher.hash(llm.fingerprint()), Request(Prompt("Hi"))),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sampling_runs():
    def run():
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SAMPLING_SCRIPT), json.dumps(SAMPLING_CONFIGS)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    return run(), run()


def test_sampling_parameters_hash_the_same_in_separate_processes(sampling_runs):
    first, second = sampling_runs
    assert first == second


@pytest.mark.parametrize("name", SAMPLING_CHANGES)
@pytest.mark.parametrize("kind", ["fingerprint", "store_key"])
def test_each_sampling_parameter_changes_the_fingerprint_and_the_store_key(sampling_runs, name, kind):
    first, _ = sampling_runs
    others = {first[other][kind] for other in SAMPLING_CHANGES if other != name} | {first["base"][kind]}
    assert first[name][kind] not in others


@pytest.mark.parametrize("kind", ["fingerprint", "store_key"])
def test_knobs_and_equal_spellings_of_sampling_parameters_do_not(sampling_runs, kind):
    first, _ = sampling_runs
    assert first["stop_as_string"][kind] == first["stop"][kind]
    assert first["top_k_threads"][kind] == first["top_k"][kind]
    assert first["api_top_k_knobs"][kind] == first["api_top_k"][kind]
    assert len({first[name][kind] for name in ("api", "api_top_k", "api_stop")}) == 3


def test_unset_sampling_parameters_leave_the_fingerprint_as_before_they_existed():
    from mapgen.llms._sampling import SAMPLING_PARAMETERS

    for llm in (mapgen.LlamaCppLLM(), mapgen.OpenAILLM("m", base_url="http://127.0.0.1:8000/v1")):
        state = llm.fingerprint()
        assert not set(state) & {*SAMPLING_PARAMETERS, "generation_kwargs"}
        assert "temperature" in state  # the parameters that always existed are still there


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
