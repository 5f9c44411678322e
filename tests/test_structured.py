"""Structured outputs: pydantic answer models as typed columns, validation, re-asks, strict schemas, and
the task contract (one template hook, inputs from the template, public parsing helpers)."""

import ast
import dataclasses
import datetime
import json
import re
import uuid
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

import datasets
import pyarrow as pa
import pytest
from pydantic import AnyUrl, BaseModel, Field, field_validator

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


# Schema constructs: each translated to what strict mode takes, or refused; a fallback says so


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float


class Owner(BaseModel):
    pet: Union[Cat, Dog] = Field(discriminator="pet_type")  # noqa: UP007 - the issue's own spelling


def test_a_discriminated_union_is_taken_strict_on_the_first_request(fault_server):
    # pydantic writes it oneOf + discriminator, which OpenAI's strict mode refuses: sent as it was, the
    # fallback went down to no response_format, and every later answer was unconstrained
    fault_server.configure(
        api_key=fault_server.api_key, default_reply='{"pet": {"pet_type": "dog", "barks": 2}}'
    )
    out = run(mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(Owner)), rows=3)
    assert out["generation_errors"] == [[None]] * 3
    assert [json.loads(pet) for [pet] in out["pet"]] == [{"pet_type": "dog", "barks": 2.0}] * 3
    assert fault_server.stats()["total"] == 3  # one request a row: nothing refused, nothing re-asked
    formats = [body["response_format"] for body in fault_server.requests()]
    assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] is True for f in formats)
    sent = json.dumps(formats[0]["json_schema"]["schema"])
    assert "oneOf" not in sent and "discriminator" not in sent and "$defs" not in sent
    assert [meta["schema_style"] for [meta] in out["generation_metadata"]] == ["json_schema"] * 3


class Anything(BaseModel):
    x: Any


class Formats(BaseModel):
    """pydantic's formats: binary, uri and path dropped from the strict form, the others kept."""

    blob: bytes
    link: AnyUrl
    where: Path
    when: datetime.datetime
    day: datetime.date
    id: uuid.UUID


OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
CLOSED = {**OBJECT, "additionalProperties": False}


def strict_property(node):
    """The strict form of ``node`` as the one property of an object."""
    strict = mapgen.core.schema.strict_schema(
        {"type": "object", "properties": {"p": node}, "required": ["p"]}
    )
    return strict["properties"]["p"]


@pytest.mark.parametrize(
    "node, strict",
    [
        (  # a discriminated union: anyOf (its members exclude each other by their tags), no discriminator
            {"oneOf": [OBJECT, {"type": "integer"}], "discriminator": {"propertyName": "a"}},
            {"anyOf": [CLOSED, {"type": "integer"}]},
        ),
        (  # a $ref with a description beside it, as older pydantic wrote it: the one member merged in
            {"allOf": [OBJECT], "description": "d"},
            {**CLOSED, "description": "d"},
        ),
        (  # members that agree: merged, their properties and required joined
            {"allOf": [OBJECT, {"type": "object", "properties": {"b": {"type": "integer"}}}]},
            {
                "type": "object",
                "properties": {
                    "a": {"type": "string"},
                    "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        ),
        (  # a tuple: its items' types, positions and length left to validation
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "maxItems": 2},
            {"type": "array", "maxItems": 2, "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
        ),
        (  # bounds strict mode refuses, which validation checks: dropped
            {
                "type": "array",
                "items": {"type": "string", "maxLength": 3},
                "uniqueItems": True,
                "default": [],
            },
            {"type": "array", "items": {"type": "string"}},
        ),
        (  # a format strict mode does not take (bytes: binary), which validation checks: dropped
            {"type": "array", "items": {"type": "string", "format": "binary"}},
            {"type": "array", "items": {"type": "string"}},
        ),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),  # taken
        (  # an object as an enum value or a const is a value, not a schema: kept as it is
            {"enum": [{"k": {}}, "x"]},
            {"enum": [{"k": {}}, "x"]},
        ),
    ],
    ids=[
        "oneOf-discriminator", "allOf-one", "allOf-merged", "prefixItems", "dropped-bounds",
        "unsupported-format", "supported-format", "object-enum-value",
    ],
)  # fmt: skip
def test_strict_schema_translates_what_strict_mode_refuses(node, strict):
    assert strict_property(node) == strict


@pytest.mark.parametrize(
    "node",
    [
        {"type": "string", "not": {"const": "x"}},
        {"type": "string", "if": {"const": "x"}, "then": {"maxLength": 1}, "else": {"minLength": 2}},
        {**OBJECT, "dependentRequired": {"a": ["b"]}},
        {**OBJECT, "dependentSchemas": {"a": {"required": ["b"]}}},
        {**OBJECT, "patternProperties": {"^x_": {"type": "integer"}}},  # closing it would refuse x_ keys
        {"type": "array", "items": {"type": "string"}, "contains": {"const": "x"}},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},  # members that disagree: nothing to merge
        {"oneOf": [{"type": "string"}], "anyOf": [{"type": "integer"}]},
        {"type": "object"},  # any object: strict mode would close it to {}
        {"type": "object", "additionalProperties": {"type": "integer"}},  # a dict field
        {"type": "array", "prefixItems": [{"type": "integer"}]},  # a tuple, then items of any type
        {},  # an Any field: untyped, strict mode wants a type
        {"description": "anything"},
        {"type": "array", "items": {}},  # list[Any]
        {"anyOf": [{}, {"type": "null"}]},  # Optional[Any]
        {"allOf": [{"description": "d"}]},  # untyped once merged
    ],
    ids=[
        "not", "if-then-else", "dependentRequired", "dependentSchemas", "patternProperties", "contains",
        "allOf-conflict", "oneOf-and-anyOf", "free-object", "dict", "open-tuple", "untyped",
        "description-only", "untyped-items", "untyped-anyOf-member", "untyped-allOf",
    ],
)  # fmt: skip
def test_strict_schema_refuses_what_it_cannot_translate(node):
    with pytest.raises(mapgen.core.schema.NotStrict):
        strict_property(node)


def test_an_untyped_schema_is_refused_naming_where_it_is():
    with pytest.raises(mapgen.core.schema.NotStrict, match=r"untyped .* at /properties/p/anyOf/0"):
        strict_property({"anyOf": [{}, {"type": "null"}]})
    with pytest.raises(mapgen.core.schema.NotStrict, match=r"untyped .* at /properties/x"):
        mapgen.core.schema.strict_schema(mapgen.core.schema.answer_schema(Anything))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": OBJECT},
        {"anyOf": [OBJECT, {"type": "object", "properties": {"b": {"type": "string"}}}]},
        {"oneOf": [OBJECT, {"type": "object", "properties": {"b": {"type": "string"}}}]},
    ],
    ids=["array", "anyOf", "oneOf"],
)
def test_strict_schema_refuses_a_root_that_is_not_one_object(schema):
    with pytest.raises(mapgen.core.schema.NotStrict, match="root"):
        mapgen.core.schema.strict_schema(schema)


def answer_schemas():
    """The schemas mapgen sends: the built-in tasks' and the models of this file."""
    import mapgen.tasks

    tasks = [getattr(mapgen.tasks, name) for name in mapgen.tasks.__all__]
    schemas = {}
    for cls in tasks:
        if isinstance(cls, type) and issubclass(cls, mapgen.tasks.Task):
            try:
                task = cls()
            except TypeError:  # a task with required arguments
                continue
            if task.schema is not None:
                schemas[cls.__name__] = task.schema
    for model in (Owner, Verdict, Dimensions, Formats):
        schemas[model.__name__] = mapgen.core.schema.answer_schema(model)
    return schemas


@pytest.mark.parametrize("name, schema", sorted(answer_schemas().items()))
def test_every_strict_form_mapgen_sends_is_one_the_openai_test_server_takes(name, schema):
    from mapgen.llms.openai_wire import response_format
    from tests.servers.fault_server import schema_problem

    sent = response_format(schema, "json_schema")
    assert sent["json_schema"]["strict"] is True
    assert schema_problem(sent) is None


STRICT_REFUSALS = {
    "oneOf": ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf' is not permitted"),
    "discriminator": (
        {"anyOf": [CLOSED, {"type": "integer"}], "discriminator": {"propertyName": "a"}},
        "'discriminator' is not permitted",
    ),
    "allOf": ({"allOf": [CLOSED]}, "'allOf' is not permitted"),
    "not": ({"type": "string", "not": {"const": "x"}}, "'not' is not permitted"),
    "if-then-else": (
        {"type": "string", "if": {"const": "x"}, "then": {}, "else": {}},
        "'if' is not permitted",
    ),
    "dependentRequired": (
        {**CLOSED, "dependentRequired": {"a": ["a"]}},
        "'dependentRequired' is not permitted",
    ),
    "patternProperties": (
        {**CLOSED, "patternProperties": {"^x": {"type": "string"}}},
        "'patternProperties' is not permitted",
    ),
    "prefixItems": ({"type": "array", "prefixItems": [{"type": "string"}]}, "'prefixItems' is not permitted"),
    "missing-required": ({**CLOSED, "required": []}, "including every key in properties. Missing 'a'"),
    "additionalProperties-absent": (
        OBJECT,
        "'additionalProperties' is required to be supplied and to be false",
    ),
    "additionalProperties-true": (
        {**CLOSED, "additionalProperties": True},
        "'additionalProperties' is required to be supplied and to be false",
    ),
    "inside-anyOf": ({"anyOf": [OBJECT, {"type": "null"}]}, "'additionalProperties' is required"),
    "untyped": ({}, "schema must have a 'type' key"),
    "untyped-items": ({"type": "array", "items": {"description": "d"}}, "schema must have a 'type' key"),
    "untyped-anyOf-member": ({"anyOf": [{}, {"type": "null"}]}, "schema must have a 'type' key"),
    "format-binary": ({"type": "string", "format": "binary"}, "'binary' is not a valid format"),
    "format-uri": ({"type": "string", "format": "uri"}, "'uri' is not a valid format"),
}


def strict_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "v", "strict": True, "schema": schema}}


@pytest.mark.parametrize("node, message", STRICT_REFUSALS.values(), ids=STRICT_REFUSALS.keys())
def test_the_openai_test_server_refuses_what_strict_mode_refuses(node, message):
    from tests.servers.fault_server import schema_problem

    good = {"type": "object", "properties": {"p": {"type": "string"}}, "required": ["p"]}
    assert schema_problem(strict_format({**good, "additionalProperties": False})) is None
    schema = {**good, "properties": {"p": node}, "additionalProperties": False}
    problem = schema_problem(strict_format(schema))
    assert problem is not None and problem.startswith("Invalid schema for response_format 'v': ")
    assert message in problem and "'properties', 'p'" in problem  # where, as OpenAI's context=(...) says


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}},
        {"anyOf": [CLOSED, CLOSED]},
        {"oneOf": [CLOSED, CLOSED]},
    ],
    ids=["array", "anyOf", "oneOf"],
)
def test_the_openai_test_server_refuses_a_root_that_is_not_an_object(schema):
    from tests.servers.fault_server import schema_problem

    problem = schema_problem(strict_format(schema))
    assert problem is not None and "schema must be a JSON Schema of 'type: \"object\"'" in problem


def test_the_openai_test_server_answers_a_refused_schema_with_openais_400(fault_server):
    import urllib.error

    url = fault_server.base_url + "/chat/completions"
    schema = {**CLOSED, "properties": {"a": STRICT_REFUSALS["oneOf"][0]}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": strict_format(schema),
    }
    with pytest.raises(urllib.error.HTTPError) as refused:
        http_json_with_key(url, body, fault_server.api_key)
    assert refused.value.code == 400
    error = json.loads(refused.value.read())["error"]
    assert error == {
        "message": "Invalid schema for response_format 'v': In context=('properties', 'a'), 'oneOf' is not "
        "permitted.",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }


VERDICT = '{"rating": 4, "reason": "fine"}'


def metadata_styles(out):
    return [meta["schema_style"] for metas in out["generation_metadata"] for meta in metas]


def schema_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, mapgen.errors.SchemaWarning)]


def test_a_run_left_unconstrained_says_so_in_each_answers_metadata_and_warns_once(fault_server):
    # a server that takes no response_format (older compatible servers): the answers come, unconstrained
    fault_server.configure(
        api_key=fault_server.api_key, refuse_formats=["json_schema", "json_object"], default_reply=VERDICT
    )
    llm = structured_llm(fault_server, max_concurrency=1, temperature=0.37)  # a config of its own
    fn = mapgen.generate(llm, mapgen.StructuredTask(Verdict))
    with pytest.warns(mapgen.errors.SchemaWarning) as caught:
        out = run(fn, rows=2)
        more = run(mapgen.generate(llm, mapgen.StructuredTask(Verdict), num_generations=2), rows=1)
    assert out["rating"] == [[4], [4]] and more["rating"] == [[4, 4]]
    assert metadata_styles(out) == ["none", "none"]
    assert metadata_styles(more) == ["none", "none"]  # the first answer from the store, the second asked
    [warning] = schema_warnings(caught)  # once per process and config
    assert "without a response_format" in warning and "not constrained" in warning
    sent = [(body.get("response_format") or {}).get("type") for body in fault_server.requests()]
    assert sent.count(None) == 3 and set(sent) == {"json_schema", "json_object", None}


def test_a_fallback_that_still_constrains_says_which_style_and_does_not_warn(fault_server, recwarn):
    fault_server.configure(
        api_key=fault_server.api_key, refuse_formats=["json_schema"], default_reply=VERDICT
    )
    llm = structured_llm(fault_server, max_concurrency=1, temperature=0.38)
    out = run(mapgen.generate(llm, mapgen.StructuredTask(Verdict)), rows=2)
    assert metadata_styles(out) == ["json_object", "json_object"]
    assert schema_warnings(recwarn) == []


def test_a_schema_without_a_strict_form_goes_as_a_guide_and_says_so(fault_server):
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"counts": {"a": 2}}')
    llm = structured_llm(fault_server, temperature=0.39)
    with pytest.warns(mapgen.errors.SchemaWarning) as caught:
        out = run(mapgen.generate(llm, mapgen.StructuredTask(Tally)), rows=2)
    assert out["counts"] == [['{"a": 2}']] * 2
    assert metadata_styles(out) == ["json_schema_nonstrict"] * 2
    [warning] = schema_warnings(caught)
    assert "strict: false" in warning and "free-form object" in warning


def test_an_any_field_goes_as_a_guide_and_says_so(fault_server):
    # {} went out strict: OpenAI refuses an untyped subschema ("schema must have a 'type' key")
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"x": [1, "a"]}')
    llm = structured_llm(fault_server, temperature=0.41)
    with pytest.warns(mapgen.errors.SchemaWarning) as caught:
        out = run(mapgen.generate(llm, mapgen.StructuredTask(Anything)), rows=2)
    assert out["generation_errors"] == [[None]] * 2 and out["x"] == [['[1, "a"]']] * 2
    assert metadata_styles(out) == ["json_schema_nonstrict"] * 2
    [warning] = schema_warnings(caught)
    assert "strict: false" in warning and "untyped" in warning and "/properties/x" in warning
    [spec] = {json.dumps(body["response_format"]["json_schema"]) for body in fault_server.requests()}
    assert json.loads(spec)["strict"] is False


class Blob(BaseModel):
    data: bytes
    when: datetime.date


def test_a_bytes_field_goes_strict_without_its_format(fault_server, recwarn):
    fault_server.configure(
        api_key=fault_server.api_key, default_reply='{"data": "abc", "when": "2024-01-02"}'
    )
    llm = structured_llm(fault_server, temperature=0.42)
    out = run(mapgen.generate(llm, mapgen.StructuredTask(Blob)), rows=2)
    assert out["generation_errors"] == [[None]] * 2 and out["data"] == [["abc"]] * 2
    assert metadata_styles(out) == ["json_schema"] * 2
    assert schema_warnings(recwarn) == []
    assert fault_server.stats()["total"] == 2  # taken on the first request: nothing refused
    [spec] = {json.dumps(body["response_format"]["json_schema"]) for body in fault_server.requests()}
    properties = json.loads(spec)["schema"]["properties"]
    assert json.loads(spec)["strict"] is True
    assert properties["data"] == {"type": "string"}  # binary: not a format strict mode takes
    assert properties["when"] == {"type": "string", "format": "date"}


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
    ds = run(fn)
    row = ds[0]
    assert row["rating"] == [4] and row["reason"] == ["short"] and row["generation_errors"] == [None]
    after = mapgen.counters.snapshot()
    assert after["reasks"] - before["reasks"] == 1
    # Both answers were paid for: the dataset's tokens are those of the two answers received, not the last's
    [meta] = row["generation_metadata"]
    received = {name: after[name] - before[name] for name in ("prompt_tokens", "completion_tokens")}
    assert (meta["prompt_tokens"], meta["completion_tokens"]) == tuple(received.values())
    assert mapgen.summary(ds).tokens == sum(received.values())
    assert [body["seed"] for body in fault_server.requests()] == [7, 7 + 1_000_000]
    # a re-run (in memory: only the store can spare requests) asks nothing: both answers are stored
    fault_server.configure(api_key=fault_server.api_key, default_reply=invalid)
    again = run(fn)[0]
    assert again["reason"] == ["short"] and fault_server.stats()["total"] == 0


def test_a_reask_of_a_stored_invalid_answer_counts_only_what_this_run_paid(fault_server):
    invalid, valid = '{"rating": 4, "reason": "' + "x" * 50 + '"}', '{"rating": 4, "reason": "short"}'
    fault_server.configure(api_key=fault_server.api_key, default_reply=invalid)
    llm = structured_llm(fault_server, seed=7, price_per_million=(1.0, 1.0))
    run(mapgen.generate(llm, mapgen.StructuredTask(Verdict), max_reasks=0))  # the invalid answer, stored
    fault_server.configure(api_key=fault_server.api_key, default_reply=valid)
    before = mapgen.counters.snapshot()
    ds = run(mapgen.generate(llm, mapgen.StructuredTask(Verdict), max_reasks=1))  # reused, then re-asked
    after = mapgen.counters.snapshot()
    assert fault_server.stats()["total"] == 1 and ds[0]["reason"] == ["short"]
    [meta] = ds[0]["generation_metadata"]
    paid = {name: after[name] - before[name] for name in ("prompt_tokens", "completion_tokens")}
    assert (meta["prompt_tokens"], meta["completion_tokens"]) == tuple(paid.values())
    assert mapgen.summary(ds).tokens == sum(paid.values())


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


# Answers cut at the token limit (issue 20)


class Essay(BaseModel):
    title: str
    body: str


CUT_ESSAY = '{"title": "On rivers", "body": "Rivers begin in the hills and'


def test_an_answer_cut_at_the_token_limit_is_not_reasked_and_says_why(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"reply": CUT_ESSAY, "finish_reason": "length"}]
    )
    before = mapgen.counters.snapshot()
    fn = mapgen.generate(structured_llm(fault_server, max_new_tokens=16), mapgen.StructuredTask(Essay))
    row = run(fn)[0]
    assert fault_server.stats()["total"] == 1  # the same limit would cut it again: not re-asked
    assert (row["title"], row["body"]) == ([None], [None])
    assert row["generation_errors"] == ["length: cut at max_new_tokens=16"]
    assert row["raw_generation_responses"] == [CUT_ESSAY]
    assert row["generation_metadata"][0]["finish_reason"] == "length"
    assert mapgen.counters.snapshot()["reasks"] - before["reasks"] == 0
    # the answer was paid for and is stored: a re-run reads it, says the same, and sends nothing
    fault_server.configure(api_key=fault_server.api_key, default_reply='{"title": "x", "body": "y"}')
    again = run(fn)[0]
    assert again["generation_errors"] == ["length: cut at max_new_tokens=16"]
    assert fault_server.stats()["total"] == 0


def test_an_answer_cut_at_the_limit_that_still_validates_is_kept(fault_server):
    reply = '{"title": "Rivers", "body": "Short."}'
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"reply": reply, "finish_reason": "length"}]
    )
    row = run(mapgen.generate(structured_llm(fault_server, max_new_tokens=16), mapgen.StructuredTask(Essay)))[
        0
    ]
    assert (row["title"], row["body"], row["generation_errors"]) == (["Rivers"], ["Short."], [None])
    assert row["generation_metadata"][0]["finish_reason"] == "length"
    assert fault_server.stats()["total"] == 1


@pytest.mark.parametrize("finish", ["max_tokens", "model_length"])
def test_other_spellings_of_a_cut_from_compatible_servers_are_cuts(fault_server, finish):
    # a gateway passing Anthropic's stop_reason through, Mistral's "model_length"
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"reply": CUT_ESSAY, "finish_reason": finish}]
    )
    row = run(mapgen.generate(structured_llm(fault_server, max_new_tokens=16), mapgen.StructuredTask(Essay)))[
        0
    ]
    assert row["generation_errors"] == ["length: cut at max_new_tokens=16"]
    assert fault_server.stats()["total"] == 1


# Values that do not fit their column (issue 20)


class City(BaseModel):
    city: str
    population: int


HUGE_CITY = '{"city": "Atlantis", "population": 123456789012345678901234567890}'
PARIS = '{"city": "Paris", "population": 2102650}'


def test_a_value_that_does_not_fit_its_column_fails_its_entry_not_the_map(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "Atlantis", "reply": HUGE_CITY}],
        default_reply=PARIS,
    )
    fn = mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(City))
    out = datasets.Dataset.from_dict({"input": ["Atlantis", "Paris"]}).map(fn, batched=True)
    assert out["city"] == [[None], ["Paris"]] and out["population"] == [[None], [2102650]]
    assert out["generation_errors"] == [["invalid_output: population: value does not fit int64"], [None]]
    assert out["raw_generation_responses"][0] == [HUGE_CITY]
    assert fault_server.stats()["total"] == 1 + 2 + 1  # re-asked like any invalid output


def test_a_stored_answer_that_does_not_fit_is_asked_again_instead_of_failing_every_run(fault_server):
    # what an earlier release stored, after which every run raised OverflowError writing the batch
    from mapgen.core.request import Completion
    from mapgen.store import default_store

    fn = mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(City))
    [request], _ = fn.requests_for([{"input": "Atlantis"}])
    store = default_store()
    store.put(fn.store_keys([request])[0], Completion(text=HUGE_CITY, finish_reason="stop"))
    store.flush()
    fault_server.configure(api_key=fault_server.api_key, default_reply=PARIS)
    row = datasets.Dataset.from_dict({"input": ["Atlantis"]}).map(fn, batched=True)[0]
    assert (row["city"], row["population"], row["generation_errors"]) == (["Paris"], [2102650], [None])
    assert fault_server.stats()["total"] == 1  # the stored answer was read, found invalid, asked again


def test_text_a_column_cannot_hold_fails_its_field_and_raw_text_is_made_writable(fault_server):
    # JSON's "\ud800" escape is a lone surrogate, which is not UTF-8: Arrow cannot write it
    escaped = '{"city": "\\ud800", "population": 1}'
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "escaped", "reply": escaped}, {"contains": "raw", "reply": "Par\ud800is"}],
    )
    fn = mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(City), max_reasks=0)
    out = datasets.Dataset.from_dict({"input": ["escaped", "raw"]}).map(fn, batched=True)
    assert out["generation_errors"][0] == [
        "invalid_output: city: value does not fit string (a lone surrogate)"
    ]
    assert out["raw_generation_responses"] == [[escaped], ["Par\ufffdis"]]  # as sent, made writable
    assert out["generation_errors"][1][0].startswith("invalid_output: Invalid JSON")


@pytest.mark.parametrize(
    "value, kind, problem",
    [
        (2**63, pa.int64(), "f: value does not fit int64"),
        (-(2**63), pa.int64(), None),
        (2**31, pa.int32(), "f: value does not fit int32"),
        (-1, pa.uint8(), "f: value does not fit uint8"),
        (True, pa.int64(), "f: value does not fit int64"),
        ("7", pa.int64(), "f: value does not fit int64"),
        (2**53 + 1, pa.float64(), "f: value does not fit double"),
        (3, pa.float64(), None),
        (float("inf"), pa.float64(), None),
        (float("nan"), pa.float64(), None),
        ("\ud800", pa.string(), "f: value does not fit string (a lone surrogate)"),
        ("é ✓ 😀", pa.string(), None),
        (7, pa.string(), "f: value does not fit string"),
        (["a", 2**64], pa.list_(pa.int64()), "f[0]: value does not fit int64"),
        ([1, 2**64], pa.list_(pa.int64()), "f[1]: value does not fit int64"),
        ((1, 2), pa.list_(pa.int64()), None),
        (5, pa.list_(pa.string()), "f: value does not fit list<item: string>"),
        ({"w": 1, "extra": "ignored"}, pa.struct([("w", pa.int64())]), None),
        ({"w": 2**70}, pa.struct([("w", pa.int64())]), "f.w: value does not fit int64"),
        (
            [{"w": 1}, {"w": "x"}],
            pa.list_(pa.struct([("w", pa.int64())])),
            "f[1].w: value does not fit int64",
        ),
        ("2024-01-02", pa.date32(), "f: value does not fit date32[day]"),
        (None, pa.int64(), None),
    ],
)
def test_a_value_fits_its_column_exactly_when_arrow_can_write_it(value, kind, problem):
    from mapgen.core.columns import misfit

    assert misfit({"f": value}, {"f": kind}) == problem
    try:
        pa.array([value], type=kind)
        writable = True
    except Exception:
        writable = False
    assert writable == (problem is None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CountRounds(mapgen.RoundsTask):
    """Two rounds, each answered with a whole number (else the conversation fails); writes their sum."""

    outputs = {"total": pa.int64()}  # noqa: RUF012 - a task's outputs, as a class attribute
    inputs = ("input",)
    max_rounds = 2

    def start(self, row):
        return {"asked": row["input"], "numbers": []}

    def next_prompt(self, state):
        from mapgen.core.prompt import Prompt

        return Prompt(f"{state['asked']} #{len(state['numbers'])}") if len(state["numbers"]) < 2 else None

    def advance(self, state, text):
        if not text.strip().isdigit():
            raise mapgen.ParseError(f"not a whole number: {text[:20]!r}")
        return {**state, "numbers": [*state["numbers"], int(text)]}

    def result(self, state):
        return {"total": sum(state["numbers"])}


def test_rounds_cut_at_the_token_limit_or_with_values_that_do_not_fit_fail_their_conversation(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "cut", "reply": "The number I pick", "finish_reason": "length"},
            {"contains": "huge", "reply": "9" * 30},
        ],
        default_reply="7",
    )
    fn = mapgen.generate(structured_llm(fault_server, max_new_tokens=16), CountRounds())
    out = datasets.Dataset.from_dict({"input": ["cut", "huge", "fine"]}).map(fn, batched=True)
    assert out["total"] == [[None], [None], [14]]
    assert out["generation_errors"] == [
        ["length: round 1: cut at max_new_tokens=16"],
        ["invalid_output: total: value does not fit int64"],
        [None],
    ]


def test_a_mixed_literal_goes_strict_with_the_types_of_its_values(fault_server):
    # pydantic writes Literal[1, "a"] as an enum with no type; strict mode wants a type on every subschema
    from typing import Literal

    from pydantic import BaseModel

    class Mixed(BaseModel):
        pick: Literal[1, "a"]

    strict = mapgen.core.schema.strict_schema(Mixed.model_json_schema())
    pick = strict["properties"]["pick"]
    assert (pick["enum"], pick["type"]) == ([1, "a"], ["integer", "string"])


# Near-miss JSON, repaired before validation (issue 22)


class Review(BaseModel):
    label: Literal["positive", "negative"]
    score: int
    note: str | None = None
    ok: bool = True


REVIEW = Review(label="positive", score=4)
NEAR_MISSES = {
    "trailing comma": ('{"label": "positive", "score": 4,}', REVIEW),
    "single quotes": ("{'label': 'positive', 'score': 4}", REVIEW),
    "unquoted keys": ('{label: "positive", score: 4}', REVIEW),
    "missing closing brace": ('{"label": "positive", "score": 4', REVIEW),
    "python literals": (
        '{"label": "positive", "score": 4, "note": None, "ok": False}',
        REVIEW.model_copy(update={"ok": False}),
    ),
    "line comment": ('{\n  "label": "positive", // the tone\n  "score": 4\n}', REVIEW),
    "fence with a trailing comma": (
        'Here you are:\n```json\n{"label": "positive", "score": 4,}\n```\nHope this helps.',
        REVIEW,
    ),
    "missing comma": ('{"label": "positive"\n "score": 4}', REVIEW),
}


@pytest.mark.parametrize("answer, expected", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_a_near_miss_json_answer_is_repaired_then_validated_and_noted(answer, expected):
    from mapgen.tasks.parsing import noting_repairs, parse_model

    with noting_repairs() as repairs:
        assert parse_model(answer, Review) == expected
    assert repairs == ["Review"]


def test_prose_around_a_near_miss_is_left_out_of_the_repair():
    from mapgen.tasks.parsing import noting_repairs, parse_model

    answer = "Sure! Here it is: {'label': 'positive', 'score': 4,} That's it, don't worry [really]. {Bye}"
    with noting_repairs() as repairs:
        assert parse_model(answer, Review) == REVIEW
    assert repairs == ["Review"]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('{"label": "positive", "score": 4}', REVIEW),
        ('Here is the JSON: {"label": "positive", "score": 4} Hope this helps', REVIEW),
        ('```json\n{"label": "positive", "score": 4, "note": null}\n```', REVIEW),
        (
            '{"label": "positive", "score": 4, "note": "it\'s {fine}"}',
            REVIEW.model_copy(update={"note": "it's {fine}"}),
        ),
    ],
)
def test_json_that_parses_is_never_repaired(answer, expected):
    from mapgen.tasks.parsing import noting_repairs, parse_model

    with noting_repairs() as repairs:
        assert parse_model(answer, Review) == expected
    assert repairs == []


@pytest.mark.parametrize(
    "answer, message",
    [
        ("I cannot review this.", "Invalid JSON"),  # no JSON at all: json-repair would make it ""
        ("label: positive, score: 4", "Invalid JSON"),  # no brace: nothing to repair from
        ("{", "Invalid JSON"),  # repairs to {}: nothing was said
        ('{"label": "positive"', "Invalid JSON"),  # cut: repaired, but a required field is missing
        ('{"label": "positive", "sco', "Invalid JSON"),  # cut in a key
        ('{"label": "positive",', "Invalid JSON"),  # cut before a member began
        ('{"label": "positive", "score":', "Invalid JSON"),  # cut before a value
        ('{"label": "positive", "score": 4, "note": "the fi', "Invalid JSON"),  # cut in a string
        ('{"label": "positive", "score": 4, "ok": tru', "Invalid JSON"),  # cut in a literal
        ("{'label': 'positive'}", "Invalid JSON"),  # repaired, but a required field is missing
        ("{'label': 'positive', 'score': 'high'}", "Invalid JSON"),  # repaired, but of the wrong type
        ("{'label': 'great', 'score': 4}", "Invalid JSON"),  # repaired, but not one of the labels
        ('{"label": "positive", "score": "high"}', "score: Input should be a valid integer"),  # JSON, wrong
    ],
)
def test_what_a_repair_cannot_make_an_answer_of_is_refused_as_before(answer, message):
    from mapgen.tasks.parsing import noting_repairs, parse_model

    with noting_repairs() as repairs, pytest.raises(mapgen.InvalidOutput, match=message) as refused:
        parse_model(answer, Review)
    assert refused.value.kind == "invalid_output" and repairs == []


def test_a_repaired_answer_says_so_in_its_metadata_and_is_not_reasked(fault_server):
    replies = [
        {"contains": f"case {i}", "reply": answer} for i, (answer, _) in enumerate(NEAR_MISSES.values())
    ]
    replies.append({"contains": "case well-formed", "reply": '{"label": "positive", "score": 4}'})
    replies.append({"contains": "case garbage", "reply": "I cannot review this."})
    fault_server.configure(api_key=fault_server.api_key, replies=replies)
    inputs = [f"case {i}" for i in range(len(NEAR_MISSES))] + ["case well-formed", "case garbage"]
    fn = mapgen.generate(structured_llm(fault_server), mapgen.StructuredTask(Review), max_reasks=1)
    before = mapgen.counters.snapshot()
    out = datasets.Dataset.from_dict({"input": inputs}).map(fn, batched=True)
    assert out["label"] == [["positive"]] * (len(NEAR_MISSES) + 1) + [[None]]
    assert out["generation_errors"][:-1] == [[None]] * (len(NEAR_MISSES) + 1)
    assert out["generation_errors"][-1][0].startswith("invalid_output: Invalid JSON")
    repaired = [meta["repaired"] for [meta] in out["generation_metadata"]]
    assert repaired == [True] * len(NEAR_MISSES) + [False, False]
    metadata_type = out.data.schema.field("generation_metadata").type.value_type
    assert (
        metadata_type == mapgen.core.columns.METADATA and metadata_type.field("repaired").type == pa.bool_()
    )
    # only the garbage was asked again: the near misses cost no re-ask
    assert mapgen.counters.snapshot()["reasks"] - before["reasks"] == 1
    assert fault_server.stats()["total"] == len(inputs) + 1
    # a re-run reads the stored answers and repairs them again: the same metadata, nothing sent
    again = datasets.Dataset.from_dict({"input": inputs}).map(fn, batched=True, load_from_cache_file=False)
    assert [meta["repaired"] for [meta] in again["generation_metadata"]] == repaired
    assert fault_server.stats()["total"] == len(inputs) + 1
    # SFT data trains on the record a repaired answer was read as, never on its broken JSON
    sft = mapgen.to_sft(out.select(range(len(NEAR_MISSES) + 1)))
    answers = [messages[-1]["content"] for messages in sft["messages"]]
    for i, answer in enumerate(answers[:-1]):
        assert json.loads(answer) == {field: out[field][i][0] for field in Review.model_fields}
    assert answers[-1] == '{"label": "positive", "score": 4}'  # well-formed: the model's own text


def test_an_answer_cut_at_the_limit_that_reads_only_after_repair_fails_as_a_cut(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"reply": '{"label": "positive", "score": 4', "finish_reason": "length"}],
    )
    fn = mapgen.generate(structured_llm(fault_server, max_new_tokens=16), mapgen.StructuredTask(Review))
    row = run(fn)[0]
    assert row["generation_errors"] == ["length: cut at max_new_tokens=16"]  # the score may have been 45
    assert row["label"] == [None] and row["generation_metadata"][0]["repaired"] is False
    assert fault_server.stats()["total"] == 1


class Number(BaseModel):
    n: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class JsonCountRounds(CountRounds):
    """:class:`CountRounds` whose rounds answer ``{"n": 3}``, read with parse_model."""

    def advance(self, state, text):
        number = mapgen.tasks.parsing.parse_model(text, Number).n
        return {**state, "numbers": [*state["numbers"], number]}


def test_a_round_read_only_after_repair_says_so_in_the_conversations_metadata(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "near #1", "reply": "{'n': 3,}"},
            {"contains": "cut", "reply": '{"n": 5', "finish_reason": "length"},
        ],
        default_reply='{"n": 4}',
    )
    fn = mapgen.generate(structured_llm(fault_server, max_new_tokens=16), JsonCountRounds())
    out = datasets.Dataset.from_dict({"input": ["near", "fine", "cut"]}).map(fn, batched=True)
    assert out["total"] == [[7], [8], [None]]
    assert out["generation_errors"] == [[None], [None], ["length: round 1: cut at max_new_tokens=16"]]
    assert [meta["repaired"] for [meta] in out["generation_metadata"]] == [True, False, False]
