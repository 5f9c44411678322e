"""Hugging Face ``transformers``: ``model.generate`` on batched, left-padded prompts, on a GPU or the CPU."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mapgen.core.config import added, knob
from mapgen.core.optional import optional_import, require_installed
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.llms._sampling import request_seed
from mapgen.llms._weights import weights_digest
from mapgen.llms.base import LocalLLM, SampleGroup
from mapgen.llms.formats import PromptFormat, format_prompt, render_chat_template, resolve_format


@dataclass(frozen=True)
class TransformersLLM(LocalLLM):
    """A causal language model run in-process by ``transformers`` (``pip install 'mapgen[transformers]'``).

    ``model`` is a hub id or a local folder; ``gguf_file`` names a GGUF file inside it (``transformers``
    dequantizes it; needs the ``gguf`` package). The model's chat template formats prompts unless
    ``prompt_format`` names a raw format. Each batch goes to ``model.generate`` in sub-batches of
    ``batch_size`` prompts, left-padded and sorted by length. Each request samples with a random
    generator of its own, seeded ``seed + i`` for generation ``i`` (or from the OS without a ``seed``,
    :mod:`mapgen.llms._sampling`), so a seeded answer does not depend on the batch it came in; only float
    noise from padding could move a draw that falls on a token boundary. A local folder is identified by
    the content hash of its weight, config and tokenizer files (:mod:`mapgen.llms._weights`); a hub id
    by itself and ``revision``, with nothing downloaded.
    Under ``ds.map(fn, num_proc=N, with_rank=True)`` rank ``r`` runs on GPU ``r``
    (:mod:`mapgen.llms.devices`); ``device`` (a knob) defaults to ``"cuda"`` when a GPU is visible, else
    ``"cpu"``.

    Example:
        >>> import mapgen
        >>> from mapgen.llms.llamacpp import embedded_model_path
        >>> path = embedded_model_path()
        >>> llm = mapgen.TransformersLLM(str(path.parent), gguf_file=path.name, temperature=0.0,
        ...                              max_new_tokens=8, device="cpu", n_threads=1)
        >>> llm.model_name
        'SmolLM2-135M-Instruct.Q4_1'
    """

    model: str
    _: dataclasses.KW_ONLY
    gguf_file: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    prompt_format: PromptFormat | None = None
    trust_remote_code: bool = False
    chat_template_kwargs: Mapping[str, Any] = added(default_factory=dict)
    """More variables for the chat template (``{"enable_thinking": False}`` for Qwen3), passed to
    ``apply_chat_template``; they change the prompt, so they enter the fingerprint."""
    device: str | None = knob(None)
    batch_size: int = knob(64)
    n_threads: int | None = knob(None)

    store_name: ClassVar[str] = "mapgen.llms.transformers.TransformersLLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    url_fields: ClassVar[tuple[str, ...]] = ("model",)
    """Not a URL, but one given here with credentials would show them in reprs and cards: refused."""
    credentials_hint: ClassVar[str] = (
        "model is a hub id or a folder: for a gated or private model, log in (hf auth login) or set HF_TOKEN."
    )
    supports_schema: ClassVar[bool] = False
    unsupported_sampling: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("presence_penalty", "frequency_penalty"),
        "transformers' generate has no OpenAI-style additive penalties; use repetition_penalty "
        "(or generation_kwargs={'no_repeat_ngram_size': n}).",
    )
    reserved_generation_kwargs: ClassVar[tuple[str, ...]] = (
        "max_new_tokens",
        "do_sample",
        "temperature",
        "top_p",
        "logits_processor",
        "pad_token_id",
        "tokenizer",
        "num_return_sequences",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model must be a hub id or a folder, got {self.model!r}.")
        if isinstance(self.prompt_format, str) and self.prompt_format != "openai":
            resolve_format(self.prompt_format)
        if self.chat_template_kwargs and self.prompt_format not in (None, "openai"):
            raise ValueError(
                "chat_template_kwargs needs the chat template: it is unused with a prompt_format."
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}.")

    @property
    def model_name(self) -> str:
        if self.gguf_file:
            return self.gguf_file.rsplit("/", 1)[-1].removesuffix(".gguf")
        return self.model.rstrip("/").rsplit("/", 1)[-1] if "/" in self.model else self.model

    @property
    def uses_gpu(self) -> bool:
        return self.device is None or not str(self.device).startswith("cpu")

    def fingerprint(self) -> dict[str, Any]:
        state = super().fingerprint()
        folder = Path(self.model)
        if folder.is_dir():  # a local folder: its name and its files' content, not where it lies
            digest = weights_digest(folder, gguf_file=self.gguf_file, code=self.trust_remote_code)
            state["model"] = f"{folder.resolve().name}:sha256:{digest}"
        return state

    def preflight(self) -> None:
        require_installed(["torch", "transformers"], "transformers", "TransformersLLM")

    def load_engine(self, rank: int | None) -> Any:
        torch = optional_import("torch", "transformers", "TransformersLLM")
        transformers = optional_import("transformers", "transformers", "TransformersLLM")
        AutoModelForCausalLM, AutoTokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer

        _check_generation_kwargs(self.generation_kwargs)  # before minutes of loading
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        options: dict[str, Any] = {"revision": self.revision, "trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            options["gguf_file"] = self.gguf_file
        tokenizer = AutoTokenizer.from_pretrained(self.model, **options)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.model, dtype=self.dtype, **options)
        model.to(device).eval()
        return _Engine(model, tokenizer, device)

    def _calls(self, engine: _Engine, requests: Sequence[Request]) -> Iterator[tuple[list[SampleGroup], Any]]:
        """Sub-batches of ``batch_size`` requests, by prompt length (less padding), each with its texts
        and sampling options; an oversized one fails only its own requests."""
        texts = [self.render(engine.tokenizer, request) for request in requests]
        seeds = [request_seed(self.seed, request.seed_index) for request in requests]
        positions = sorted(range(len(requests)), key=lambda i: len(texts[i]))
        for start in range(0, len(positions), self.batch_size):
            chunk = positions[start : start + self.batch_size]
            prepared = [texts[i] for i in chunk], self._sampling(engine, [seeds[i] for i in chunk])
            yield [[(i, requests[i])] for i in chunk], prepared

    def _generate(
        self, engine: _Engine, groups: list[SampleGroup], prepared: tuple[list[str], dict[str, Any]]
    ) -> list[list[Completion]]:
        texts, sampling = prepared
        return [[answer] for answer in engine.generate(texts, sampling, self._raw, self.stop or ())]

    def token_counter(self) -> Callable[[Prompt], int] | None:
        """Counts a prompt's input tokens with the model's tokenizer, as :meth:`render` writes it; ``None``
        when the tokenizer is not in local files (nothing is downloaded) or ``transformers`` is missing."""
        try:
            from transformers import AutoTokenizer

            options: dict[str, Any] = {"revision": self.revision, "trust_remote_code": self.trust_remote_code}
            if self.gguf_file:
                options["gguf_file"] = self.gguf_file
            tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True, **options)
        except Exception:
            return None

        def count(prompt: Prompt) -> int:
            text = self.render(tokenizer, Request(prompt))
            return len(tokenizer(text, add_special_tokens=self._raw)["input_ids"])

        return count

    @property
    def _raw(self) -> bool:
        return self.prompt_format not in (None, "openai")

    def render(self, tokenizer: Any, request: Request) -> str:
        """The prompt as text: the chat template with an open assistant turn (or, for a prompt that
        continues its last message, cut where that message ends:
        :func:`~mapgen.llms.formats.render_chat_template`, which works for an empty message too), or the raw
        format."""
        if self._raw:
            assert self.prompt_format is not None  # (_raw: a named format or a function)
            return format_prompt(request.prompt, self.prompt_format)

        def template(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
            return tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=add_generation_prompt,
                tokenize=False,
                **self.chat_template_kwargs,
            )

        return render_chat_template(template, request.prompt)

    def generation_prompt(self, engine: _Engine) -> str | None:
        return None if self._raw else self.render(engine.tokenizer, Request(Prompt("x")))

    def _sampling(self, engine: _Engine, seeds: list[int]) -> dict[str, Any]:
        """``generate``'s options: greedy at temperature 0, else one seeded sampler per row."""
        options: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        if self.repetition_penalty is not None:  # a logits processor of generate's own, before ours
            options["repetition_penalty"] = self.repetition_penalty
        if self.stop is not None:
            options.update(stop_strings=list(self.stop), tokenizer=engine.tokenizer)
        options.update(self.generation_kwargs)
        if self.temperature == 0:
            return options
        from transformers import LogitsProcessorList

        # generate runs greedy over a one-hot that our sampler writes: its own sampling would draw the
        # whole batch from one generator, so a row's answer would depend on its neighbours.
        top_k = (
            self.top_k if self.top_k is not None else getattr(engine.model.generation_config, "top_k", None)
        )
        sampler = _RowSampler(
            seeds,
            steps=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=top_k,
            min_p=self.min_p,
        )
        # The model's own sampling defaults would only warn under greedy decoding: unset them.
        options.update(temperature=None, top_p=None, top_k=None)
        return {**options, "logits_processor": LogitsProcessorList([sampler])}


class _RowSampler:
    """A logits processor that samples each row from uniforms drawn by a ``torch.Generator`` of its own,
    seeded per request, and leaves only the drawn token: a row's draws depend on its seed alone, never
    on the rows batched with it. Temperature, then top-k (the config's, else the model's default, as
    ``generate`` samples), then top-p, then min-p, by ``transformers``' own warpers; each draw is an
    inverse-CDF lookup of one uniform.
    """

    def __init__(
        self,
        seeds: list[int],
        *,
        steps: int,
        temperature: float,
        top_p: float,
        top_k: int | None,
        min_p: float | None = None,
    ) -> None:
        import torch
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            MinPLogitsWarper,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        # Drawn up front on the CPU: the same draws on any device, and one copy to it per sub-batch.
        self.uniforms = torch.stack(
            [torch.rand(steps, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
        self.step = 0
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        if min_p:
            self.warpers.append(MinPLogitsWarper(min_p))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        self.uniforms = self.uniforms.to(cdf.device)
        uniforms = self.uniforms[:, self.step : self.step + 1]
        self.step += 1
        # The first token whose cumulative probability passes u: never one of probability 0.
        chosen = torch.searchsorted(cdf, uniforms * cdf[:, -1:], right=True)
        chosen = chosen.clamp(max=scores.shape[-1] - 1)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, chosen, 0.0)


class _Engine:
    """A loaded model and tokenizer on their device."""

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    def generate(
        self, texts: list[str], sampling: dict[str, Any], raw: bool, stop: Sequence[str] = ()
    ) -> list[Completion]:
        import torch

        tok = self.tokenizer
        # A chat template writes its own special tokens; a raw format gets the tokenizer's usual ones.
        inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=raw).to(self.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **sampling, pad_token_id=tok.pad_token_id)
        new = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        stops = _stop_ids(self.model, tok)
        completions = []
        for tokens, used in zip(new, prompt_tokens, strict=True):
            end = next((k for k, t in enumerate(tokens) if t in stops), None)
            kept = tokens if end is None else tokens[:end]
            text = tok.decode(kept, skip_special_tokens=True)
            # generate stops after the token that completes a stop string and keeps it: the answer ends
            # before it, as on every other backend.
            cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)
            completions.append(
                Completion(
                    text=text if cut is None else text[:cut],
                    finish_reason="length" if end is None and cut is None else "stop",
                    prompt_tokens=int(used),
                    completion_tokens=len(kept) + (0 if end is None else 1),
                )
            )
        return completions


def _check_generation_kwargs(options: Mapping[str, Any]) -> None:
    """Raise for ``generation_kwargs`` that are not ``GenerationConfig`` options (``generate`` would
    refuse them in every batch)."""
    if not options:
        return
    from transformers import GenerationConfig

    known = GenerationConfig().to_dict()
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        raise ValueError(f"generation_kwargs {unknown} are not transformers GenerationConfig options.")


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids
