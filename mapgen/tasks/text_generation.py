"""Plain text generation: one answer per prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.review import ReviewLayout
from mapgen.tasks.base import Task, template_variables


@dataclass(frozen=True, kw_only=True)
class TextGenerationTask(Task):
    """Answer the prompt built from a row: by default the row's ``input`` column, as is.

    ``template`` is a Jinja2 template over the row's columns; the columns it names are the task's inputs.
    ``system_prompt`` is sent as the system message (``None`` leaves the model's own default).

    Example:
        >>> task = TextGenerationTask(template="Write a haiku about {{ topic }}.", system_prompt="Be brief.")
        >>> task.inputs
        ('topic',)
        >>> task.prompt({"topic": "rain"})
        Prompt(user='Write a haiku about rain.', system='Be brief.')
    """

    system_prompt: str | None = None
    template: str = "{{ input }}"

    outputs: ClassVar[tuple[str, ...]] = ("generations",)

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not self.template_inputs():
            raise ValueError(
                f"template must be a Jinja2 string that reads at least one column, got {self.template!r}."
            )

    def template_inputs(self) -> tuple[str, ...]:
        return template_variables(self.template)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.template_inputs()

    def parse(self, text: str) -> dict[str, Any]:
        return {"generations": text}

    def review(self) -> ReviewLayout:
        """People rate each generation of a row for overall quality, 1 to 5."""
        return ReviewLayout()
