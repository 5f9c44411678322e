"""mapgen: synthetic data and AI feedback with LLMs, as batched functions for ``datasets.map``.

Example:
    >>> import datasets, mapgen
    >>> ds = datasets.Dataset.from_dict({"input": ["Write a one-line poem about tea."]})
    >>> gen = mapgen.generate(mapgen.LlamaCppLLM(max_new_tokens=32, seed=0), mapgen.TextGenerationTask())
    >>> ds = ds.map(gen, batched=True)
    >>> ds.column_names[:2]
    ['input', 'generations']
"""

from mapgen._version import OUTPUT_FORMAT_VERSION, __version__
from mapgen.fingerprint import fingerprint
from mapgen.formats import PROMPT_FORMATS, format_prompt
from mapgen.generate import GenerateFunction, generate
from mapgen.llms import LLM, Completion, InferenceEndpointsLLM, LlamaCppLLM, OpenAILLM, Request
from mapgen.map_function import MissingColumnError
from mapgen.progress import counters
from mapgen.prompt import Prompt
from mapgen.tasks import ParseError, Task, TextGenerationTask

__all__ = [
    "LLM",
    "OUTPUT_FORMAT_VERSION",
    "PROMPT_FORMATS",
    "Completion",
    "GenerateFunction",
    "InferenceEndpointsLLM",
    "LlamaCppLLM",
    "MissingColumnError",
    "OpenAILLM",
    "ParseError",
    "Prompt",
    "Request",
    "Task",
    "TextGenerationTask",
    "__version__",
    "counters",
    "fingerprint",
    "format_prompt",
    "generate",
]
