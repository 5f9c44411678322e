"""LLM backends, one per file; each is a frozen config whose engine is built lazily per process."""

from mapgen.llms.base import LLM, Completion, Request
from mapgen.llms.llamacpp import LlamaCppLLM

__all__ = ["LLM", "Completion", "LlamaCppLLM", "Request"]
