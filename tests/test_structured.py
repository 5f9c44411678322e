"""Structured outputs: pydantic answer models as typed columns, validation, re-asks, strict schemas, and
the task contract (one template hook, inputs from the template, public parsing helpers)."""

import ast
import json
import re
from enum import Enum
from pathlib import Path
from typing import Literal

import datasets
import pyarrow as pa
import pytest
from pydantic import BaseModel, Field, field_validator

import mapgen
from mapgen.core.request import Request

ROOT = Path(__file__).parent.parent


class Size(str, Enum):
    small = "small"
    large = "large"


class Dimensions(BaseModel):
    width: int
    height: float


class Item(BaseModel):
    name: str
    count: int
    price: float
    fragile: bool
    size: Size
    grade: Literal[1, 2, 3]
    tags: list[str]
    dims: Dimensions
    boxes: list[Dimensions]
    note: str | None = None
    extra: dict[str, int] = {}


ITEM_JSON = {
    "name": "lamp",
    "count": 2,
    "price": 3,
    "fragile": True,
    "size": "small",
    "grade": 2,
    "tags": ["a", "b"],
    "dims": {"width": 1, "height": 2.5},
    "boxes": [{"width": 3, "height": 4}],
    "note": None,
    "extra": {"k": 1},
}

ITEM_TYPES = {
    "name": pa.string(),
    "count": pa.int64(),
    "price": pa.float64(),
    "fragile": pa.bool_(),
    "size": pa.string(),
    "grade": pa.int64(),
    "tags": pa.list_(pa.string()),
    "dims": pa.struct([("width", pa.int64()), ("height", pa.float64())]),
    "boxes": pa.list_(pa.struct([("width", pa.int64()), ("height", pa.float64())])),
    "note": pa.string(),
    "extra": pa.string(),  # a free-form object has no Arrow type: its JSON text
}


class Verdict(BaseModel):
    rating: Literal[1, 2, 3, 4, 5]
    reason: str = Field(max_length=40)
    note: str | None = None


# Types, parsing, validation


def test_each_field_becomes_a_typed_column():
    task = mapgen.StructuredTask(Item, template="Describe {{ thing }}.")
    assert task.inputs == ("thing",)
    assert task.output_types() == ITEM_TYPES
    fn = mapgen.generate(mapgen.LlamaCppLLM(), task, num_generations=2)
    types = fn.output_types()
    assert types["dims"] == pa.list_(ITEM_TYPES["dims"])  # one entry per generation


def test_a_json_schema_dict_maps_to_the_same_columns_and_is_validated_by_pydantic():
    schema = Item.model_json_schema()
    task = mapgen.StructuredTask(schema, template="Describe {{ thing }}.")
    assert task.output_types() == ITEM_TYPES
    assert task.parse(json.dumps(ITEM_JSON)) == mapgen.StructuredTask(Item).parse(json.dumps(ITEM_JSON))
    with pytest.raises(mapgen.InvalidOutput, match=r"^size: Input should be 'small' or 'large'"):
        task.parse(json.dumps({**ITEM_JSON, "size": "huge"}))
    with pytest.raises(mapgen.InvalidOutput, match=r"^dims\.width: Field required"):
        task.parse(json.dumps({**ITEM_JSON, "dims": {"height": 1}}))


def test_answers_are_validated_and_shaped_for_arrow():
    task = mapgen.StructuredTask(Item)
    fenced = "Here you are:\n```json\n" + json.dumps(ITEM_JSON) + "\n```\nAnything else?"
    values = task.parse(fenced)
    assert values["price"] == 3.0 and isinstance(values["price"], float)
    assert values["size"] == "small" and values["extra"] == '{"k": 1}'
    table = pa.table({name: pa.array([values[name]], type) for name, type in ITEM_TYPES.items()})
    assert table.num_rows == 1
    with pytest.raises(mapgen.InvalidOutput, match=r"^grade: Input should be 1, 2 or 3"):
        task.parse(json.dumps({**ITEM_JSON, "grade": 7}))
    with pytest.raises(mapgen.InvalidOutput, match="Invalid JSON"):
        task.parse('{"name": "lamp", "count": 2')  # cut off by the token limit


def test_models_that_cannot_be_columns_are_refused_before_anything_runs():
    class Node(BaseModel):
        children: list["Node"]

    with pytest.raises(ValueError, match="recursive"):
        mapgen.StructuredTask(Node)
    with pytest.raises(ValueError, match="object with properties"):
        mapgen.StructuredTask({"type": "array", "items": {"type": "string"}})
    with pytest.raises(TypeError, match="pydantic model class or a JSON schema dict"):
        mapgen.StructuredTask(Item.model_validate(ITEM_JSON))  # an instance, not the class

    class Clash(BaseModel):
        generation_errors: str

    with pytest.raises(ValueError, match="generation_errors"):
        mapgen.StructuredTask(Clash)


def test_strict_schema_follows_openais_rules():
    schema = mapgen.core.schema.answer_schema(Item)
    with pytest.raises(mapgen.core.schema.NotStrict):  # the dict field: strict mode would close it to {}
        mapgen.core.schema.strict_schema(schema)
    del schema["properties"]["extra"]
    strict = mapgen.core.schema.strict_schema(schema)
    assert strict["additionalProperties"] is False
    assert strict["required"] == list(strict["properties"])
    assert strict["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    nested = strict["properties"]["boxes"]["items"]
    assert nested["additionalProperties"] is False and nested["required"] == ["width", "height"]
    # a property called "default" is a name, not the keyword strict mode refuses
    named = mapgen.core.schema.strict_schema(
        {"type": "object", "properties": {"default": {"type": "string"}}}
    )
    assert named["required"] == ["default"]


def test_the_test_server_refuses_schemas_that_break_openais_strict_rules(fault_server):
    # the server's own request validation: a non-strict-form schema under strict: true is a 400
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "v", "strict": True, "schema": mapgen.core.schema.answer_schema(Verdict)},
        },
    }
    headers_url = fault_server.base_url + "/chat/completions"
    with pytest.raises(Exception, match="400"):
        http_json_with_key(headers_url, body, fault_server.api_key)
    body["response_format"]["json_schema"]["schema"] = mapgen.core.schema.strict_schema(
        mapgen.core.schema.answer_schema(Verdict)
    )
    assert http_json_with_key(headers_url, body, fault_server.api_key)["choices"]


def http_json_with_key(url, body, key):
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


# Re-asks, against the fault server


def structured_llm(server, **kwargs):
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **kwargs)


def run(fn, rows=1):
    return datasets.Dataset.from_dict({"input": [f"review {i}" for i in range(rows)]}).map(fn, batched=True)


@pytest.mark.parametrize("max_reasks", [0, 2, 3])
def test_an_invalid_answer_is_reasked_the_configured_number_of_times_then_none(fault_server, max_reasks):
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"rating": 9, "reason": "great"}')
    before = mapgen.counters.snapshot()
    fn = mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(Verdict), max_reasks=max_reasks)
    row = run(fn)[0]
    assert fault_server.stats()["total"] == 1 + max_reasks
    assert row["rating"] == [None] and row["reason"] == [None]
    assert row["generation_errors"][0].startswith("invalid_output: rating: Input should be 1, 2, 3, 4 or 5")
    assert row["raw_generation_responses"] == ['{"rating": 9, "reason": "great"}']
    after = mapgen.counters.snapshot()
    assert after["reasks"] - before["reasks"] == max_reasks
    assert after["failed"] - before["failed"] == 1
    # every request carried the strict schema, and the server took it (no fallback to json_object)
    formats = [body["response_format"] for body in fault_server.requests()]
    assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] is True for f in formats)


def test_a_reask_is_a_new_request_for_the_store_with_its_own_seed(fault_server):
    invalid, valid = '{"rating": 4, "reason": "' + "x" * 50 + '"}', '{"rating": 4, "reason": "short"}'
    fault_server.configure(api_key=fault_server.api_key, replies=[{"in_turn": [invalid, valid]}])
    fn = mapgen.generate(structured_llm(fault_server, seed=7), mapgen.StructuredTask(Verdict))
    before = mapgen.counters.snapshot()
    row = run(fn)[0]
    assert row["rating"] == [4] and row["reason"] == ["short"] and row["generation_errors"] == [None]
    assert mapgen.counters.snapshot()["reasks"] - before["reasks"] == 1
    assert [body["seed"] for body in fault_server.requests()] == [7, 7 + 1_000_000]
    # a re-run (in memory: only the store can spare requests) asks nothing: both answers are stored
    fault_server.configure(api_key=fault_server.api_key, default_reply=invalid)
    again = run(fn)[0]
    assert again["reason"] == ["short"] and fault_server.stats()["total"] == 0


def test_label_reasks_answers_that_fail_a_labelling_tasks_model(fault_server):
    example = load_example("custom_task")
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"rating": 6, "reason": "ok"}')
    llm = structured_llm(fault_server)
    ds = datasets.Dataset.from_dict({"input": ["q"], "generations": [["a"]]})
    row = ds.map(mapgen.label(llm, example.ConcisenessTask(), max_reasks=1), batched=True)[0]
    assert fault_server.stats()["total"] == 2
    assert row["rating"] == [None]
    assert row["labelling_error"].startswith("invalid_output: text 1: rating: Input should be")


# Constrained decoding on the embedded model


@pytest.mark.llamacpp
def test_llamacpp_grammar_really_constrains_the_answer():
    # Enum values the model has no reason to write, at a high temperature: only the grammar can make
    # every answer one of them.
    schema = mapgen.core.schema.answer_schema(
        {
            "type": "object",
            "properties": {"animal": {"enum": ["quokka-7", "zebra-3"]}, "wild": {"type": "boolean"}},
            "required": ["animal", "wild"],
        }
    )
    llm = mapgen.LlamaCppLLM(temperature=1.2, max_new_tokens=32, seed=0)
    prompts = [mapgen.Prompt(text) for text in ("Write a haiku.", "What is 2 + 2?")]
    constrained = llm.complete([Request(p, 0, schema) for p in prompts])
    # the grammar writes the properties in order: the animal comes first, whatever follows it
    animal = re.compile(r'\s*\{\s*"animal"\s*:\s*"(quokka-7|zebra-3)"')
    assert [bool(animal.match(c.text)) for c in constrained] == [True, True], [c.text for c in constrained]
    free = llm.complete([Request(p, 0) for p in prompts])
    assert not any("quokka-7" in c.text or "zebra-3" in c.text for c in free)


# The task contract


def test_template_values_is_the_one_hook_and_fields_are_template_values():
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Quiz(mapgen.Task):
        level: str = "easy"
        template: str = "Write a {{ level }} question about {{ topic }} ({{ hint }})."
        outputs = ("generations",)

        def template_values(self, row):
            return {**super().template_values(row), "hint": row["topic"].upper()}

        def parse(self, text):
            return {"generations": text}

    task = Quiz(level="hard")
    assert task.inputs == ("topic",)  # "level" is a field, "hint" comes from the hook
    assert task.prompt({"topic": "tea"}).user == "Write a hard question about tea (TEA)."


def test_builtin_tasks_no_longer_override_prompt_only_to_add_variables():
    for name in ("evol", "ultrajudge", "ultrafeedback", "critique", "self_instruct"):
        tree = ast.parse((ROOT / "mapgen" / "tasks" / f"{name}.py").read_text())
        methods = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert "prompt" not in methods, name


def test_builtin_answer_schemas_come_from_pydantic_models_unchanged():
    from mapgen.tasks import judgelm, ultrafeedback

    assert mapgen.UltraFeedbackTask().answer_model is ultrafeedback.Ratings
    assert mapgen.JudgeLMTask().schema == {  # the schema as it was written by hand before
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}},
            "explanation": {"type": "string", "maxLength": 600},
        },
        "required": ["scores", "explanation"],
    }
    assert judgelm.Scores.model_validate_json('{"scores": [3, 9], "explanation": "x"}').scores == [3, 9]
    prompts = mapgen.UltraJudgeTask().schema["properties"]["answers"]["items"]["properties"]
    assert list(prompts)[:2] == ["Practical Accuracy", "Clarity & Transparency"]


def test_parsing_helpers_are_public_and_the_old_module_still_works():
    from mapgen.tasks import _parsing

    assert mapgen.tasks.parsing.parse_score("**4/5**", 1, 5) == 4.0
    assert _parsing.parse_score is mapgen.tasks.parsing.parse_score
    assert mapgen.ParseError is mapgen.tasks.parsing.ParseError and issubclass(
        mapgen.InvalidOutput, mapgen.ParseError
    )


def test_the_custom_task_example_uses_no_private_import():
    tree = ast.parse((ROOT / "examples" / "custom_task.py").read_text())
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    names = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert not any(part.startswith("_") for module in modules for part in module.split("."))
    assert not any(name.startswith("_") for name in names)


def test_a_validator_in_the_answer_model_counts():
    class Shout(BaseModel):
        text: str

        @field_validator("text")
        @classmethod
        def loud(cls, value: str) -> str:
            if value != value.upper():
                raise ValueError("must be in capitals")
            return value

    task = mapgen.StructuredTask(Shout)
    assert task.parse('{"text": "HI"}') == {"text": "HI"}
    with pytest.raises(mapgen.InvalidOutput, match="text: Value error, must be in capitals"):
        task.parse('{"text": "hi"}')


def load_example(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WithDefaults(BaseModel):
    items: list[Dimensions] = []
    score: float = 1.5
    note: str | None = None


def test_a_null_for_a_field_with_a_default_is_the_default(fault_server):
    # Strict mode makes such fields nullable, so a constrained server may send null: it means "absent".
    reply = '{"items": null, "score": null, "note": null}'
    fault_server.configure(api_key=fault_server.api_key, default_reply=reply)
    row = run(mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(WithDefaults)))[0]
    assert row["generation_errors"] == [None]
    assert (row["items"], row["score"], row["note"]) == ([[]], [1.5], [None])
    assert fault_server.stats()["total"] == 1  # valid: not re-asked


class Tally(BaseModel):
    counts: dict[str, int]


def test_a_dict_field_is_not_closed_by_strict_mode(fault_server):
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"counts": {"a": 2}}')
    row = run(mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(Tally)))[0]
    assert row["generation_errors"] == [None]
    [spec] = [body["response_format"]["json_schema"] for body in fault_server.requests()]
    # strict mode would allow {} only: the schema goes as a guide, and pydantic validates the answer
    assert spec["strict"] is False and spec["schema"]["properties"]["counts"]["additionalProperties"]


class Echo(BaseModel):
    input: str


def test_a_field_named_like_the_column_the_task_reads_is_refused_before_anything_is_sent(fault_server):
    task = mapgen.StructuredTask(Echo, template="{{ input }}")
    with pytest.raises(ValueError, match=r"writes column\(s\) \['input'\], which it also reads"):
        mapgen.generate(structured_llm(fault_server), task)
    # reading the input from another column is the way out
    fn = mapgen.generate(structured_llm(fault_server), task, input_columns={"input": "review"})
    rows = datasets.Dataset.from_dict({"review": ["r0"]})
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"input": "x"}')
    out = rows.map(fn, batched=True)
    assert out["review"] == ["r0"] and out["input"] == [["x"]]


def test_a_raw_newline_inside_a_string_is_read_as_written():
    # llama-cpp-python's JSON grammar lets raw control characters into strings (its char rule is
    # [^"\\]), and strict JSON refuses them: the 200-row benchmark's re-asks were all such answers.
    verdict = mapgen.tasks.parsing.parse_model('{"rating": 4, "reason": "clear\nand short"}', Verdict)
    assert (verdict.rating, verdict.reason) == (4, "clear\nand short")
