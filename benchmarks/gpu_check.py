"""GPU check for the local GPU path, through ``TransformersLLM`` (vLLM cannot be installed on the GPU
machine here: no network, and its wheels are far too large to carry).

It checks, on one GPU:

1. **throughput**: ``TransformersLLM.complete`` and ``generate()`` in ``datasets.map`` against calling
   ``model.generate`` directly on the same prompts (same chat template, same left-padded sub-batches in
   the same length order, greedy, same ``max_new_tokens``), best of ``--repeat`` alternating runs; the
   target is a ratio of at least 0.95, and the generated token ids must be the same;
2. **rank -> GPU** in a real ``ds.map(fn, batched=True, num_proc=2, with_rank=True)``: each forked worker
   sets ``CUDA_VISIBLE_DEVICES`` from its rank before its engine starts CUDA (``devices=[0, 0]`` puts both
   ranks on the one GPU; ``devices=[0, 1]`` would split them over two);
3. an **LLMPool** of two GPU members, each loaded once in a process of its own with its own
   ``CUDA_VISIBLE_DEVICES``, both answering in one map;
4. that the **parent never initialised CUDA** through all of it; then, on purpose, that a parent which
   does initialise CUDA before a ``num_proc`` map gets mapgen's DeviceError, not a CUDA crash.

The model is SmolLM2-135M's architecture and tokenizer (read here from the embedded GGUF, see
``gpu_check.sh``) with random weights, built on the GPU machine: the check measures the path, not
answer quality. The parent process never touches CUDA; the throughput part runs in a child process.

    python benchmarks/gpu_check.py --device cpu --rows 8 --max-new-tokens 8   # a dry run without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

INSTRUCTIONS = [
    "Give three tips for staying healthy.",
    "Explain what a hash table is and when to use one.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "What are the causes of inflation?",
    "Translate 'good morning' into French, Spanish and German.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "List five prime numbers greater than 100.",
    "Describe how photosynthesis works to a ten-year-old child, with an example from a garden.",
]


def prompts(rows: int) -> list[str]:
    return [f"{INSTRUCTIONS[i % len(INSTRUCTIONS)]} (case {i})" for i in range(rows)]


def build_model(tokenizer_dir: Path, out: Path) -> Path:
    """SmolLM2-135M's architecture with random weights (seeded), saved with its tokenizer, on the CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


def llm(model_dir: Path, args: argparse.Namespace, **kwargs):
    import mapgen

    options = {
        "temperature": 0.0,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "dtype": "bfloat16",
        "device": None if args.device == "cuda" else "cpu",
        **kwargs,
    }
    return mapgen.TransformersLLM(str(model_dir), **options)


# 1. Throughput, in a child process (the parent must stay off the GPU).


def bench(args: argparse.Namespace) -> dict:
    import datasets
    import torch

    import mapgen

    model_dir = Path(args.model_dir)
    texts = prompts(args.rows)
    backend = llm(model_dir, args)
    requests = [mapgen.Request(mapgen.Prompt(t)) for t in texts]
    engine = backend.engine(None)
    model, tok = engine.model, engine.tokenizer
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def direct() -> tuple[float, list[list[int]]]:
        rendered = [
            tok.apply_chat_template(
                [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False
            )
            for t in texts
        ]
        order = sorted(range(len(rendered)), key=lambda i: len(rendered[i]))
        tokens: list[list[int] | None] = [None] * len(rendered)
        sync()
        start = time.perf_counter()
        for s in range(0, len(order), args.batch_size):
            chunk = order[s : s + args.batch_size]
            inputs = tok(
                [rendered[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    max_new_tokens=args.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
            for i, row in zip(chunk, out[:, inputs["input_ids"].shape[1] :].tolist(), strict=True):
                tokens[i] = row
        sync()
        return time.perf_counter() - start, tokens  # type: ignore[return-value]

    def through_complete() -> tuple[float, list[str]]:
        sync()
        start = time.perf_counter()
        answers = backend.complete(requests)
        sync()
        return time.perf_counter() - start, [a.text for a in answers]

    ds = datasets.Dataset.from_dict({"input": texts})
    fn = mapgen.generate(backend, mapgen.TextGenerationTask(), cache=False)

    def through_map() -> tuple[float, list[str]]:
        sync()
        start = time.perf_counter()
        out = ds.map(fn, batched=True, batch_size=len(texts), load_from_cache_file=False, keep_in_memory=True)
        sync()
        return time.perf_counter() - start, [g[0] for g in out["generations"]]

    direct()  # warm-up (kernels, allocator)
    through_complete()
    best = {"direct": float("inf"), "complete": float("inf"), "map": float("inf")}
    for _ in range(args.repeat):
        for name, run in (("direct", direct), ("complete", through_complete), ("map", through_map)):
            seconds, result = run()
            best[name] = min(best[name], seconds)
            if name == "direct":
                direct_tokens = result
            elif name == "complete":
                complete_texts = result
    stops = {tok.eos_token_id, tok.pad_token_id}
    expected = []
    for row in direct_tokens:
        end = next((k for k, t in enumerate(row) if t in stops), len(row))
        expected.append(tok.decode(row[:end], skip_special_tokens=True))
    generated = sum(min(len(r), args.max_new_tokens) for r in direct_tokens)
    return {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "rows": len(texts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "seconds": best,
        "direct_tokens_per_s": round(generated / best["direct"], 1),
        "ratio_complete": round(best["direct"] / best["complete"], 4),
        "ratio_map": round(best["direct"] / best["map"], 4),
        "same_text_as_direct": expected == complete_texts,
    }


# 2 and 3. Rank -> GPU in real num_proc workers, and a pool of GPU members.


class RankProbe:
    """A map function that runs mapgen's callable, then notes where it ran (picklable, module level)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, batch, rank):
        import torch

        out = dict(self.fn(batch, rank))
        n = len(batch["input"])
        cuda = torch.cuda.is_initialized()
        out["worker_pid"] = [os.getpid()] * n
        out["worker_rank"] = [rank] * n
        out["worker_visible"] = [os.environ.get("CUDA_VISIBLE_DEVICES")] * n
        out["worker_cuda_initialized"] = [cuda] * n
        out["worker_gpu"] = [torch.cuda.get_device_name(0) if cuda else None] * n
        return out


def rank_check(model_dir: Path, args: argparse.Namespace) -> dict:
    import datasets

    import mapgen

    backend = llm(model_dir, args, devices=["0", "0"])  # both ranks on the one GPU here
    ds = datasets.Dataset.from_dict({"input": prompts(8)})
    fn = RankProbe(mapgen.generate(backend, mapgen.TextGenerationTask(), cache=False))
    start = time.perf_counter()
    out = ds.map(fn, batched=True, batch_size=2, num_proc=2, with_rank=True)
    workers = {}
    for row in out:
        workers[row["worker_rank"]] = {
            "pid": row["worker_pid"],
            "CUDA_VISIBLE_DEVICES": row["worker_visible"],
            "cuda_initialized": row["worker_cuda_initialized"],
            "gpu": row["worker_gpu"],
        }
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
        "all_answered": all(g[0] is not None for g in out["generations"]),
        "parent_pid": os.getpid(),
    }


def pool_check(model_dir: Path, args: argparse.Namespace) -> dict:
    import datasets

    import mapgen

    members = [
        llm(model_dir, args, devices=["0"]),
        llm(model_dir, args, devices=["0"], max_new_tokens=max(2, args.max_new_tokens // 2)),
    ]
    pool = mapgen.LLMPool(members, processes=None if args.device == "cuda" else True)
    ds = datasets.Dataset.from_dict({"input": prompts(8)})
    start = time.perf_counter()
    out = ds.map(mapgen.generate(pool, num_generations=2, cache=False), batched=True, batch_size=4)
    seconds = round(time.perf_counter() - start, 2)
    processes = pool.engine(None)
    info = {k: p.info() for k, p in processes.items()}
    for p in processes.values():
        p.close()
    return {
        "seconds": seconds,
        "member_processes": info,
        "writers_per_row": sorted({tuple(sorted(set(m))) for m in out["generation_model"]}),
        "all_answered": all(t is not None for g in out["generations"] for t in g),
        "completion_tokens": sorted(
            {m["completion_tokens"] for ms in out["generation_metadata"] for m in ms}
        ),
    }


def bad_fork_check(model_dir: Path, args: argparse.Namespace) -> dict:
    """The parent initialises CUDA on purpose, then maps with num_proc=2: mapgen must say what to do."""
    import datasets
    import torch

    import mapgen

    torch.zeros(1, device="cuda")
    ds = datasets.Dataset.from_dict({"input": prompts(4)})
    fn = mapgen.generate(llm(model_dir, args, devices=["0", "0"]), cache=False)
    try:
        ds.map(fn, batched=True, num_proc=2, with_rank=True)
    except Exception as error:
        return {"raised": type(error).__name__, "message": str(error)[:400]}
    return {"raised": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tokenizer-dir", default=".gpucheck/smollm2")
    parser.add_argument("--model-dir", default="/tmp/mapgen-gpu-check-model")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    parser.add_argument("--bench-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.bench_only:
        print(json.dumps(bench(args)))
        return

    import torch

    results: dict = {"torch": torch.__version__, "parent_pid": os.getpid()}
    model_dir = build_model(Path(args.tokenizer_dir), Path(args.model_dir))
    print("model ready", flush=True)

    child = subprocess.run(
        [sys.executable, __file__, "--bench-only", *sys.argv[1:]], capture_output=True, text=True, check=False
    )
    sys.stderr.write(child.stderr[-4000:])
    results["throughput"] = (
        json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else None
    )
    print("throughput", json.dumps(results["throughput"]), flush=True)

    results["rank_to_gpu"] = rank_check(model_dir, args)
    print("rank_to_gpu", json.dumps(results["rank_to_gpu"]), flush=True)
    results["pool"] = pool_check(model_dir, args)
    print("pool", json.dumps(results["pool"]), flush=True)
    results["parent_cuda_initialized"] = torch.cuda.is_initialized()
    print("parent_cuda_initialized", results["parent_cuda_initialized"], flush=True)
    if args.device == "cuda":
        results["parent_initialised_cuda_then_num_proc"] = bad_fork_check(model_dir, args)
        print("bad_fork", json.dumps(results["parent_initialised_cuda_then_num_proc"]), flush=True)

    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"gpu_check_{args.device}.json"
    path.write_text(json.dumps(results, indent=2))
    print("wrote", path)


if __name__ == "__main__":
    main()
