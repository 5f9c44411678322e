"""Time, peak memory, recall and precision of ``mapgen.dedup`` and ``mapgen.decontaminate`` on generated rows.

Builds ``--rows`` texts of 100 words from a seeded vocabulary, written to disk as a ``datasets`` Arrow
folder (so the rows are never all in Python at once):

- 20% of them are copies of an earlier text with one word changed (planted near-duplicates);
- 1% of the others hold a 13-word run taken from a small "benchmark" of 1,000 texts (planted
  contamination; their copies hold it too).

Each step then runs in a subprocess of its own, so its memory and time are its own:

- ``dedup``: recall is the share of planted copies removed; the false-removal rate, the share of the
  other rows removed;
- ``decontaminate``: recall is the share of planted rows flagged; precision, the share of flagged rows
  that were planted.

Memory, ``anon_peak_mib``: the peak of the anonymous memory of the step's process and all its descendants
(the ``num_proc`` workers, datasets' queue manager) together, sampled every 20 ms while the step runs, each
process's ``Pss_Anon`` from ``/proc/<pid>/smaps_rollup``: the heap and arrays the program holds, a page
shared by forked workers counted once (split between them), and neither the pages of the memory-mapped
Arrow files (file-backed page cache, which the kernel reclaims; the 1,000,000-row text is 700 MB on disk)
nor the scoring done after the step. ``anon_start_mib`` is the same figure before the step (the interpreter,
datasets and mapgen imported). ``ru_maxrss_mib`` is the former figure, for comparison: the step process's
and its largest worker's ``ru_maxrss`` summed, read as the step ends; it counts the mapped files' pages
touched, so it grows with the dataset on disk. Linux only (``/proc``).

    .venv/bin/python benchmarks/bench_clean.py                   # 1,000,000 rows, num_proc 2
    .venv/bin/python benchmarks/bench_clean.py --rows 100000     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
            yield {"row": i, "text": " ".join(tokens), "copy_of": source, "planted": holds}
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
        yield {"row": i, "text": " ".join(tokens), "copy_of": -1, "planted": at is not None}


def make(count: int, folder: Path) -> None:
    import datasets

    words = vocabulary(0)
    benchmark = benchmark_texts(words)
    kwargs = {"count": count, "words": tuple(words), "benchmark": tuple(benchmark)}  # tuples: no sharding
    ds = datasets.Dataset.from_generator(rows, gen_kwargs=kwargs, cache_dir=str(folder / "hf"))
    ds.save_to_disk(str(folder / "rows"))
    datasets.Dataset.from_dict({"text": benchmark}).save_to_disk(str(folder / "benchmark"))


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [p for child in children.read().split() for p in _tree(int(child))]
    except OSError:  # a process that has just ended
        pass
    return found


def _pss_anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next((int(line.split()[1]) for line in rollup if line.startswith("Pss_Anon:")), 0)
    except OSError:
        return 0


def anon_kib() -> int:
    """The anonymous memory of this process and its descendants, shared pages split (KiB)."""
    return sum(_pss_anon_kib(pid) for pid in _tree(os.getpid()))


def measured(run: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``run()``'s result, and its seconds, peak anonymous memory (sampled every 20 ms) and ``ru_maxrss``."""
    peak, start = [anon_kib()], anon_kib()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], anon_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - began
    peak[0] = max(peak[0], anon_kib())
    done.set()
    sampler.join()
    maxrss = sum(
        resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    figures = {
        "seconds": round(seconds, 1),
        "anon_peak_mib": peak[0] // 1024,
        "anon_start_mib": start // 1024,
        "ru_maxrss_mib": maxrss // 1024,  # KiB on Linux
    }
    return result, figures


def step(name: str, folder: Path, num_proc: int) -> dict[str, Any]:
    """Run one step on the rows on disk; its figures (in this process: its memory is its own). The scoring
    reads the truth columns as numpy after the measure."""
    import datasets
    import numpy as np
    import pyarrow.compute as pc

    import mapgen

    ds = datasets.load_from_disk(str(folder / "rows"))
    truth = ds.with_format("numpy")
    if name == "dedup":
        (kept, report), figures = measured(lambda: mapgen.dedup(ds, "text", num_proc=num_proc))
        removed = np.ones(len(ds), dtype=bool)
        removed[kept.with_format("numpy")["row"][:]] = False
        copies = truth["copy_of"][:] >= 0
        scores = {
            "recall": round(float(removed[copies].mean()), 3),
            "false_removal": round(float(removed[~copies].mean()), 5),
            "clusters": report.clusters,
        }
    else:
        benchmark = datasets.load_from_disk(str(folder / "benchmark"))
        (flagged, _), figures = measured(
            lambda: mapgen.decontaminate(ds, "text", against={"bench": benchmark}, num_proc=num_proc)
        )
        flags = flagged.with_format("arrow")["contaminated_by"][:]
        hits = pc.list_value_length(flags).to_numpy(zero_copy_only=False) > 0
        planted = truth["planted"][:]
        true = int(np.count_nonzero(hits & planted))
        scores = {
            "recall": round(true / max(1, int(planted.sum())), 3),
            "precision": round(true / max(1, int(hits.sum())), 3),
        }
    return {"step": name, "rows": len(ds), **figures, **scores}


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
