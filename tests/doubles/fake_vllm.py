"""TEST DOUBLE of the ``vllm`` package (no GPU here, and vLLM's wheels are gigabytes).

It imitates the part of vLLM's public offline API that :class:`mapgen.vLLM` uses: ``vllm.LLM(model=...,
tensor_parallel_size=..., ...)`` with ``.chat(conversations, sampling_params, use_tqdm=..., chat_template=...,
add_generation_prompt=..., continue_final_message=...)`` and ``.generate(prompts, sampling_params,
use_tqdm=...)``, ``vllm.SamplingParams`` and ``vllm.sampling_params.StructuredOutputsParams`` (or, with
``install(old_api=True)``, the ``GuidedDecodingParams`` of vLLM before 0.11). It generates nothing: each
answer is a string built from the prompt, the seed and the sample's number, so tests can check which answer
went where.

Every engine built and every call is appended, as a JSON line with the process id and the
``CUDA_VISIBLE_DEVICES`` seen at that moment, to the file named by ``$FAKE_VLLM_LOG``, so tests can
count engines and calls across ``num_proc`` workers.

Use: ``install(monkeypatch)`` puts it in ``sys.modules`` as ``vllm`` and ``vllm.sampling_params``.
"""

from __future__ import annotations

import json
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

MAX_MODEL_LEN = 4096
"""Prompts longer than this (in characters, for the double) are refused, as vLLM refuses long prompts."""


def log(event: str, **data: Any) -> None:
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        record = {"event": event, "pid": os.getpid(), "visible": visible, **data}
        with open(path, "a") as file:
            file.write(json.dumps(record, default=repr) + "\n")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path) as file:
        return [json.loads(line) for line in file]


@dataclass
class StructuredOutputsParams:
    json: Any = None


@dataclass
class GuidedDecodingParams:
    json: Any = None


@dataclass
class SamplingParams:
    # Fields, names and defaults as vLLM's SamplingParams (vllm/sampling_params.py); an unknown keyword
    # is a TypeError there too.
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    bad_words: list[str] | None = None
    structured_outputs: StructuredOutputsParams | None = None
    guided_decoding: GuidedDecodingParams | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    """The double of ``vllm.LLM``."""

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options
        log("engine", model=model, options=options)

    def chat(
        self,
        messages: list[list[dict[str, str]]],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        **_: Any,
    ) -> list[RequestOutput]:
        if add_generation_prompt and continue_final_message:  # as transformers' apply_chat_template refuses
            raise ValueError("continue_final_message and add_generation_prompt are not compatible.")
        params = _per_prompt(sampling_params, len(messages))
        log("chat", prompts=len(messages), params=[vars(p) for p in params], chat_template=chat_template)
        texts = [
            _render(conversation, chat_template, add_generation_prompt, continue_final_message)
            for conversation in messages
        ]
        return [self._answer(text, p) for text, p in zip(texts, params, strict=True)]

    def generate(
        self,
        prompts: list[str],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        **_: Any,
    ) -> list[RequestOutput]:
        params = _per_prompt(sampling_params, len(prompts))
        log("generate", prompts=prompts, params=[vars(p) for p in params])
        return [self._answer(text, p) for text, p in zip(prompts, params, strict=True)]

    def _answer(self, prompt: str, params: SamplingParams) -> RequestOutput:
        if len(prompt) > MAX_MODEL_LEN:
            raise ValueError(f"prompt of {len(prompt)} characters is longer than max_model_len")
        constrained = params.structured_outputs or params.guided_decoding
        outputs = []
        for k in range(params.n):
            if constrained is not None:
                text = json.dumps({"constrained": True, "sample": k})
            else:
                text = f"[{self.model}] {prompt[-40:]} | seed={params.seed} sample={k}"
            outputs.append(CompletionOutput(k, text, list(range(len(text.split()))), "stop"))
        return RequestOutput(prompt, list(range(len(prompt.split()))), outputs)


def _per_prompt(params: SamplingParams | list[SamplingParams] | None, count: int) -> list[SamplingParams]:
    if params is None:
        return [SamplingParams()] * count
    if isinstance(params, list):
        assert len(params) == count, "one SamplingParams per prompt"
        return params
    return [params] * count


def _render(
    conversation: list[dict[str, str]],
    chat_template: str | None,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> str:
    marker = "custom" if chat_template else "template"
    text = "".join(f"<{marker}:{m['role']}>{m['content']}" for m in conversation)
    # A continued final message is left open: nothing follows its text.
    return text + (f"<{marker}:assistant>" if add_generation_prompt else "")


def install(monkeypatch: Any, *, old_api: bool = False) -> types.ModuleType:
    """Make ``import vllm`` give this double for the rest of the test."""
    package = types.ModuleType("vllm")
    package.__doc__ = "TEST DOUBLE of vllm (tests/doubles/fake_vllm.py)"
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = SamplingParams
    if old_api:
        sampling.GuidedDecodingParams = GuidedDecodingParams
    else:
        sampling.StructuredOutputsParams = StructuredOutputsParams
    # A CUDA platform: the double stands in for vLLM on GPUs, which this machine cannot run.
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False, is_cuda=lambda: True)
    package.LLM = LLM
    package.SamplingParams = SamplingParams
    package.sampling_params = sampling
    package.platforms = platforms
    monkeypatch.setitem(sys.modules, "vllm", package)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return package
