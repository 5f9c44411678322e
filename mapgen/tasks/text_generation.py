"""Plain text generation: one answer per prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.config import added
from mapgen.core.review import ReviewLayout
from mapgen.tasks.base import Task, template_variables


@dataclass(frozen=True, kw_only=True)
class TextGenerationTask(Task):
    """Answer the prompt built from a row: by default the row's ``input`` column, as is.

    ``template`` is a Jinja2 template over the row's columns; the columns it names are the task's inputs.
    ``system_prompt`` is sent as the system message (``None`` leaves the model's own default).
    ``image_column`` names a column of images sent with the prompt, to vision models (see
    :mod:`mapgen.core.images` for what it may hold: ``datasets``' ``Image`` feature, PIL images, bytes, paths,
    URLs, or lists of them).

    Example:
        >>> task = TextGenerationTask(template="Write a haiku about {{ topic }}.", system_prompt="Be brief.")
        >>> task.inputs
        ('topic',)
        >>> task.prompt({"topic": "rain"})
        Prompt(user='Write a haiku about rain.', system='Be brief.')
        >>> TextGenerationTask(template="Describe the chart.", image_column="image").inputs
        ('image',)
    """

    system_prompt: str | None = None
    template: str = "{{ input }}"
    image_column: str | None = added(None)

    outputs: ClassVar[tuple[str, ...]] = ("generations",)

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not (self.template_inputs() or self.image_column):
            raise ValueError(
                f"template must be a Jinja2 string that reads at least one column, got {self.template!r}."
            )
        if self.image_column is not None and (
            not isinstance(self.image_column, str) or not self.image_column
        ):
            raise TypeError(f"image_column must be a column name, got {self.image_column!r}.")

    def template_inputs(self) -> tuple[str, ...]:
        return template_variables(self.template)

    @property
    def inputs(self) -> tuple[str, ...]:
        images = (
            (self.image_column,)
            if self.image_column and self.image_column not in self.template_inputs()
            else ()
        )
        return (*self.template_inputs(), *images)

    def parse(self, text: str) -> dict[str, Any]:
        return {"generations": text}

    def review(self) -> ReviewLayout:
        """People rate each generation of a row for overall quality, 1 to 5."""
        return ReviewLayout()
