"""Time, peak memory, recall and precision of ``mapgen.dedup`` and ``mapgen.decontaminate`` on generated rows.

Builds ``--rows`` texts of 100 words from a seeded vocabulary, written to disk as a ``datasets`` Arrow
folder (so the rows are never all in Python at once):

- 20% of them are copies of an earlier text with one word changed (planted near-duplicates);
- 1% of the others hold a 13-word run taken from a small "benchmark" of 1,000 texts (planted
  contamination; their copies hold it too).

Each step then runs in a subprocess of its own, so its peak memory (``ru_maxrss``) and time are its own:

- ``dedup``: recall is the share of planted copies removed; the false-removal rate, the share of the
  other rows removed;
- ``decontaminate``: recall is the share of planted rows flagged; precision, the share of flagged rows
  that were planted.

    .venv/bin/python benchmarks/bench_clean.py                   # 1,000,000 rows, num_proc 2
    .venv/bin/python benchmarks/bench_clean.py --rows 100000     # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = 100
VOCABULARY = 20_000
COPIES, PLANTED = 0.20, 0.01
NGRAM = 13
BENCHMARK_TEXTS = 1_000


def vocabulary(seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return list(dict.fromkeys("".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(VOCABULARY)))


def benchmark_texts(words: list[str]) -> list[str]:
    rng = random.Random(1)
    return [" ".join(rng.choices(words, k=40)) for _ in range(BENCHMARK_TEXTS)]


def rows(count: int, words: tuple[str, ...], benchmark: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """``count`` rows: a text, the row it copies (-1 for none), whether it holds a benchmark 13-gram (a copy
    of a planted row holds it too, unless its changed word fell inside it)."""
    rng = random.Random(0)
    kept: list[
        tuple[int, list[str], int | None]
    ] = []  # earlier texts to copy from (bounded): row, words, run
    for i in range(count):
        if kept and rng.random() < COPIES:
            source, tokens, run = rng.choice(kept)
            tokens = list(tokens)
            changed = rng.randrange(WORDS)
            tokens[changed] = rng.choice(words)  # one word changed
            holds = run is not None and not run <= changed < run + NGRAM
            yield {"text": " ".join(tokens), "copy_of": source, "planted": holds}
            continue
        tokens = rng.choices(words, k=WORDS)
        at: int | None = None
        if rng.random() < PLANTED:
            text = rng.choice(benchmark).split()
            start = rng.randrange(len(text) - NGRAM + 1)
            at = rng.randrange(WORDS - NGRAM + 1)
            tokens[at : at + NGRAM] = text[start : start + NGRAM]
        if len(kept) < 10_000:
            kept.append((i, tokens, at))
        elif rng.random() < 0.01:
            kept[rng.randrange(len(kept))] = (i, tokens, at)
        yield {"text": " ".join(tokens), "copy_of": -1, "planted": at is not None}


def make(count: int, folder: Path) -> None:
    import datasets

    words = vocabulary(0)
    benchmark = benchmark_texts(words)
    kwargs = {"count": count, "words": tuple(words), "benchmark": tuple(benchmark)}  # tuples: no sharding
    ds = datasets.Dataset.from_generator(rows, gen_kwargs=kwargs, cache_dir=str(folder / "hf"))
    ds.save_to_disk(str(folder / "rows"))
    datasets.Dataset.from_dict({"text": benchmark}).save_to_disk(str(folder / "benchmark"))


def step(name: str, folder: Path, num_proc: int) -> dict[str, Any]:
    """Run one step on the rows on disk; its figures (in this process: its peak memory is its own)."""
    import datasets

    import mapgen

    ds = datasets.load_from_disk(str(folder / "rows"))
    start = time.perf_counter()
    if name == "dedup":
        kept, report = mapgen.dedup(ds.add_column("row", range(len(ds))), "text", num_proc=num_proc)
        seconds = time.perf_counter() - start
        removed = set(range(len(ds))) - set(kept["row"])
        copies = [i for i, source in enumerate(ds["copy_of"]) if source >= 0]
        others = len(ds) - len(copies)
        figures = {
            "recall": sum(i in removed for i in copies) / len(copies),
            "false_removal": len(removed.difference(copies)) / others,
            "clusters": report.clusters,
        }
    else:
        benchmark = datasets.load_from_disk(str(folder / "benchmark"))
        flagged, _ = mapgen.decontaminate(ds, "text", against={"bench": benchmark}, num_proc=num_proc)
        seconds = time.perf_counter() - start
        hits = [bool(names) for names in flagged["contaminated_by"]]
        planted = ds["planted"]
        true = sum(h and p for h, p in zip(hits, planted, strict=True))
        figures = {"recall": true / max(1, sum(planted)), "precision": true / max(1, sum(hits))}
    peak = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )  # KiB on Linux; the workers' peak counts too
    return {"step": name, "rows": len(ds), "seconds": round(seconds, 1), "peak_mib": peak // 1024, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--step", choices=["dedup", "decontaminate"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.folder, args.num_proc)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        make(args.rows, folder)
        print(f"{args.rows:,} rows written in {time.perf_counter() - began:.0f} s", flush=True)
        for name in ("dedup", "decontaminate"):
            command = [sys.executable, __file__, "--step", name, "--folder", str(folder)]
            done = subprocess.run(
                [*command, "--num-proc", str(args.num_proc)], capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            print(json.loads(done.stdout.strip().splitlines()[-1]), flush=True)


if __name__ == "__main__":
    main()
