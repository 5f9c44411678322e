"""The task contract: which columns a task reads, the prompt it renders, how it parses an answer.

Writing your own task is the same exercise as the built-in ones: a frozen dataclass with a ``template``
(Jinja2 over the row's columns; the columns it names are the task's ``inputs``), the ``outputs`` it
writes, and either a ``parse(text)`` or an ``answer_model`` (a pydantic model: the JSON schema that
constraining backends follow, and the validation of every answer). Values the template needs beyond the
row come from one hook, :meth:`Task.template_values` (the task's own fields, by default). Parse failures
are data: raise :class:`ParseError` (or any ``ValueError``) and the row gets ``None`` with the reason in
its error column; :class:`InvalidOutput` (an answer that fails its model) is asked again first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
import jinja2.meta
import pyarrow as pa

from mapgen.core.config import dataclass_fingerprint, source_digest
from mapgen.core.images import ImageError, load_images
from mapgen.core.prompt import Image, Prompt
from mapgen.core.review import ReviewLayout, default_review
from mapgen.core.schema import answer_schema, is_model
from mapgen.tasks.parsing import InvalidOutput, ParseError

__all__ = ["InputError", "InvalidOutput", "ParseError", "Task", "compile_template", "template_variables"]

_NOT_VALUES = ("template", "system_prompt")
"""Fields that are the prompt itself, not values for it."""


class _AnyRow(dict):
    """A row with every column, each empty: what :attr:`Task.inputs` asks the hook with."""

    def __missing__(self, key: str) -> str:
        return ""


class InputError(ValueError):
    """A row whose input the task cannot prompt from (a conversation that does not end with a user turn,
    say): raised by :meth:`Task.prompt`, it gives that row ``None`` and an ``input`` error naming the
    dataset column, and the run goes on. ``input`` is the task input's name."""

    def __init__(self, input: str, reason: str) -> None:
        super().__init__(reason)
        self.input = input


@dataclass(frozen=True, kw_only=True)
class Task:
    """Base of every task.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True, kw_only=True)
        ... class Translate(Task):
        ...     language: str = "French"
        ...     template: str = "Translate to {{ language }}: {{ text }}"
        ...     outputs = ("generations",)
        ...     def parse(self, text): return {"generations": text.strip()}
        >>> task = Translate()
        >>> task.inputs  # the template's variables that are not the task's own fields
        ('text',)
        >>> task.prompt({"text": "cat"}).user
        'Translate to French: cat'
    """

    outputs: ClassVar[tuple[str, ...] | Mapping[str, pa.DataType]] = ()
    """Columns this task's :meth:`parse` fills, one value per generation: names (string columns), or
    names mapped to Arrow types."""

    answer_model: ClassVar[Any] = None
    """The answer's pydantic model (or a JSON schema dict), written once: :attr:`schema` derives from
    it, and :func:`mapgen.tasks.parsing.parse_model` validates an answer against it."""

    @property
    def schema(self) -> dict[str, Any] | None:
        """JSON schema of an answer (from :attr:`answer_model`); backends that can constrain output use
        it, so answers parse. A task may also set it as a class attribute."""
        return schema_of(self.answer_model)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Columns a row must have for :meth:`prompt`: by default the variables the ``template`` reads,
        less the task's own fields and the names :meth:`template_values` supplies (asked once with a
        row whose every column is empty)."""
        template = getattr(self, "template", None)
        if not isinstance(template, str):
            raise NotImplementedError(f"{type(self).__name__} needs a `template` field or `inputs`.")
        supplied = {f.name for f in dataclasses.fields(self)}
        with contextlib.suppress(Exception):  # a hook that needs real values: its names stay inputs
            supplied |= set(self.template_values(_AnyRow()))
        return tuple(name for name in template_variables(template) if name not in supplied)

    def template_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """What the template sees beside the row's columns (and over them, where names meet): by
        default the task's own fields but ``template`` and ``system_prompt``, so a template reads
        ``{{ num_instructions }}`` with no code. Override it to add values computed from the task or
        the row, starting from ``super().template_values(row)``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOT_VALUES}

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        """The prompt for one row (a mapping from input names to values).

        By default the task's ``template`` field rendered over the row and :meth:`template_values`,
        sent with its ``system_prompt`` field if it has one and the row's :meth:`images`; override it only
        for a prompt that is not one template (several messages).
        """
        template = getattr(self, "template", None)
        if not isinstance(template, str):
            raise NotImplementedError(f"{type(self).__name__} needs a `template` field or a prompt() method.")
        text = compile_template(template).render(**{**row, **self.template_values(row)})
        return Prompt(text, system=getattr(self, "system_prompt", None), images=self.images(row))

    def images(self, row: Mapping[str, Any]) -> tuple[Image, ...]:
        """The images sent with a row's prompt: those of the row's ``image_column`` when the task has that
        field set (see :mod:`mapgen.core.images` for what a column may hold), else none.

        Raises:
            InputError: the column's value is no image (:class:`mapgen.core.images.ImageError` says why); the
                row fails with an ``input`` error naming the column.
        """
        column = getattr(self, "image_column", None)
        if column is None:
            return ()

        try:
            images = load_images(row[column])
        except ImageError as error:
            raise InputError(column, str(error)) from error
        if not images:  # an empty list: the prompt would go without what it asks about
            raise InputError(column, "the column holds no image")
        return images

    @property
    def sends_images(self) -> bool:
        """Whether prompts carry images: map functions refuse backends that cannot send them."""
        return getattr(self, "image_column", None) is not None

    def parse(self, text: str) -> dict[str, Any]:
        """The output columns' values for one answer; raise :class:`ParseError` when it cannot."""
        raise NotImplementedError

    def review(self) -> ReviewLayout:
        """How people review this task's data (:class:`~mapgen.core.review.ReviewLayout`: the rubric, which
        outputs are suggestions, one record per row or per generation); exporters such as
        :func:`mapgen.push_to_argilla` read only this. By default it is derived from :attr:`inputs` and
        :attr:`outputs` (:func:`~mapgen.core.review.default_review`); override it to say more."""
        return default_review(self)

    def output_types(self) -> dict[str, pa.DataType]:
        """:attr:`outputs` as a mapping from column name to Arrow type."""
        if isinstance(self.outputs, Mapping):
            return dict(self.outputs)
        return dict.fromkeys(self.outputs, pa.string())

    def fingerprint(self) -> dict[str, Any]:
        """Fields, plus a digest of the task class's source: editing a template or a parser
        changes what a task writes, so it must change the cache key too. An answer model counts by
        its JSON schema and its source (validators change what passes)."""
        state = {**dataclass_fingerprint(self), "source": source_digest(type(self))}
        if self.answer_model is not None:
            state["answer_model"] = model_fingerprint(self.answer_model)
        return state


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template | Substitution:
    """A Jinja2 template, compiled once per process; unknown variables are errors, not blanks.

    A template that is only text and ``{{ name }}`` fields, as most task templates are, becomes a
    :class:`Substitution`, which renders the same string (from Jinja's own parse of it) ~10x faster.

    Example:
        >>> compile_template("Q: {{ input }}").render(input="Why?")
        'Q: Why?'
        >>> compile_template("{% for x in xs %}{{ x }}{% endfor %}").render(xs=[1, 2])
        '12'
    """
    pieces = Substitution.pieces_of(_JINJA.parse(source))
    return Substitution(pieces) if pieces is not None else _JINJA.from_string(source)


class Substitution:
    """A template of text and ``{{ name }}`` fields, rendered by joining: ``str`` of each value, as Jinja
    renders it without autoescaping, and Jinja's ``UndefinedError`` for a name that is not given.

    Example:
        >>> Substitution.pieces_of(_JINJA.parse("Hi {{ name }}!"))
        (('Hi ', False), ('name', True), ('!', False))
        >>> Substitution.pieces_of(_JINJA.parse("Hi {{ name | upper }}")) is None  # a filter: Jinja's
        True
    """

    def __init__(self, pieces: tuple[tuple[str, bool], ...]) -> None:
        self.pieces = pieces

    @staticmethod
    def pieces_of(template: jinja2.nodes.Template) -> tuple[tuple[str, bool], ...] | None:
        """Each piece of a parsed template as ``(text, False)`` or ``(name, True)``; ``None`` when the
        template holds anything else (a filter, an expression, a block, one of Jinja's globals such as
        ``range``, which Jinja renders when no value is given)."""
        pieces: list[tuple[str, bool]] = []
        for node in template.body:
            if not isinstance(node, jinja2.nodes.Output):
                return None
            for part in node.nodes:
                if isinstance(part, jinja2.nodes.TemplateData):
                    pieces.append((part.data, False))
                elif isinstance(part, jinja2.nodes.Name) and part.name not in _JINJA.globals:
                    pieces.append((part.name, True))  # an Output node's names are loads
                else:
                    return None
        return tuple(pieces)

    def render(self, **values: Any) -> str:
        try:
            return "".join(str(values[piece]) if is_name else piece for piece, is_name in self.pieces)
        except KeyError as missing:
            raise jinja2.UndefinedError(f"{missing.args[0]!r} is undefined") from None


@lru_cache(maxsize=256)
def template_variables(source: str) -> tuple[str, ...]:
    """The variables a template reads, sorted: a task's input columns."""
    return tuple(sorted(jinja2.meta.find_undeclared_variables(_JINJA.parse(source))))


def schema_of(model: Any) -> dict[str, Any] | None:
    """:func:`mapgen.core.schema.answer_schema` of ``model`` (``None`` for ``None``), computed once per
    pydantic class."""
    if model is None:
        return None
    if is_model(model):
        return _class_schema(model)
    return answer_schema(model)


@lru_cache(maxsize=256)
def _class_schema(model: type) -> dict[str, Any]:
    return answer_schema(model)


def model_fingerprint(model: Any) -> Any:
    """What identifies an answer model in a fingerprint: a pydantic class by its JSON schema and a
    digest of its source (the same in every process), a JSON schema dict by itself."""
    if is_model(model):
        return {"schema": model.model_json_schema(), "source": source_digest(model)}
    return model
