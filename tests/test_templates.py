"""Templates are code, from configs people share; rows are data. Every template renders in Jinja's sandbox, a
row's value is never rendered as a template, and a row value that is not text is refused (the row's ``input``
error, nothing sent), not sent as its Python repr."""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass

import datasets
import pytest
from jinja2.sandbox import SecurityError

import mapgen
from mapgen.tasks.base import InputError, Substitution, Task, compile_template

FAST, JINJA = "Q: {{ input }}", "{% if true %}Q: {{ input }}{% endif %}"
"""The same template for the fast path (:class:`Substitution`) and for Jinja's."""


def test_the_two_templates_take_the_two_paths():
    assert isinstance(compile_template(FAST), Substitution)
    assert not isinstance(compile_template(JINJA), Substitution)


# The sandbox


@pytest.mark.parametrize(
    "template",
    [
        "{{ input }} {{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
        "{{ input.__class__.__mro__ }}",
        "{{ input['__class__'] }}",
        "{{ cycler | attr('__init__') }} {{ input }}",
        "{% set f = joiner.__init__ %}{{ input }}",
        "{% for x in range.__subclasses__() %}{{ x }}{% endfor %}{{ input }}",
    ],
)
def test_a_template_reaching_python_internals_is_refused_when_the_task_is_built(template, tmp_path):
    template = template.replace("MARKER", str(tmp_path / "ran"))
    with pytest.raises(SecurityError, match="__"):
        mapgen.TextGenerationTask(template=template)
    assert not (tmp_path / "ran").exists()


def test_unsafe_access_only_rendering_shows_is_the_sandboxes_error(fault_server):
    # The attribute's name comes from the row: only rendering shows it. The template is at fault, not the
    # row, and every row would fail alike: the map stops with the sandbox's error.
    task = mapgen.TextGenerationTask(template="{{ cycler | attr(name) }} {{ input }}")
    with pytest.raises(SecurityError, match="unsafe"):
        task.prompt({"input": "x", "name": "__init__"})
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    with pytest.raises(SecurityError):
        datasets.Dataset.from_dict({"input": ["x"], "name": ["__init__"]}).map(
            mapgen.generate(llm, task), batched=True
        )
    assert fault_server.stats()["total"] == 0


def test_safe_templates_still_render_in_the_sandbox():
    template = "{% for g in generations %}{{ loop.index }}. {{ g | upper }} {% endfor %}{{ meta._id }}"
    task = mapgen.TextGenerationTask(template=template)
    row = {"generations": ["a", "b"], "meta": {"_id": 7}}  # a dict key with an underscore is data
    assert task.prompt(row).user == "1. A 2. B 7"


@pytest.mark.parametrize("template", [FAST, JINJA])
def test_a_row_value_is_never_rendered_as_a_template(template):
    value = "{{ 7*7 }} {% if true %}x{% endif %} {{ cycler.__init__ }}"
    assert mapgen.TextGenerationTask(template=template).prompt({"input": value}).user == f"Q: {value}"


# Values that are not text


NOT_TEXT = [
    (b"\xff\x00raw", "bytes"),
    (bytearray(b"raw"), "bytearray"),
    (memoryview(b"raw"), "memoryview"),
    ({"k": "v"}, "dict"),
    (["a", "b"], "list"),
    (("a",), "tuple"),
    ({"a"}, "set"),
    (object(), "object"),
]


@pytest.mark.parametrize("template", [FAST, JINJA])
@pytest.mark.parametrize(("value", "kind"), NOT_TEXT)
def test_a_row_value_that_is_not_text_is_an_input_error_not_its_repr(template, value, kind):
    with pytest.raises(InputError, match=f"holds a {kind} value, not text") as refused:
        mapgen.TextGenerationTask(template=template).prompt({"input": value})
    assert refused.value.input == "input"


@pytest.mark.parametrize("template", [FAST, JINJA])
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (2.5, "2.5"),
        (True, "True"),
        (decimal.Decimal("1.10"), "1.10"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01 12:30:00"),
        ("é", "é"),
    ],
)
def test_numbers_bools_and_dates_are_text_as_python_writes_them(template, value, text):
    # An int `id`, a float score, a date: common in datasets, and their text is what a reader expects.
    assert mapgen.TextGenerationTask(template=template).prompt({"input": value}).user == f"Q: {text}"


def test_an_item_of_a_list_column_that_is_not_text_names_the_column():
    task = mapgen.JudgeLMTask()
    with pytest.raises(InputError, match="holds a bytes value, not text") as refused:
        task.prompt({"input": "Why?", "generations": ["fine", b"\x00raw"]})
    assert refused.value.input == "generations"
    conversation = mapgen.ConversationTask(persona="a {{ job }}")
    with pytest.raises(InputError, match="holds a dict value") as refused:
        conversation.prompt({"job": {"title": "nurse"}})
    assert refused.value.input == "job"


def test_a_tasks_own_values_print_as_its_code_says():
    # A task's fields are code, not data: printing a tuple field is its author's choice.
    @dataclass(frozen=True, kw_only=True)
    class Pick(Task):
        labels: tuple[str, ...] = ("yes", "no")
        template: str = "Answer {{ labels }}: {{ input }}"
        outputs = ("label",)

    assert Pick().prompt({"input": "Is it?"}).user == "Answer ('yes', 'no'): Is it?"


def test_a_map_refuses_bytes_in_a_text_column_and_sends_nothing_for_it(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    ds = datasets.Dataset.from_dict({"text": [b"\xff\x00raw", b"fine"]})
    ds = ds.add_column("id", [1, 2])
    task = mapgen.TextGenerationTask(template="{{ id }}: {{ text }}")
    out = ds.map(mapgen.generate(llm, task), batched=True)
    assert out["generations"] == [[None], [None]]
    [error] = out["generation_errors"][0]
    assert error.startswith("input: column 'text': holds a bytes value, not text")
    assert fault_server.stats()["total"] == 0


@pytest.mark.parametrize("template", ["{{ ctx | string }}", "{{ 'x' ~ ctx }}", "{{ ctx | first | string }}"])
def test_bytes_are_refused_however_a_template_turns_them_into_text(template):
    from mapgen.tasks.base import render_template

    with pytest.raises(mapgen.InputError, match="holds a bytes value") as refused:
        render_template(template, {"ctx": b"zz"} if "first" not in template else {"ctx": [b"zz"]})
    assert refused.value.input == "ctx"
