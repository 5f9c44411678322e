"""Structured output on the embedded model: how many of ``--rows`` records are valid, constrained by
llama.cpp's JSON-schema grammar, and how many re-asks that took (the issue's "200 of 200" check).

Runs ``examples/structured_output.py``'s map (``Review``: an enum, a 1-to-5 literal, a bool, a string)
with a fresh response store, so every answer is generated, and prints one JSON line.

    .venv/bin/python benchmarks/bench_structured.py --rows 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    os.environ["MAPGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="mapgen-bench-structured-")
    sys.path.insert(0, str(ROOT / "examples"))
    import datasets
    import structured_output

    import mapgen

    datasets.disable_progress_bars()
    start = time.perf_counter()
    ds = structured_output.main(rows=args.rows, max_new_tokens=args.max_new_tokens)
    seconds = time.perf_counter() - start
    errors = [error for row in ds["generation_errors"] for error in row]
    counts = mapgen.counters.snapshot()
    print(
        json.dumps(
            {
                "rows": args.rows,
                "valid": sum(error is None for error in errors),
                "invalid": [error for error in errors if error is not None],
                "requests": counts["requests"],
                "reasks": counts["reasks"],
                "seconds": round(seconds, 1),
                "features": {
                    name: str(ds.features[name]) for name in ("sentiment", "stars", "would_recommend")
                },
            }
        )
    )


if __name__ == "__main__":
    main()
