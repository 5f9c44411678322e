"""mapgen: synthetic data and AI feedback with LLMs, as batched functions for ``datasets.map``.

Example:
    >>> import datasets, mapgen
    >>> ds = datasets.Dataset.from_dict({"input": ["Write a one-line poem about tea."]})
    >>> gen = mapgen.generate(mapgen.LlamaCppLLM(max_new_tokens=32, seed=0), mapgen.TextGenerationTask())
    >>> ds = ds.map(gen, batched=True)
    >>> ds.column_names[:2]
    ['input', 'generations']
"""

from mapgen import errors, parsing, schema
from mapgen._version import OUTPUT_FORMAT_VERSION, __version__
from mapgen.card import dataset_card
from mapgen.costs import Price, price_for
from mapgen.errors import BatchPending, FatalAPIError, StoreError, error_kind, error_kinds
from mapgen.estimate import Estimate, estimate
from mapgen.explain import explain_cache
from mapgen.fingerprint import fingerprint
from mapgen.formats import PROMPT_FORMATS, format_prompt
from mapgen.generate import GenerateFunction, generate
from mapgen.hub import push_to_hub
from mapgen.integrations.argilla import push_to_argilla, to_argilla
from mapgen.interrupts import Interrupted
from mapgen.label import LabelFunction, label
from mapgen.llms import (
    LLM,
    Completion,
    InferenceEndpointsLLM,
    LlamaCppLLM,
    LLMPool,
    OpenAILLM,
    Request,
    TransformersLLM,
    vLLM,
)
from mapgen.llms.anthropic import AnthropicLLM
from mapgen.map_function import CacheWarning, MissingColumnError
from mapgen.pipeline import PipelineFunction, pipeline
from mapgen.preference import to_preference
from mapgen.progress import counters
from mapgen.prompt import Prompt
from mapgen.review import ReviewLayout
from mapgen.store import StoreWarning
from mapgen.tasks import (
    ChatGenerationTask,
    ComplexityScorerTask,
    ConversationTask,
    EvolComplexityTask,
    EvolInstructTask,
    EvolQualityTask,
    InputError,
    InvalidOutput,
    JudgeLMTask,
    LabellingTask,
    MagpieTask,
    ParseError,
    PrometheusTask,
    QualityScorerTask,
    RoundsTask,
    SelfInstructTask,
    StructuredTask,
    Task,
    TextGenerationTask,
    UltraCMTask,
    UltraFeedbackTask,
    UltraJudgeTask,
)
from mapgen.totals import Usage, usage

__all__ = [
    "LLM",
    "OUTPUT_FORMAT_VERSION",
    "PROMPT_FORMATS",
    "AnthropicLLM",
    "BatchPending",
    "CacheWarning",
    "ChatGenerationTask",
    "Completion",
    "ComplexityScorerTask",
    "ConversationTask",
    "Estimate",
    "EvolComplexityTask",
    "EvolInstructTask",
    "EvolQualityTask",
    "FatalAPIError",
    "GenerateFunction",
    "InferenceEndpointsLLM",
    "InputError",
    "Interrupted",
    "InvalidOutput",
    "JudgeLMTask",
    "LLMPool",
    "LabelFunction",
    "LabellingTask",
    "LlamaCppLLM",
    "MagpieTask",
    "MissingColumnError",
    "OpenAILLM",
    "ParseError",
    "PipelineFunction",
    "Price",
    "PrometheusTask",
    "Prompt",
    "QualityScorerTask",
    "Request",
    "ReviewLayout",
    "RoundsTask",
    "SelfInstructTask",
    "StoreError",
    "StoreWarning",
    "StructuredTask",
    "Task",
    "TextGenerationTask",
    "TransformersLLM",
    "UltraCMTask",
    "UltraFeedbackTask",
    "UltraJudgeTask",
    "Usage",
    "__version__",
    "counters",
    "dataset_card",
    "error_kind",
    "error_kinds",
    "errors",
    "estimate",
    "explain_cache",
    "fingerprint",
    "format_prompt",
    "generate",
    "label",
    "parsing",
    "pipeline",
    "price_for",
    "push_to_argilla",
    "push_to_hub",
    "schema",
    "to_argilla",
    "to_preference",
    "usage",
    "vLLM",
]


def __getattr__(name: str):
    # mapgen.ray: the Ray Data helpers, imported on first use (importing mapgen never imports ray).
    if name == "ray":
        import importlib

        return importlib.import_module("mapgen.integrations.ray")
    raise AttributeError(f"module 'mapgen' has no attribute {name!r}")
