"""Tokens/s of ``generate(LlamaCppLLM(), ...)`` in ``datasets.map`` against ``llama_cpp.Llama`` itself.

Both run the embedded model greedily on the same prompts with the same settings (one thread, same
``max_tokens``), so they generate the same tokens; the ratio is mapgen's overhead (datasets' map, prompt
rendering, columns). The store is off, so every answer is really generated. Each side runs ``--repeat``
times, alternating, and the best of each is kept.

    .venv/bin/python benchmarks/bench_llamacpp.py --rows 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import time

import datasets

import mapgen
from mapgen.llms.llamacpp import embedded_model_path

PROMPTS = [
    "Give three tips for staying healthy.",
    "Explain what a hash table is.",
    "Write a short story about a lighthouse keeper.",
    "What are the causes of inflation?",
]


def direct(prompts: list[str], max_new_tokens: int, n_threads: int) -> tuple[int, float]:
    from llama_cpp import Llama

    llm = Llama(str(embedded_model_path()), n_ctx=4096, n_threads=n_threads, verbose=False)
    tokens, start = 0, time.perf_counter()
    for prompt in prompts:
        llm.reset()
        answer = llm.create_chat_completion(
            [{"role": "user", "content": prompt}], temperature=0.0, top_p=1.0, max_tokens=max_new_tokens
        )
        tokens += answer["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - start


def through_mapgen(prompts: list[str], max_new_tokens: int, n_threads: int) -> tuple[int, float]:
    llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, n_threads=n_threads)
    ds = datasets.Dataset.from_dict({"input": prompts})
    start = time.perf_counter()
    out = ds.map(mapgen.generate(llm, cache=False), batched=True, load_from_cache_file=False)
    elapsed = time.perf_counter() - start
    return sum(m[0]["completion_tokens"] for m in out["generation_metadata"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    prompts = [PROMPTS[i % len(PROMPTS)] + f" (#{i})" for i in range(args.rows)]
    # Warm up: the first load reads the file from disk.
    through_mapgen(prompts[:1], 8, args.threads)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, run in (("llama_cpp.Llama", direct), ("mapgen.generate", through_mapgen)):
            tokens, seconds = run(prompts, args.max_new_tokens, args.threads)
            best[name] = max(best.get(name, 0.0), tokens / seconds)
            print(f"{name:16} {tokens:6d} tokens  {seconds:6.2f} s  {tokens / seconds:6.1f} tokens/s")
    ratio = best["mapgen.generate"] / best["llama_cpp.Llama"]
    print(
        f"best: direct {best['llama_cpp.Llama']:.1f} tokens/s, mapgen {best['mapgen.generate']:.1f} tokens/s"
    )
    print(f"ratio mapgen / direct: {ratio:.3f}")


if __name__ == "__main__":
    main()
