"""The task contract: which columns a task reads, the prompt it renders, how it parses an answer.

Writing your own task is the same exercise as the built-in ones: a frozen dataclass with a ``template``
(Jinja2 over the row's columns; the columns it names are the task's ``inputs``), the ``outputs`` it
writes, and either a ``parse(text)`` or an ``answer_model`` (a pydantic model: the JSON schema that
constraining backends follow, and the validation of every answer). Values the template needs beyond the
row come from one hook, :meth:`Task.template_values` (the task's own fields, by default). Parse failures
are data: raise :class:`ParseError` (or any ``ValueError``) and the row gets ``None`` with the reason in
its error column; :class:`InvalidOutput` (an answer that fails its model) is asked again first.

Templates are code, often from configs people share; rows are data. So every template renders in Jinja's
sandbox (a template that reaches for Python's internals, ``{{ cycler.__init__ }}``, is refused when the task
is built, or by the sandbox when it renders), a row's value is printed, never rendered as a template, and a
row value that is not text (bytes, a dict, a list where text is printed; numbers, bools and dates are text)
fails its row with an ``input`` error instead of being sent as its Python repr (:func:`render_template`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox
import pyarrow as pa

from mapgen.core.config import dataclass_fingerprint
from mapgen.core.digest import code_digest
from mapgen.core.images import ImageError, load_images
from mapgen.core.keywords import CheckedKeywords
from mapgen.core.prompt import Image, Prompt
from mapgen.core.review import ReviewLayout, default_review
from mapgen.core.schema import answer_schema, is_model
from mapgen.errors import InputError, InvalidOutput, ParseError

__all__ = [
    "InputError",
    "InvalidOutput",
    "ParseError",
    "Task",
    "compile_template",
    "render_template",
    "template_variables",
]

_NOT_VALUES = ("template", "system_prompt")
"""Fields that are the prompt itself, not values for it."""

_NOT_OUTPUT_CODE = ("review", "fingerprint")
"""Methods that say how people review a task's data or how it is hashed, never what it writes: left out of
its code digest, so that editing them keeps caches."""


class _AnyRow(dict):
    """A row with every column, each empty: what :attr:`Task.inputs` asks the hook with."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, kw_only=True)
class Task(CheckedKeywords):
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

    # outputs and answer_model are read-only properties here so that a subclass may set either as a
    # class attribute (`outputs: ClassVar[...] = ...`, the usual way) or compute it from its fields.
    @property
    def outputs(self) -> tuple[str, ...] | Mapping[str, pa.DataType]:
        """Columns this task's :meth:`parse` fills, one value per generation: names (string columns), or
        names mapped to Arrow types. Usually set as a class attribute."""
        return ()

    @property
    def answer_model(self) -> Any:
        """The answer's pydantic model (or a JSON schema dict), written once: :attr:`schema` derives from
        it, and :func:`mapgen.tasks.parsing.parse_model` validates an answer against it. Usually set as
        a class attribute; ``None`` for a task that parses free text."""
        return None

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
        text = render_template(template, row, self.template_values(row))
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
        """Fields, plus a digest of the task class's code and of the module-level values it reads
        (:func:`~mapgen.core.digest.code_digest`): editing a template, a parser or a constant it reads
        changes what a task writes, so it must change the cache key too; the rest of its module and its
        :meth:`review` do not. An answer model counts by its JSON schema and its code (validators change
        what passes)."""
        state = {**dataclass_fingerprint(self), "source": code_digest(type(self), exclude=_NOT_OUTPUT_CODE)}
        if self.answer_model is not None:
            state["answer_model"] = model_fingerprint(self.answer_model)
        return state


_TEXT = (str, numbers.Number, datetime.date, datetime.time)
"""What a template prints of a row: text, and numbers, bools and dates, whose ``str`` is what a reader
expects (an int ``id``, a score, a day). ``None`` prints as ever: empty inputs are refused before."""

_ROW: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("mapgen_row", default=None)
"""The row :func:`render_template` is rendering: a printed value that is not text is refused when it is one
of this row's values (or in one), and left to the template when it is the task's own."""


def _printed(value: Any) -> Any:
    """Jinja's ``finalize``: every value a template prints passes here (:class:`Substitution`'s too).

    Raises:
        InputError: ``value`` is not text and comes from the row being rendered.
    """
    if value is None or isinstance(value, (_TEXT, jinja2.Undefined)):
        return value
    row = _ROW.get()
    name = None if row is None else next((k for k, v in row.items() if _holds(v, value)), None)
    if name is None:
        return value  # the task's own value (code), or a value the template computed: its author's choice
    if isinstance(value, (bytes, bytearray, memoryview)):
        hint = ": decode it to str first"
    elif isinstance(value, (Mapping, list, tuple, set, frozenset)):
        hint = ": a template reads its items ({% for %}, | join, | tojson)"
    else:
        hint = ""
    raise InputError(name, f"holds a {type(value).__name__} value, not text{hint}")


def _bytes_in(value: Any) -> type | None:
    """The type of the bytes ``value`` is or holds (in a list, a tuple, a dict's values), else ``None``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return type(value)
    items = (
        value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    )
    return next((kind for item in items if (kind := _bytes_in(item)) is not None), None)


def _holds(column: Any, value: Any) -> bool:
    """Whether a row's ``column`` value is ``value`` or holds it (in a list, a tuple, a dict's values)."""
    if column is value:
        return True
    if isinstance(column, Mapping):
        return any(_holds(item, value) for item in column.values())
    if isinstance(column, (list, tuple)):
        return any(_holds(item, value) for item in column)
    return False


_JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False, finalize=_printed
)
"""Every template's environment: Jinja's sandbox, which refuses unsafe attributes (``__globals__``...) and
calls that change data (``list.append``), as it does for the chat templates that models ship."""


def render_template(source: str, row: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> str:
    """``source`` rendered over a row and ``values`` (over the row's, where names meet).

    Raises:
        InputError: the template prints a row value that is not text (bytes, a dict, a list); numbers,
            bools and dates are text.

    Example:
        >>> render_template("{{ id }}. {{ question }}", {"question": "{{ 7*7 }}?", "id": 4})
        '4. {{ 7*7 }}?'
        >>> render_template("{{ question }}", {"question": b"\\xff\\x00raw"})
        Traceback (most recent call last):
        ...
        mapgen.errors.InputError: holds a bytes value, not text: decode it to str first
    """
    template = compile_template(source)
    for name in template_variables(source):  # bytes are never text, however a template turns them into it
        kind = _bytes_in(row[name]) if name in row else None
        if kind is not None:
            raise InputError(name, f"holds a {kind.__name__} value, not text: decode it to str first")
    token = _ROW.set(row)
    try:
        return template.render(**{**row, **(values or {})})
    finally:
        _ROW.reset(token)


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template | Substitution:
    """A Jinja2 template in Jinja's sandbox, compiled once per process; unknown variables are errors, not
    blanks. Render a row with :func:`render_template`, which refuses row values that are not text.

    A template that is only text and ``{{ name }}`` fields, as most task templates are, becomes a
    :class:`Substitution`, which renders the same string (from Jinja's own parse of it) ~10x faster.

    Example:
        >>> compile_template("Q: {{ input }}").render(input="Why?")
        'Q: Why?'
        >>> compile_template("{% for x in xs %}{{ x }}{% endfor %}").render(xs=[1, 2])
        '12'
    """
    tree = parse_template(source)
    pieces = Substitution.pieces_of(tree)
    return Substitution(pieces) if pieces is not None else _JINJA.from_string(tree)


def parse_template(source: str) -> jinja2.nodes.Template:
    """Jinja's parse of a template, refused when it names a ``__dunder__`` attribute (``cycler.__init__``,
    ``x['__class__']``, ``x | attr('__class__')``): what the sandbox would stop anyway, refused when the
    task is built rather than at its first row. Names only rendering shows are left to the sandbox.

    Raises:
        jinja2.exceptions.SecurityError: the template reaches for Python's internals.

    Example:
        >>> parse_template("{{ cycler.__init__.__globals__ }}")
        Traceback (most recent call last):
        ...
        jinja2.exceptions.SecurityError: the template reads '__globals__': templates render in Jinja's \
sandbox, and may not reach Python's internals
    """
    tree = _JINJA.parse(source)
    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Filter)):
        name = _attribute_read(node)
        if isinstance(name, str) and name.startswith("__"):
            raise jinja2.exceptions.SecurityError(
                f"the template reads {name!r}: templates render in Jinja's sandbox, and may not reach "
                "Python's internals"
            )
    return tree


def _attribute_read(node: jinja2.nodes.Node) -> Any:
    """The attribute or key a ``x.name``, ``x['name']`` or ``x | attr('name')`` node reads, when the template
    spells it out; ``None`` otherwise."""
    if isinstance(node, jinja2.nodes.Getattr):
        return node.attr
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const):
        return node.arg.value
    if isinstance(node, jinja2.nodes.Filter) and node.name == "attr" and node.args:
        first = node.args[0]
        return first.value if isinstance(first, jinja2.nodes.Const) else None
    return None


class Substitution:
    """A template of text and ``{{ name }}`` fields, rendered by joining: ``str`` of each value, as Jinja
    renders it without autoescaping (each value checked as Jinja's ``finalize`` checks it), and Jinja's
    ``UndefinedError`` for a name that is not given.

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
            return "".join(
                str(_printed(values[piece])) if is_name else piece for piece, is_name in self.pieces
            )
        except KeyError as missing:
            raise jinja2.UndefinedError(f"{missing.args[0]!r} is undefined") from None


@lru_cache(maxsize=256)
def template_variables(source: str) -> tuple[str, ...]:
    """The variables a template reads, sorted: a task's input columns."""
    return tuple(sorted(jinja2.meta.find_undeclared_variables(parse_template(source))))


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
    digest of its code (validators, and the values they read; the same in every process), a JSON schema
    dict by itself."""
    if is_model(model):
        return {"schema": model.model_json_schema(), "source": code_digest(model)}
    return model
