"""The ``mapgen`` command: generate (and label) a small dataset from the shell.

Example:
    $ mapgen generate --num-generations 2 --output out/generated.jsonl
    $ mapgen generate --dataset prompts.csv --column prompt --llm openai:gpt-4o-mini --output out/ds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLE_INSTRUCTIONS = [
    "Give three tips for staying healthy.",
    "Explain what a hash table is in two sentences.",
    "Write a haiku about autumn rain.",
    "What is the capital of France, and why is it famous?",
]
"""The rows ``mapgen generate`` uses when no ``--dataset`` is given."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"mapgen: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mapgen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    gen = commands.add_parser("generate", help="add generations to a dataset")
    add_data_arguments(gen)
    add_llm_arguments(gen)
    gen.add_argument("--num-generations", type=int, default=1, help="answers per row (default: 1)")
    gen.add_argument("--system-prompt", default=None, help="system message sent with every prompt")
    gen.set_defaults(command=run_generate)

    lab = commands.add_parser("label", help="rate each row's generations (UltraFeedback)")
    add_data_arguments(lab)
    add_llm_arguments(lab, temperature=0.0)
    lab.add_argument(
        "--aspect",
        default="text-quality",
        choices=["text-quality", "helpfulness", "truthfulness", "honesty", "instruction-following"],
        help="what the judge rates (default: text-quality)",
    )
    lab.set_defaults(command=run_label)

    cache = commands.add_parser("cache", help="show or clear the response store")
    cache.add_argument("action", choices=["info", "clear"])
    cache.set_defaults(command=run_cache)
    return parser


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default=None,
        help="a .json/.jsonl/.csv/.parquet file or a folder from save_to_disk (default: built-in examples)",
    )
    parser.add_argument("--column", default="input", help="column holding the prompts (default: input)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    parser.add_argument(
        "--output", default=None, help="a folder (save_to_disk) or a .parquet/.jsonl/.json file"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch sent to the LLM")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes")


def add_llm_arguments(parser: argparse.ArgumentParser, temperature: float = 0.7) -> None:
    parser.add_argument(
        "--llm",
        default="llamacpp",
        help="llamacpp (embedded default), llamacpp:PATH.gguf, or openai:MODEL (default: llamacpp)",
    )
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server URL, for --llm openai:")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=temperature)
    parser.add_argument("--seed", type=int, default=None)


def build_llm(args: argparse.Namespace) -> Any:
    import mapgen

    backend, _, target = args.llm.partition(":")
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}
    if backend == "llamacpp":
        return mapgen.LlamaCppLLM(model_path=target or None, **sampling)
    if backend == "openai" and target:
        return mapgen.OpenAILLM(target, base_url=args.base_url, **sampling)
    raise ValueError(f"--llm {args.llm!r} is not one of: llamacpp, llamacpp:PATH.gguf, openai:MODEL.")


def load_rows(args: argparse.Namespace) -> Any:
    import datasets

    if args.dataset is None:
        ds = datasets.Dataset.from_dict({args.column: EXAMPLE_INSTRUCTIONS})
    else:
        path = Path(args.dataset)
        builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
        elif path.suffix in builders:
            ds = datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
        else:
            raise ValueError(
                f"--dataset {path} is neither a saved dataset folder nor one of {sorted(builders)}."
            )
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    return ds


def run_generate(args: argparse.Namespace) -> int:
    import mapgen

    ds = load_rows(args)
    task = mapgen.TextGenerationTask(system_prompt=args.system_prompt)
    fn = mapgen.generate(build_llm(args), task, args.num_generations, input_columns={"input": args.column})
    started = time.perf_counter()
    ds = ds.map(fn, batched=True, batch_size=args.batch_size, num_proc=args.num_proc, desc="Generating")
    write_output(ds, args.output)
    print_summary(ds, "generation", time.perf_counter() - started, args.output, args.num_proc)
    return 0


def run_label(args: argparse.Namespace) -> int:
    """Rate with UltraFeedback. A local judge rates one answer per prompt, JSON-constrained so every
    answer parses, and adds probability-weighted ratings: a small model's digit is nearly constant, the
    weighted rating still ranks (docs/labelling.md). API judges get the full comparative rubric."""
    import mapgen

    if args.dataset is None:
        raise ValueError(
            "mapgen label needs --dataset: the output of `mapgen generate` (or any dataset "
            "with a `generations` column)."
        )
    ds = load_rows(args)
    judge = build_llm(args)
    if isinstance(judge, mapgen.LlamaCppLLM):
        task = mapgen.UltraFeedbackTask.for_small_models(args.aspect)
        fn = mapgen.label(judge, task, weighted_ratings=True, input_columns={"input": args.column})
    else:
        task = mapgen.UltraFeedbackTask.for_aspect(args.aspect)
        fn = mapgen.label(judge, task, input_columns={"input": args.column})
    started = time.perf_counter()
    ds = ds.map(fn, batched=True, batch_size=args.batch_size, num_proc=args.num_proc, desc="Labelling")
    write_output(ds, args.output)
    print_summary(ds, "labelling", time.perf_counter() - started, args.output, args.num_proc)
    rated = sum(r is not None for row in ds["rating"] for r in row)
    texts = sum(g is not None for row in ds["generations"] for g in row)
    print(f"rated {rated} of {texts} generations")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from mapgen.store import default_store

    store = default_store()
    if args.action == "clear":
        store.clear()
        print(f"Cleared {store.path}")
    else:
        print(f"{store.path}\n{len(store)} answers, {store.size_bytes() / 1e6:.1f} MB")
    return 0


def write_output(ds: Any, output: str | None) -> None:
    if output is None:
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        ds.to_parquet(str(path))
    elif path.suffix in (".jsonl", ".json"):
        ds.to_json(str(path), lines=path.suffix == ".jsonl")
    else:
        ds.save_to_disk(str(path))


def print_summary(ds: Any, step: str, seconds: float, output: str | None, num_proc: int | None) -> None:
    """A short table of what was written, with a sample row so a person sees it worked.

    ``step`` is ``generation`` or ``labelling``: the prefix of the error and metadata columns. Reuse and
    failures are read from the dataset, so they count every worker; requests and retries are this
    process's counters, which ``num_proc`` workers do not report back.
    """
    import mapgen

    def flat(values: list[Any]) -> list[Any]:
        return [v for value in values for v in (value if isinstance(value, list) else [value])]

    errors = flat(ds[f"{step}_errors" if step == "generation" else f"{step}_error"])
    metadata = [m for m in flat(ds[f"{step}_metadata"]) if m is not None]
    totals = mapgen.counters.snapshot()
    in_workers = "(counted in the workers)" if num_proc and num_proc > 1 else None
    lines = [
        ("rows", len(ds)),
        (f"{step} errors", sum(e is not None for e in errors)),
        ("answers", len(metadata)),
        ("answers reused", sum(bool(m["from_store"]) for m in metadata)),
        ("requests sent", in_workers or totals["requests"]),
        ("retries", in_workers or totals["retries"]),
        ("seconds", f"{seconds:.1f}"),
        ("columns", ", ".join(ds.column_names)),
        ("written to", output or "(not written: pass --output)"),
    ]
    first = ds[0] if len(ds) else {}
    for column in ("generations", "rating", "weighted_rating"):
        if first.get(column):
            lines.append((f"row 0 {column}", shorten(first[column])))
    width = max(len(name) for name, _ in lines)
    print()
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


def shorten(values: list[Any], width: int = 60) -> str:
    def one(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        text = " ".join(str(value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    return " | ".join(one(v) for v in values)


if __name__ == "__main__":
    sys.exit(main())
