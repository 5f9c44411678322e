"""Tasks, one family per file: each renders a prompt from a row and parses the answer."""

from mapgen.tasks.base import InputError, InvalidOutput, ParseError, Task
from mapgen.tasks.chat import ChatGenerationTask
from mapgen.tasks.conversation import ConversationTask
from mapgen.tasks.critique import PrometheusTask, UltraCMTask
from mapgen.tasks.evol import EvolComplexityTask, EvolInstructTask, EvolQualityTask
from mapgen.tasks.judgelm import JudgeLMTask
from mapgen.tasks.labelling import LabellingTask
from mapgen.tasks.magpie import MagpieTask
from mapgen.tasks.pairwise import PairwiseJudgeTask
from mapgen.tasks.rounds import RoundsTask
from mapgen.tasks.scorers import ComplexityScorerTask, QualityScorerTask
from mapgen.tasks.self_instruct import SelfInstructTask
from mapgen.tasks.structured import StructuredTask
from mapgen.tasks.text_generation import TextGenerationTask
from mapgen.tasks.ultrafeedback import UltraFeedbackTask
from mapgen.tasks.ultrajudge import UltraJudgeTask

__all__ = [
    "ChatGenerationTask",
    "ComplexityScorerTask",
    "ConversationTask",
    "EvolComplexityTask",
    "EvolInstructTask",
    "EvolQualityTask",
    "InputError",
    "InvalidOutput",
    "JudgeLMTask",
    "LabellingTask",
    "MagpieTask",
    "PairwiseJudgeTask",
    "ParseError",
    "PrometheusTask",
    "QualityScorerTask",
    "RoundsTask",
    "SelfInstructTask",
    "StructuredTask",
    "Task",
    "TextGenerationTask",
    "UltraCMTask",
    "UltraFeedbackTask",
    "UltraJudgeTask",
]
