"""LLM backends, one per file; each is a frozen config whose engine is built lazily per process."""

from mapgen.core.request import Completion, Request
from mapgen.llms.anthropic import AnthropicLLM
from mapgen.llms.base import LLM, LocalLLM
from mapgen.llms.inference_endpoints import InferenceEndpointsLLM
from mapgen.llms.llamacpp import LlamaCppLLM
from mapgen.llms.openai import OpenAILLM
from mapgen.llms.pool import LLMPool
from mapgen.llms.transformers import TransformersLLM
from mapgen.llms.vllm import vLLM

__all__ = [
    "LLM",
    "AnthropicLLM",
    "Completion",
    "InferenceEndpointsLLM",
    "LLMPool",
    "LlamaCppLLM",
    "LocalLLM",
    "OpenAILLM",
    "Request",
    "TransformersLLM",
    "vLLM",
]
