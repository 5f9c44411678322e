"""Which llama.cpp build pip made, and how mapgen keeps clear of its crash-prone paths at run time.

``pip install llama-cpp-python`` compiles llama.cpp with its defaults: native CPU code (AMX where the
compiling CPU has it) and OpenMP's thread pool. The Makefile builds without both
(``-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF``); any other build is handled here:

- AMX: llama.cpp's AMX buffer type crashes on some CPUs. Where the build has AMX code, the model is loaded
  with ``use_extra_bufts=False`` (llama.cpp's model parameter; set on the parameters llama-cpp-python
  builds when its ``Llama`` does not take it as a keyword).
- OpenMP: GNU libgomp's thread pool does not survive ``fork``: a ``num_proc`` worker forked after its
  parent loaded the model can hang in its first multi-threaded step (seen with 2 threads in both). ggml
  enters OpenMP only for more than one thread, so in such a worker the engine runs on one thread, for
  prompts too (``n_threads_batch``; each worker is one of ``num_proc`` anyway), and says so in the log.

Example:
    >>> build_features(import_llama_cpp())["AVX2"] in ("0", "1")
    True
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from mapgen.core.optional import optional_import

logger = logging.getLogger(__name__)

_PARAMS_LOCK = threading.Lock()
_openmp_threads_in: int | None = None
"""The process id that loaded an OpenMP build's engine; a forked child inherits it."""


def import_llama_cpp() -> Any:
    """``llama_cpp``, or an ``ImportError`` that names ``mapgen[llamacpp]``."""
    return optional_import("llama_cpp", "llamacpp", "LlamaCppLLM")


def build_features(llama_cpp: Any) -> dict[str, str]:
    """The CPU backend's features as llama.cpp reports them (``llama_print_system_info``), e.g.
    ``{"AVX2": "1", "OPENMP": "1", "AMX_INT8": "1", ...}``; a feature it does not list is absent."""
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    features = {}
    for item in text.replace("|", "\n").splitlines():
        name, equals, value = item.partition("=")
        if equals:
            features[name.strip().split(":")[-1].strip()] = value.strip()
    return features


def load_llama(llama_cpp: Any, *, n_threads: int, use_extra_bufts: bool | None, **options: Any) -> Any:
    """``llama_cpp.Llama(**options)`` with the thread count and buffer types that this build runs safely
    (see the module's notes); ``use_extra_bufts=None`` turns them off only for a build with AMX code."""
    global _openmp_threads_in
    features = build_features(llama_cpp)
    threads: dict[str, int] = {"n_threads": n_threads}
    if features.get("OPENMP") == "1":
        if _openmp_threads_in not in (None, os.getpid()):
            # Prompt batches run on n_threads_batch (llama-cpp-python's default: every core): both at 1,
            # ggml never enters an OpenMP region.
            threads = {"n_threads": 1, "n_threads_batch": 1}
            logger.warning(
                "llama.cpp was built with OpenMP, whose thread pool hangs in a process forked after its "
                "parent used it (num_proc): this worker runs the model on 1 thread. Build llama-cpp-python "
                "with CMAKE_ARGS='-DGGML_OPENMP=OFF' to keep %d.",
                n_threads,
            )
        else:
            _openmp_threads_in = os.getpid()
    if use_extra_bufts is None:
        use_extra_bufts = False if any(name.startswith("AMX") for name in features) else None
    if use_extra_bufts is None:
        return llama_cpp.Llama(**threads, **options)
    if "use_extra_bufts" in inspect.signature(llama_cpp.Llama.__init__).parameters:
        return llama_cpp.Llama(**threads, use_extra_bufts=use_extra_bufts, **options)
    with _model_defaults(llama_cpp, use_extra_bufts=use_extra_bufts):
        return llama_cpp.Llama(**threads, **options)


@contextlib.contextmanager
def _model_defaults(llama_cpp: Any, **fields: Any) -> Iterator[None]:
    """Set ``fields`` on the model parameters ``Llama`` starts from (``llama_model_default_params``),
    for the engines built inside; one at a time, so no other engine gets them."""
    low = llama_cpp.llama_cpp
    known = {name for name, _ in low.llama_model_params._fields_}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"this llama-cpp-python's model parameters have no {unknown}: upgrade it.")
    original = low.llama_model_default_params

    def defaults() -> Any:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    with _PARAMS_LOCK:
        low.llama_model_default_params = defaults
        try:
            yield
        finally:
            low.llama_model_default_params = original
