"""Tasks, one family per file: each renders a prompt from a row and parses the answer."""

from mapgen.tasks.base import ParseError, Task
from mapgen.tasks.text_generation import TextGenerationTask

__all__ = ["ParseError", "Task", "TextGenerationTask"]
