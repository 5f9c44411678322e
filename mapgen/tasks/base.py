"""The task contract: which columns a task reads, the prompt it renders, how it parses an answer.

Writing your own task is the same exercise as the built-in ones: a frozen dataclass with ``inputs``,
``outputs``, :meth:`Task.prompt` and :meth:`Task.parse` (and, optionally, a JSON ``schema`` for its
answer). Parse failures are data: raise :class:`ParseError` (or any ``ValueError``) and the row gets
``None`` with the reason in its error column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
import jinja2.meta
import pyarrow as pa

from mapgen.config import dataclass_fingerprint, source_digest
from mapgen.prompt import Image, Prompt
from mapgen.review import ReviewLayout, default_review


class ParseError(ValueError):
    """An answer that does not have the shape the task asked for."""


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
        ...     outputs = ("generations",)
        ...     @property
        ...     def inputs(self): return ("text",)
        ...     def prompt(self, row): return Prompt(f"Translate to French: {row['text']}")
        ...     def parse(self, text): return {"generations": text.strip()}
        >>> Translate().prompt({"text": "cat"}).user
        'Translate to French: cat'
    """

    outputs: ClassVar[tuple[str, ...] | Mapping[str, pa.DataType]] = ()
    """Columns this task's :meth:`parse` fills, one value per generation: names (string columns), or
    names mapped to Arrow types."""

    schema: ClassVar[dict[str, Any] | None] = None
    """JSON schema of an answer; backends that can constrain output use it, so answers parse."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Columns a row must have for :meth:`prompt`."""
        raise NotImplementedError

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        """The prompt for one row (a mapping from input names to values).

        By default the task's ``template`` field (Jinja2 over the row's columns), sent with its
        ``system_prompt`` field if it has one and the row's :meth:`images`; override it for anything else.
        """
        template = getattr(self, "template", None)
        if not isinstance(template, str):
            raise NotImplementedError(f"{type(self).__name__} needs a `template` field or a prompt() method.")
        user = compile_template(template).render(**row)
        return Prompt(user, system=getattr(self, "system_prompt", None), images=self.images(row))

    def images(self, row: Mapping[str, Any]) -> tuple[Image, ...]:
        """The images sent with a row's prompt: those of the row's ``image_column`` when the task has that
        field set (see :mod:`mapgen.images` for what a column may hold), else none.

        Raises:
            mapgen.images.ImageError: the column's value is no image; the row fails with an ``input`` error.
        """
        column = getattr(self, "image_column", None)
        if column is None:
            return ()
        from mapgen.images import load_images

        return load_images(row[column])

    @property
    def sends_images(self) -> bool:
        """Whether prompts carry images: map functions refuse backends that cannot send them."""
        return getattr(self, "image_column", None) is not None

    def parse(self, text: str) -> dict[str, Any]:
        """The output columns' values for one answer; raise :class:`ParseError` when it cannot."""
        raise NotImplementedError

    def review(self) -> ReviewLayout:
        """How people review this task's data (:class:`~mapgen.review.ReviewLayout`: the rubric, which
        outputs are suggestions, one record per row or per generation); exporters such as
        :func:`mapgen.push_to_argilla` read only this. By default it is derived from :attr:`inputs` and
        :attr:`outputs` (:func:`~mapgen.review.default_review`); override it to say more."""
        return default_review(self)

    def output_types(self) -> dict[str, pa.DataType]:
        """:attr:`outputs` as a mapping from column name to Arrow type."""
        if isinstance(self.outputs, Mapping):
            return dict(self.outputs)
        return dict.fromkeys(self.outputs, pa.string())

    def fingerprint(self) -> dict[str, Any]:
        """Fields, plus a digest of the task class's source: editing a template or a parser
        changes what a task writes, so it must change the cache key too."""
        return {**dataclass_fingerprint(self), "source": source_digest(type(self))}


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    """A Jinja2 template, compiled once per process; unknown variables are errors, not blanks."""
    return _JINJA.from_string(source)


@lru_cache(maxsize=256)
def template_variables(source: str) -> tuple[str, ...]:
    """The variables a template reads, sorted: a task's input columns."""
    return tuple(sorted(jinja2.meta.find_undeclared_variables(_JINJA.parse(source))))
