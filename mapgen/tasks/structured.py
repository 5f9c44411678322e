"""Structured outputs: answers as typed records of a pydantic model, one column per field."""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa

from mapgen.core.review import ReviewLayout, answer_fields
from mapgen.core.schema import answer_model, arrow_types, is_model, to_arrow_value
from mapgen.tasks.base import Task, schema_of
from mapgen.tasks.parsing import parse_model

RESERVED = ("generation_model", "generation_prompt", "raw_generation_responses", "generation_errors")
"""Columns :func:`mapgen.generate` writes itself, which an answer field must not be named."""


@dataclass(frozen=True)
class StructuredTask(Task):
    """Answer each row with a record of ``model`` (a pydantic model class, or a JSON schema dict of an
    object): each top-level field becomes a column, one entry per generation, typed by
    :func:`mapgen.core.schema.arrow_types` (``int`` is ``int64``, nested models structs, lists lists, enums
    their values' type, optional fields ``None`` where absent).

    Backends that constrain decoding follow the model's JSON schema (llama.cpp's grammar, OpenAI's
    strict ``json_schema``, vLLM's guided decoding); on every backend each answer is validated with
    pydantic (``model_validate_json``, a fenced ``json`` block or prose around the JSON tolerated). An
    answer that fails is asked again (``generate(..., max_reasks=2)``), then written as ``None`` with an
    ``invalid_output`` error that names the field.

    ``template`` is Jinja2 over the row's columns (the columns it names are the task's inputs);
    ``system_prompt`` is sent as the system message.

    Raises:
        TypeError: ``model`` is neither a pydantic model class nor a dict.
        ValueError: the model is not an object with fields, is recursive, names a field like a column
            ``generate`` writes, or the template reads no column.

    Example:
        >>> from typing import Literal
        >>> from pydantic import BaseModel
        >>> class Sentiment(BaseModel):
        ...     label: Literal["positive", "negative", "neutral"]
        ...     confidence: float
        >>> task = StructuredTask(Sentiment, template="Classify the sentiment: {{ text }}")
        >>> task.inputs, {name: str(kind) for name, kind in task.outputs.items()}
        (('text',), {'label': 'string', 'confidence': 'double'})
        >>> task.parse('```json\\n{"label": "positive", "confidence": 1}\\n```')
        {'label': 'positive', 'confidence': 1.0}
    """

    model: Any
    _: dataclasses.KW_ONLY
    template: str = "{{ input }}"
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not (is_model(self.model) or isinstance(self.model, Mapping)):
            raise TypeError(
                f"StructuredTask takes a pydantic model class or a JSON schema dict, got {self.model!r}."
            )
        types = arrow_types(self.schema)  # raises for what cannot be columns
        clash = sorted(set(types) & set(RESERVED))
        if clash:
            raise ValueError(f"the answer model's field(s) {clash} would overwrite columns of generate().")
        if not isinstance(self.template, str) or not self.inputs:
            raise ValueError(
                f"template must be a Jinja2 string that reads at least one column, got {self.template!r}."
            )

    @property
    def answer_model(self) -> Any:
        return self.model

    @property
    def schema(self) -> dict[str, Any]:
        schema = schema_of(self.model)
        assert schema is not None  # __post_init__ checked that model is a model class or a schema dict
        return schema

    @property
    def outputs(self) -> dict[str, pa.DataType]:
        return arrow_types(self.schema)

    def validator(self) -> type:
        """The pydantic model answers are validated with: ``model`` itself, or one built from the
        JSON schema dict (:func:`mapgen.core.schema.answer_model`)."""
        return self.model if is_model(self.model) else _validator(_frozen(self.schema))

    def parse(self, text: str) -> dict[str, Any]:
        """One column value per field, from the validated answer's JSON form (enums as their values).

        Raises:
            mapgen.tasks.parsing.InvalidOutput: the answer is not JSON of the model; names the field.
        """
        answer = parse_model(text, self.validator())
        values = answer.model_dump(mode="json", by_alias=True)
        return {name: to_arrow_value(values.get(name), kind) for name, kind in self.outputs.items()}

    def template_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {}  # the model is not a template value

    def fingerprint(self) -> dict[str, Any]:
        state = super().fingerprint()
        state["model"] = state.pop("answer_model")  # by schema and source, never the class object
        return state

    def review(self) -> ReviewLayout:
        """One record per answer, beside the row's inputs: each field of the answer shown on its own with
        a question to correct it (:func:`mapgen.core.review.answer_fields`: a label question for a
        ``Literal`` or enum field, a rating for a small bounded integer, else a text question)."""
        fields = answer_fields(self.schema)
        return ReviewLayout(
            items=fields[0].name,
            per_generation=True,
            answer_fields=fields,
            rubric="Is this field right for the input? Keep the suggested value, or correct it.",
        )


def _frozen(schema: Any) -> Any:
    """A hashable form of a JSON schema, for the validator cache."""
    if isinstance(schema, Mapping):
        return tuple(sorted((key, _frozen(value)) for key, value in schema.items()))
    if isinstance(schema, list):
        return ("__list__", tuple(_frozen(value) for value in schema))
    return schema


def _thawed(frozen: Any) -> Any:
    if isinstance(frozen, tuple) and frozen[:1] == ("__list__",):
        return [_thawed(value) for value in frozen[1]]
    if isinstance(frozen, tuple):
        return {key: _thawed(value) for key, value in frozen}
    return frozen


@lru_cache(maxsize=64)
def _validator(frozen: Any) -> type:
    # Built once per process and schema: a model made by create_model does not pickle, so it is never
    # kept on the task (which travels to num_proc workers).
    return answer_model(_thawed(frozen))
