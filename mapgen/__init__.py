"""mapgen: synthetic data and AI feedback with LLMs, as batched functions for ``datasets.map``.

Example:
    >>> import datasets, mapgen
    >>> ds = datasets.Dataset.from_dict({"input": ["Write a one-line poem about tea."]})
    >>> gen = mapgen.generate(mapgen.LlamaCppLLM(max_new_tokens=32, seed=0), mapgen.TextGenerationTask())
    >>> ds = ds.map(gen, batched=True)
    >>> ds.column_names[:2]
    ['input', 'generations']
"""

import logging
import sys

from mapgen import errors
from mapgen._version import OUTPUT_FORMAT_VERSION, __version__
from mapgen.clean import DecontaminationReport, DedupReport, decontaminate, dedup, verify
from mapgen.core import schema
from mapgen.core.fingerprint import fingerprint
from mapgen.core.prices import Price, price_for
from mapgen.core.prompt import Prompt
from mapgen.core.review import ReviewLayout
from mapgen.errors import (
    BatchPending,
    CacheWarning,
    FatalAPIError,
    InputError,
    Interrupted,
    InvalidOutput,
    MapgenError,
    MapgenWarning,
    MissingColumnError,
    ParseError,
    SchemaWarning,
    StoreError,
    StoreWarning,
    error_kind,
    error_kinds,
)
from mapgen.generate import GenerateFunction, generate
from mapgen.integrations.argilla import push_to_argilla, to_argilla
from mapgen.integrations.argilla_pull import pull_from_argilla
from mapgen.judging import JudgeCheck, judge_check
from mapgen.label import JuryLabelFunction, LabelFunction, label
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
from mapgen.llms.formats import PROMPT_FORMATS, format_prompt
from mapgen.llms.jury import Jury
from mapgen.pipeline import PipelineFunction, pipeline
from mapgen.preference import to_preference
from mapgen.report.agreement import Agreement, agreement
from mapgen.report.card import dataset_card
from mapgen.report.estimate import Estimate, estimate
from mapgen.report.explain import explain_cache
from mapgen.report.hub import push_to_hub
from mapgen.report.shapes import flatten, to_sft
from mapgen.report.summary import Summary, summary
from mapgen.report.totals import Usage, usage
from mapgen.runtime.progress import counters
from mapgen.tasks import (
    ChatGenerationTask,
    ComplexityScorerTask,
    ConversationTask,
    EvolComplexityTask,
    EvolInstructTask,
    EvolQualityTask,
    JudgeLMTask,
    LabellingTask,
    MagpieTask,
    PairwiseJudgeTask,
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
    parsing,
)

__all__ = [
    "LLM",
    "OUTPUT_FORMAT_VERSION",
    "PROMPT_FORMATS",
    "Agreement",
    "AnthropicLLM",
    "BatchPending",
    "CacheWarning",
    "ChatGenerationTask",
    "Completion",
    "ComplexityScorerTask",
    "ConversationTask",
    "DecontaminationReport",
    "DedupReport",
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
    "JudgeCheck",
    "JudgeLMTask",
    "Jury",
    "JuryLabelFunction",
    "LLMPool",
    "LabelFunction",
    "LabellingTask",
    "LlamaCppLLM",
    "MagpieTask",
    "MapgenError",
    "MapgenWarning",
    "MissingColumnError",
    "OpenAILLM",
    "PairwiseJudgeTask",
    "ParseError",
    "PipelineFunction",
    "Price",
    "PrometheusTask",
    "Prompt",
    "QualityScorerTask",
    "Request",
    "ReviewLayout",
    "RoundsTask",
    "SchemaWarning",
    "SelfInstructTask",
    "StoreError",
    "StoreWarning",
    "StructuredTask",
    "Summary",
    "Task",
    "TextGenerationTask",
    "TransformersLLM",
    "UltraCMTask",
    "UltraFeedbackTask",
    "UltraJudgeTask",
    "Usage",
    "__version__",
    "agreement",
    "counters",
    "dataset_card",
    "decontaminate",
    "dedup",
    "error_kind",
    "error_kinds",
    "errors",
    "estimate",
    "explain_cache",
    "fingerprint",
    "flatten",
    "format_prompt",
    "generate",
    "judge_check",
    "label",
    "parsing",
    "pipeline",
    "price_for",
    "pull_from_argilla",
    "push_to_argilla",
    "push_to_hub",
    "schema",
    "summary",
    "to_argilla",
    "to_preference",
    "to_sft",
    "usage",
    "vLLM",
    "verify",
]


# Silent by default, as a library should be: retries, fallbacks, store claims and batch jobs are logged on
# "mapgen" (and its "mapgen.<module>" children) for an application that configures logging to show.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# The public modules' import paths of earlier releases (`from mapgen.parsing import parse_model`), kept
# without files of their own at the top: each is the module of its layer.
sys.modules.setdefault(f"{__name__}.parsing", parsing)
sys.modules.setdefault(f"{__name__}.schema", schema)


def __getattr__(name: str):
    # mapgen.ray: the Ray Data helpers, imported on first use (importing mapgen never imports ray).
    if name == "ray":
        import importlib

        return importlib.import_module("mapgen.integrations.ray")
    raise AttributeError(f"module 'mapgen' has no attribute {name!r}")
