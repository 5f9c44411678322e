"""The ``mapgen`` command: generate (and label) a small dataset from the shell.

Example:
    $ mapgen generate --num-generations 2 --output out/generated.jsonl
    $ mapgen generate --dataset prompts.csv --column prompt --llm openai:gpt-4o-mini --output out/ds
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mapgen._version import __version__
from mapgen.errors import MapgenError, StoreError

EXAMPLE_INSTRUCTIONS = [
    "Give three tips for staying healthy.",
    "Explain what a hash table is in two sentences.",
    "Write a haiku about autumn rain.",
    "What is the capital of France, and why is it famous?",
]
"""The rows ``mapgen generate`` uses when no ``--dataset`` is given."""

DESCRIPTION = """\
Make synthetic and AI-feedback datasets with LLMs: generate answers, then rate them.
Without --llm, the embedded model answers: SmolLM2-135M on the CPU, no key, no download."""

EPILOG = """\
examples:
  mapgen generate --num-generations 2 --output out/generated
  mapgen label --dataset out/generated --output out/labelled
  mapgen generate --dataset prompts.csv --column prompt --llm openai:gpt-4o-mini --output out/ds.jsonl
  mapgen judge-check --llm openai:gpt-4o-mini

Run 'mapgen COMMAND --help' for the options of a command."""

INPUT_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_FILES = {".parquet": "parquet", ".jsonl": "json lines", ".json": "json"}
"""The files ``--output`` writes (suffixes in any case); any other path is a ``save_to_disk`` folder..."""
REFUSED_OUTPUT_SUFFIXES = {".csv": "CSV", ".tsv": "TSV", ".txt": "a text file"}
"""...except these, refused before anything runs: a text table cannot hold list columns."""
ASPECTS = ["text-quality", "helpfulness", "truthfulness", "honesty", "instruction-following"]

CLI_ADVICE = {
    "price": "pass --price-per-million IN,OUT",
    "max_new_tokens": "a larger --max-new-tokens",
    "redo": "--dataset <this output> --redo length and a larger --max-new-tokens",
}
"""The fixes the closing table (:class:`mapgen.Summary`) names, as flags."""

FLAGS = {
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "seed": "--seed",
    "price_per_million": "--price-per-million",
    "num_generations": "--num-generations",
    "batch_size": "--batch-size",
    "num_proc": "--num-proc",
    "model_path": "--llm llamacpp:PATH",
    "base_url": "--base-url",
    "system_prompt": "--system-prompt",
    "top_k": "--top-k",
    "min_p": "--min-p",
    "presence_penalty": "--presence-penalty",
    "frequency_penalty": "--frequency-penalty",
    "repetition_penalty": "--repetition-penalty",
}
"""Python parameter names that configuration errors may quote, and the flag a shell user sets instead."""

SHELL_ADVICE = [
    (r"(MAPGEN_CACHE_DIR[^.]*), or pass cache=False", r"\1"),
    (r"pass api_key=\.\.\. or set OPENAI_API_KEY", "set OPENAI_API_KEY"),
    (r" \(api_key=\.\.\. or the provider's environment variable\)", " in OPENAI_API_KEY"),
    (r"\bOpenAILLM needs", "--llm openai:MODEL needs"),
    (r"\bOpenAILLM cannot honour", "--llm openai:MODEL cannot honour"),
    (r"pass api_key=\.\.\. or set ANTHROPIC_API_KEY", "set ANTHROPIC_API_KEY"),
    (r"\bAnthropicLLM needs", "--llm anthropic:MODEL needs"),
    (r"\bAnthropicLLM cannot honour", "--llm anthropic:MODEL cannot honour"),
    (r"the model name and base_url", "the model name (--llm openai:MODEL) and --base-url"),
    (
        r"pass cache=False(?: to run without (?:it|the store))?",
        "set MAPGEN_CACHE_DIR to another folder to run on a new store",
    ),
    (r"input_columns=\{[^}]*\}", "--column NAME"),
    (r"price_per_million=\(input, output\)", "--price-per-million IN,OUT"),
    (r"\b(\w+)=\.\.\.", r"\1"),  # "pass base_url=..." -> "pass --base-url", by FLAGS
]
"""Advice in mapgen's messages that names Python arguments, and what a shell user does instead (applied
in order, then :data:`FLAGS`); the command has no key flag, so that keys stay out of shell history. The
generic advice names OpenAI's variable and spec; :func:`shell_advice` names the provider's of the run."""

KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The environment variable each ``--llm PROVIDER:MODEL`` reads its key from."""


class CommandError(MapgenError):
    """A mistake in the command line, found before anything runs; its message names the flag to fix.
    Internal, like :class:`InterruptedRun`: :func:`main` turns it into a message and an exit status."""


class InterruptedRun(MapgenError):
    """Ctrl-C during a map; ``kept`` new answers reached the response store (``None``: unknown)."""

    def __init__(self, kept: int | None) -> None:
        super().__init__(kept)
        self.kept = kept


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mapgen`` with ``argv`` (default: the process's arguments); returns the exit status.

    Errors are one line, ``mapgen: error: ...``, naming the flag to change, and exit 2; Ctrl-C says
    what was kept and exits 130.

    Example:
        >>> main(["generate", "--llm", "claude"])
        2
    """
    if argv is None:  # run as a program, not called from Python
        os.register_at_fork(after_in_child=_quiet_workers)
    args = build_parser().parse_args(argv)
    try:
        return args.command(args)
    except BaseException as error:  # every way out gets one line and its status, or its traceback
        from mapgen.runtime.interrupts import came_of_ctrl_c

        if isinstance(error, InterruptedRun) or came_of_ctrl_c(error):
            _close_bar()
            print(f"mapgen: {_interrupted_message(getattr(error, 'kept', None))}", file=sys.stderr)
            return 130
        message = _error_message(error, getattr(args, "llm", "").partition(":")[0])
        if message is None:
            raise
        _close_bar()
        print(f"mapgen: error: {message}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``mapgen`` argument parser: ``generate``, ``label``, ``cache``, ``judge-check``, ``--version``."""
    parser = argparse.ArgumentParser(
        prog="mapgen",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mapgen {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", title="commands")

    gen = commands.add_parser(
        "generate",
        help="add answers (generations) to each row of a dataset",
        description="Add answers to each row: a 'generations' column with one answer per generation, "
        "and beside it the model, prompt, raw response, error and metadata of each.",
    )
    add_data_arguments(gen, default_dataset=True)
    add_llm_arguments(gen, temperature=0.7)
    gen.add_argument(
        "--num-generations", type=positive_int, default=1, metavar="N", help="answers per row (default: 1)"
    )
    gen.add_argument(
        "--system-prompt", default=None, metavar="TEXT", help="system message sent with every prompt"
    )
    gen.add_argument(
        "--redo",
        action="append",
        default=None,
        metavar="KIND",
        help="with --dataset the output of an earlier 'mapgen generate': ask again only the answers of this "
        "kind (length: cut at --max-new-tokens; or a failure kind such as invalid_output, http_429), "
        "keeping every other answer as it is, with no request; repeat for several kinds",
    )
    gen.set_defaults(command=run_generate)

    lab = commands.add_parser(
        "label",
        help="rate each row's answers with an LLM judge (UltraFeedback)",
        description="Rate each row's generations on a 1 to 5 scale: adds 'rating' (one per generation), "
        "'rationale' and 'labelling_error'. The embedded judge rates one answer per prompt and adds "
        "'weighted_rating', the rating weighted by the probability it gave each digit: a model this small "
        "cannot judge, and its weighted rating only ranks answers to the same prompt, roughly.",
    )
    add_data_arguments(lab, default_dataset=False)
    add_llm_arguments(lab, temperature=0.0)
    lab.add_argument(
        "--aspect",
        default="text-quality",
        choices=ASPECTS,
        help="what the judge rates (default: text-quality)",
    )
    lab.set_defaults(command=run_label)

    cache = commands.add_parser(
        "cache",
        help="show or clear the response store",
        description="The response store keeps every answer as it arrives ($MAPGEN_CACHE_DIR, default "
        "~/.cache/mapgen), so a re-run sends only what is missing. 'info' shows its size; 'clear' "
        "deletes its answers (all, after asking, or those of --model, --older-than), which a re-run pays "
        "for again.",
    )
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--model", help="clear only this model's answers (the name generation_model shows)")
    cache.add_argument(
        "--older-than",
        type=age_seconds,
        metavar="AGE",
        help="clear only answers stored longer ago than AGE: a number and a unit, s, m (minutes), h, d or w "
        "(30d, 12h)",
    )
    cache.add_argument("--yes", "-y", action="store_true", help="clear without asking")
    cache.set_defaults(command=run_cache)

    check = commands.add_parser(
        "judge-check",
        help="measure a judge on mapgen's pairs of a right and a wrong answer, before labelling with it",
        description="Judge mapgen's shipped pairs (120 prompts, each with a checked better and worse answer: "
        "arithmetic, unit conversions, dates, capitals, code, instructions) in both orders with a pairwise "
        "task, and print the judge's pairwise accuracy (chance: 0.50), its position consistency and what it "
        "cost. Answers go to the response store, so a re-run costs nothing.",
    )
    add_llm_arguments(check, temperature=0.0)
    check.add_argument(
        "--sample",
        type=positive_int,
        default=None,
        metavar="N",
        help="judge N pairs, drawn evenly across the categories (default: all 120)",
    )
    check.set_defaults(command=run_judge_check)
    return parser


def add_data_arguments(parser: argparse.ArgumentParser, *, default_dataset: bool) -> None:
    if default_dataset:
        parser.add_argument(
            "--dataset",
            type=input_path,
            default=None,
            metavar="PATH",
            help="a .json, .jsonl, .csv or .parquet file, a folder written by mapgen or "
            "datasets' save_to_disk, or a Hub dataset user/name (default: four built-in example prompts)",
        )
    else:
        parser.add_argument(
            "--dataset",
            type=input_path,
            required=True,
            metavar="PATH",
            help="what to rate: the output of 'mapgen generate' (a folder, .jsonl or .parquet file, or a "
            "Hub dataset user/name), or any dataset with a 'generations' column holding a list of answers "
            "per row",
        )
    parser.add_argument(
        "--column", default="input", metavar="NAME", help="the column holding the prompts (default: input)"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="use only the first N rows"
    )
    parser.add_argument(
        "--output",
        type=output_path,
        default=None,
        metavar="PATH",
        help="where to write: a .parquet, .jsonl or .json file, else a folder (read it back with "
        "datasets.load_from_disk); .csv, .tsv and .txt are refused (default: write nothing)",
    )
    parser.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="also push the result to the Hub dataset repo REPO (user/name) with a dataset card that says "
        "how each column was made; the token comes from HF_TOKEN or 'hf auth login'",
    )
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="rows per batch (default: 64)"
    )
    parser.add_argument(
        "--num-proc", type=positive_int, default=None, metavar="N", help="worker processes (default: 1)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what the map would send and cost (requests after the response store's hits, tokens, "
        "USD, time) and stop; only the --pilot requests are sent (their answers are kept and reused)",
    )
    parser.add_argument(
        "--pilot",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="with --dry-run: requests sent to measure tokens and time (default: 8; 0 sends nothing)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again what failed in an earlier run of this command: datasets' cache of the map is "
        "ignored, and the response store answers everything that succeeded",
    )


def add_llm_arguments(parser: argparse.ArgumentParser, *, temperature: float) -> None:
    parser.add_argument(
        "--llm",
        default="llamacpp",
        metavar="BACKEND",
        help="llamacpp (the embedded model, default), llamacpp:PATH.gguf (any GGUF file), or "
        "openai:MODEL (OpenAI, or the server given by --base-url; key from OPENAI_API_KEY), or "
        "anthropic:MODEL (Anthropic's Messages API, or --base-url; key from ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="the server for --llm openai:MODEL (OpenAI-compatible, with /v1) or anthropic:MODEL (its root)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=256,
        metavar="N",
        help="answer length cap (default: 256)",
    )
    parser.add_argument(
        "--temperature",
        type=non_negative_float,
        default=temperature,
        metavar="T",
        help=f"sampling temperature, 0 for greedy (default: {temperature})",
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="sampling seed, for reproducible answers"
    )
    parser.add_argument(
        "--price-per-million",
        type=price_pair,
        default=None,
        metavar="IN,OUT",
        help="USD per million input and output tokens, for the cost shown (default: the provider's list "
        "price for OpenAI's and Anthropic's own APIs, else none)",
    )
    # The typed sampling parameters; unset, the engine's default. The LLM config checks their ranges.
    sampling = parser.add_argument_group("sampling parameters (default: the engine's own)")
    sampling.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest")
    sampling.add_argument("--min-p", type=float, default=None, metavar="P", help="min-p cut, in [0, 1]")
    sampling.add_argument(
        "--stop", action="append", default=None, metavar="TEXT", help="end answers before TEXT (repeatable)"
    )
    for name in ("presence-penalty", "frequency-penalty", "repetition-penalty"):
        sampling.add_argument(f"--{name}", type=float, default=None, metavar="X")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return 0 if text.strip() == "0" else positive_int(text)


class HubDataset(str):
    """A ``--dataset`` that names a Hugging Face Hub dataset (``user/name``), not a local path."""


_HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def input_path(text: str) -> Path | HubDataset:
    """An argparse type: a dataset file mapgen reads, or a saved dataset folder, that exists; else, for
    ``user/name`` with no such local folder, a Hub dataset (read when the command runs)."""
    path = Path(text)
    if path.is_dir():
        return path
    if _HUB_REPO.match(text) and suffix(path) not in INPUT_SUFFIXES and not path.exists():
        return HubDataset(text)
    if suffix(path) not in INPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text}: use a .json, .jsonl, .csv or .parquet file, or a folder written by save_to_disk"
        )
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def output_path(text: str) -> Path:
    """An argparse type: a ``.parquet``, ``.jsonl`` or ``.json`` file (any case), else a folder.

    Only the name decides, so ``runs/llama-3.1`` is a folder. Text formats are refused before anything
    runs: they cannot hold the list columns mapgen writes (one answer per generation).

    Example:
        >>> output_path("runs/llama-3.1"), output_path("out.JSONL")
        (PosixPath('runs/llama-3.1'), PosixPath('out.JSONL'))
    """
    path = Path(text)
    if suffix(path) in REFUSED_OUTPUT_SUFFIXES:
        kind = REFUSED_OUTPUT_SUFFIXES[suffix(path)]
        raise argparse.ArgumentTypeError(
            f"{text}: {kind} cannot hold the list columns mapgen writes (one answer per generation); use "
            f"{path.with_suffix('.jsonl')}, {path.with_suffix('.parquet')} or a folder "
            f"({path.with_suffix('')})"
        )
    return path


def suffix(path: Path) -> str:
    """``path``'s suffix in lower case: ``out.JSONL`` is a JSON Lines file as ``out.jsonl`` is."""
    return path.suffix.lower()


def price_pair(text: str) -> tuple[float, float]:
    """``"0.15,0.6"`` as ``(0.15, 0.6)``: USD per million input and output tokens."""
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        rates = ()
    if len(rates) != 2 or any(rate < 0 for rate in rates):
        message = f"expected IN,OUT in USD per million tokens (0.15,0.6); got {text!r}"
        raise argparse.ArgumentTypeError(message)
    return rates


def build_llm(args: argparse.Namespace) -> Any:
    import mapgen

    backend, _, target = args.llm.partition(":")
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}
    sampling["price_per_million"] = args.price_per_million
    for name in ("top_k", "min_p", "stop", "presence_penalty", "frequency_penalty", "repetition_penalty"):
        sampling[name] = getattr(args, name)
    if backend == "llamacpp":
        if target and not Path(target).is_file():
            raise CommandError(f"--llm {args.llm}: no such GGUF file {target!r}")
        return mapgen.LlamaCppLLM(model_path=target or None, **sampling)
    if backend == "openai" and target:
        return mapgen.OpenAILLM(target, base_url=args.base_url, **sampling)
    if backend == "anthropic" and target:
        return mapgen.AnthropicLLM(target, base_url=args.base_url, **sampling)
    raise CommandError(
        f"--llm {args.llm!r} is not one of: llamacpp, llamacpp:PATH.gguf, openai:MODEL, anthropic:MODEL."
    )


def load_rows(args: argparse.Namespace) -> Any:
    import datasets

    if args.dataset is None:
        ds = datasets.Dataset.from_dict({args.column: EXAMPLE_INSTRUCTIONS})
    else:
        path = args.dataset
        if isinstance(path, HubDataset):
            from mapgen.report.hub import load_hub_dataset

            ds = load_hub_dataset(str(path))
        elif path.is_dir():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(INPUT_SUFFIXES[suffix(path)], data_files=str(path), split="train")
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    return ds


def require_columns(ds: Any, args: argparse.Namespace, *, generations: bool = False) -> None:
    """Say which flag to change when a column the command reads is missing, before any request."""
    present = list(ds.column_names)
    if args.column not in present:
        guess = next((c for c in present if c in ("prompt", "instruction", "question", "text")), None)
        hint = f" (e.g. --column {guess})" if guess else ""
        raise CommandError(
            f"the dataset has no column {args.column!r}; its columns are {present}. Pass --column with "
            f"the column that holds the prompts{hint}."
        )
    if generations and "generations" not in present:
        raise CommandError(
            f"mapgen label rates a 'generations' column (a list of answers per row), which the dataset "
            f"does not have; its columns are {present}. Pass --dataset the output of 'mapgen generate'."
        )


def run_generate(args: argparse.Namespace) -> int:
    import mapgen

    check_dry_run(args)
    if args.redo and args.dataset is None:
        raise CommandError(
            "--redo re-asks answers of an earlier run: pass --dataset with that run's --output."
        )
    ds = load_rows(args)
    require_columns(ds, args)
    task = mapgen.TextGenerationTask(system_prompt=args.system_prompt)
    fn = mapgen.generate(
        build_llm(args),
        task,
        args.num_generations,
        input_columns={"input": args.column},
        redo=args.redo or (),
    )
    if args.dry_run:
        return dry_run(ds, fn, args)
    ds, seconds, counts = run_map(ds, fn, args, "Generating")
    write_output(ds, args.output)
    pushed = push(ds, args)

    from mapgen.report.summary import shorten, summary, table

    done = summary(ds, columns=["generation_metadata"])
    lines = [
        *done.lines(CLI_ADVICE),
        *redone_lines(ds, args.redo),
        *counts.lines(rows=len(ds), failed=done.asked - done.answers),
        ("seconds", f"{seconds:.1f}"),
        ("written to", args.output or "(not written: pass --output)"),
        *([("pushed to", pushed)] if pushed else []),
    ]
    if len(ds):
        lines.append(("row 0 generations", shorten(ds[0]["generations"])))
    print("\n" + table(lines))
    return 0


def redone_lines(ds: Any, redo: list[str] | None) -> list[tuple[str, str]]:
    """With ``--redo``: how many answers were asked again, and how many kept as they were."""
    if not redo:
        return []
    flags = [flag for row in ds["generation_redone"] for flag in row or []]
    kinds = ", ".join(sorted(set(redo)))
    return [
        ("asked again", f"{sum(flags):,} answer(s) of kind {kinds}; {flags.count(False):,} kept as they were")
    ]


def run_label(args: argparse.Namespace) -> int:
    """Rate with UltraFeedback. A local judge rates one answer per prompt, JSON-constrained so every
    answer parses, and adds probability-weighted ratings: a small model's digit is nearly constant, the
    weighted rating still ranks (docs/labelling.md). API judges get the full comparative rubric."""
    import mapgen
    from mapgen.llms.base import LocalLLM

    check_dry_run(args)
    ds = load_rows(args)
    require_columns(ds, args, generations=True)
    judge = build_llm(args)
    local = isinstance(judge, LocalLLM)  # a small model on this machine
    if local:
        task = mapgen.UltraFeedbackTask.for_small_models(args.aspect)
        fn = mapgen.label(judge, task, weighted_ratings=True, input_columns={"input": args.column})
    else:
        task = mapgen.UltraFeedbackTask.for_aspect(args.aspect)
        fn = mapgen.label(judge, task, input_columns={"input": args.column})
    if args.dry_run:
        return dry_run(ds, fn, args)
    ds, seconds, counts = run_map(ds, fn, args, "Labelling")
    write_output(ds, args.output)
    pushed = push(ds, args)

    from mapgen.report.summary import shorten, summary, table

    texts = sum(g is not None for generations in ds["generations"] for g in generations or [])
    ratings = [r for row_ratings in ds["rating"] for r in row_ratings or [] if r is not None]
    done = summary(ds, columns=["labelling_metadata"])  # the label step alone, not the answers it rated
    lines = [
        *done.lines(CLI_ADVICE),
        ("ratings", f"{len(ratings)} of {texts} generations"),
        *counts.lines(rows=len(ds), failed=done.asked - done.answers),
        ("seconds", f"{seconds:.1f}"),
        ("written to", args.output or "(not written: pass --output)"),
        *([("pushed to", pushed)] if pushed else []),
    ]
    weighted = "weighted_rating" in ds.column_names
    if len(ds):
        lines.append(("row 0 generations", shorten(ds[0]["generations"])))
        lines.append(("row 0 rating", shorten(ds[0]["rating"])))
        if weighted:
            lines.append(("row 0 weighted_rating", shorten(ds[0]["weighted_rating"])))
            lines.append(("row 0 ranked", ranking(ds[0]["weighted_rating"])))
    print("\n" + table(lines))
    embedded = local and not args.llm.partition(":")[2]  # --llm llamacpp: the model mapgen ships
    if embedded and ratings:
        print("\n" + small_judge_note(ratings))
    return 0


def check_dry_run(args: argparse.Namespace) -> None:
    if args.pilot is not None and not args.dry_run:
        raise CommandError("--pilot sets the requests a dry run sends: pass it with --dry-run.")


def dry_run(ds: Any, fn: Any, args: argparse.Namespace) -> int:
    """Print :func:`mapgen.estimate`'s table for the map the command would run; write nothing."""
    import mapgen
    from mapgen.report.estimate import DEFAULT_PILOT

    guess = mapgen.estimate(ds, fn, pilot=DEFAULT_PILOT if args.pilot is None else args.pilot)
    _close_bar()
    table = shell_advice(str(guess), args.llm.partition(":")[0])  # its notes name flags, not arguments
    print("\n" + table + "\n\ndry run: nothing written; run the same command without --dry-run to map.")
    return 0


def ranking(weighted: list[float | None]) -> str:
    """``"answer 2 > answer 1"``: a row's answers from the highest weighted rating down."""
    rated = sorted((-w, i) for i, w in enumerate(weighted or []) if w is not None)
    return " > ".join(f"answer {i + 1}" for _, i in rated) or "(no weighted ratings)"


def small_judge_note(ratings: list[float]) -> str:
    """What the embedded judge's ratings are worth: told where they are shown, so nobody takes them as
    labels. Figures from docs/labelling.md (16 pairs of a right and a wrong answer)."""
    values = sorted(set(ratings))
    if len(values) == 1:
        spread = f"here all {len(ratings)} ratings are {values[0]:.1f}"
    else:
        spread = f"here {len(ratings)} ratings take {len(values)} values"
    return (
        "note: the embedded judge (SmolLM2-135M) is too small to judge: its rating digit barely depends\n"
        f"on the answer ({spread}). Its weighted_rating (the digits 1 to 5 weighted by the\n"
        "probabilities the model gave them) does rank answers to the same prompt, weakly: it put the right\n"
        "answer above the wrong one in 11 of 16 test pairs, where a coin gets 8. Use it to try mapgen or to\n"
        "order answers of one prompt, not as a quality score; for real labels, use a large judge\n"
        "(--llm openai:MODEL). See docs/labelling.md."
    )


def run_map(ds: Any, fn: Callable[..., Any], args: argparse.Namespace, desc: str) -> tuple[Any, float, Any]:
    """``ds.map(fn)`` as the flags say; the mapped dataset, the seconds it took, and what it moved in
    :data:`mapgen.counters` (over every worker)."""
    import mapgen
    from mapgen.report.summary import RunCounts

    before = mapgen.counters.snapshot()
    stored = _stored_answers()
    started, wall = time.perf_counter(), time.time()
    try:
        ds = ds.map(
            fn,
            batched=True,
            batch_size=args.batch_size,
            num_proc=args.num_proc,
            desc=desc,
            # else datasets returns the earlier map, failures and all, without calling fn
            load_from_cache_file=False if args.retry_failed else None,
        )
    except BaseException as error:
        from mapgen.runtime.interrupts import came_of_ctrl_c

        if came_of_ctrl_c(error):
            after = _stored_answers()
            raise InterruptedRun(None if stored is None or after is None else after - stored) from error
        raise
    seconds = time.perf_counter() - started
    _close_bar()
    files = [Path(entry["filename"]) for entry in ds.cache_files]
    predate = bool(files) and all(file.stat().st_mtime < wall for file in files)
    return ds, seconds, RunCounts.between(before, mapgen.counters.snapshot(), cache_files_predate=predate)


def run_judge_check(args: argparse.Namespace) -> int:
    """Print :func:`mapgen.judge_check`'s table for the judge ``--llm`` names."""
    import mapgen

    check = mapgen.judge_check(build_llm(args), sample=args.sample)
    _close_bar()
    print("\n" + str(check))
    if args.llm == "llamacpp":  # the model mapgen ships: say what its figure is worth
        print(
            "\nnote: the embedded judge (SmolLM2-135M) is too small to judge: expect an accuracy near 0.50\n"
            "(chance). A large judge should score near 1 on these pairs, whose better answer is checkable."
        )
    return 0


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
"""The units of ``--older-than``, in seconds (``m`` is minutes)."""


def age_seconds(text: str) -> float:
    """``--older-than``'s value in seconds: a number and a unit of :data:`AGE_UNITS`.

    Example:
        >>> age_seconds("30d"), age_seconds("1.5h")
        (2592000.0, 5400.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is no age: write a number and a unit, as in 30d or 12h")
    return float(match[1]) * AGE_UNITS[match[2]]


def run_cache(args: argparse.Namespace) -> int:
    from mapgen.store import default_store

    store = default_store()
    if args.action == "clear":
        return clear_cache(store, args)
    if args.model is not None or args.older_than is not None or args.yes:
        raise CommandError("--model, --older-than and --yes go with 'mapgen cache clear', not 'info'")
    print(f"{store.where}\n{len(store)} answers, {store.size_bytes() / 1e6:.1f} MB")
    return 0


def clear_cache(store: Any, args: argparse.Namespace) -> int:
    """``mapgen cache clear``: the answers ``--model`` and ``--older-than`` select, or all of them, once
    the user said yes (``--yes``, or ``y`` at the prompt); says how many were deleted."""
    if args.model is not None or args.older_than is not None:
        removed = store.delete(model=args.model, older_than=args.older_than)
        print(f"Removed {removed} answers from {store.where}; {len(store)} remain")
        return 0
    try:
        count = f"{len(store)}"
    except StoreError:  # damaged: clearing is what starts it afresh (its error says to run this command)
        count = "the damaged store's"
    if not args.yes:
        question = (
            f"Delete all {count} answers in {store.where}, and the records of the maps that made them (what "
            "dataset cards and mapgen.flatten read)? A re-run pays for them again. [y/N] "
        )
        if not sys.stdin.isatty():
            raise CommandError(
                f"mapgen cache clear deletes all {count} stored answers: pass --yes to confirm (stdin is not "
                "a terminal to ask on), or clear some with --model NAME or --older-than AGE"
            )
        if input(question).strip().lower() not in ("y", "yes"):
            print("Nothing removed")
            return 1
    store.clear()
    print(f"Removed {count} answers from {store.where}")
    return 0


def push(ds: Any, args: argparse.Namespace) -> str | None:
    """Push ``ds`` and its card to ``--push-to-hub`` (see :func:`mapgen.push_to_hub`); the repo's URL."""
    if args.push_to_hub is None:
        return None
    from huggingface_hub.errors import HfHubHTTPError

    from mapgen.report.hub import push_to_hub

    try:
        push_to_hub(ds, args.push_to_hub, private=args.private or None)
    except HfHubHTTPError as error:  # its message names the URL and the Hub's reason, never the token
        raise CommandError(
            f"--push-to-hub {args.push_to_hub}: the Hub refused ({error}); the token comes from HF_TOKEN or "
            "'hf auth login'. The dataset was written to --output if given."
        ) from None
    except ConnectionError as error:  # mapgen.push_to_hub's: the Hub cannot be reached
        raise CommandError(f"--push-to-hub: {error} The dataset was written to --output if given.") from None
    return (
        f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/datasets/{args.push_to_hub}"
    )


def write_output(ds: Any, output: Path | None) -> None:
    if output is None:
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    writes = OUTPUT_FILES.get(suffix(output))
    if writes == "parquet":
        ds.to_parquet(str(output))
    elif writes is not None:
        ds.to_json(str(output), lines=writes == "json lines")
    else:
        ds.save_to_disk(str(output))


def _error_message(error: BaseException, provider: str = "openai") -> str | None:
    """One line for an error mapgen or the command raised, naming the flag to change (and ``provider``'s
    key variable); ``None`` for an unexpected error, which keeps its traceback."""
    from mapgen.errors import FatalAPIError, StoreError

    text = " ".join(str(error).split())
    if isinstance(error, CommandError):
        return text
    if isinstance(error, (FatalAPIError, StoreError, ValueError, TypeError, OSError, ImportError)):
        return shell_advice(text, provider)
    return None


def shell_advice(text: str, provider: str = "openai") -> str:
    """``text`` with the advice mapgen gives Python callers turned into the flag or variable to set, for a
    run of ``--llm provider:MODEL``.

    Example:
        >>> shell_advice("HTTP 401 (check the API key (api_key=... or the provider's environment variable))")
        'HTTP 401 (check the API key in OPENAI_API_KEY)'
        >>> shell_advice("HTTP 404 (check the model name and base_url)", "anthropic")
        'HTTP 404 (check the model name (--llm anthropic:MODEL) and --base-url)'
    """
    variable = KEY_VARIABLES.get(provider)
    for python, shell in SHELL_ADVICE:
        if variable is not None:  # the generic advice, for this run's provider
            shell = shell.replace(" in OPENAI_API_KEY", f" in {variable}")
            shell = shell.replace("(--llm openai:MODEL)", f"(--llm {provider}:MODEL)")
        text = re.sub(python, shell, text)
    return re.sub(r"\b(" + "|".join(FLAGS) + r")\b", lambda m: FLAGS[m.group(1)], text)


def _interrupted_message(kept: int | None) -> str:
    if kept is None:
        return "interrupted."
    return (
        f"interrupted: {kept} new answer(s) kept in the response store; run the same command again to "
        "resume (it sends only what is missing)."
    )


def _stored_answers() -> int | None:
    """How many answers the response store holds, or ``None`` when it cannot say (a damaged file)."""
    from mapgen.store import default_store

    try:
        return len(default_store())
    except Exception:
        return None


def _close_bar() -> None:
    from mapgen.runtime.progress import request_progress

    request_progress.close()


def _quiet_workers() -> None:
    # Ctrl-C in a terminal reaches every process of the group. The command's own process stops the map
    # (datasets then ends its workers); workers that took it too would each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
