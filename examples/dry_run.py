"""A dry run: what a map would send and cost, then the map itself, and how close the estimate was.

Run it on the embedded model (input tokens counted with its own tokenizer, a pilot of 2 requests for the
answers' length and speed):

    python examples/dry_run.py

or against any OpenAI-compatible server (tokens per character from the pilot's reported usage):

    python examples/dry_run.py --base-url http://localhost:8000/v1 --model my-model
"""

from __future__ import annotations

import argparse

import datasets

import mapgen

QUESTIONS = [
    "Give one tip for sleeping well.",
    "What is a prime number?",
    "Name three rivers in Europe and the countries they cross.",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about the sea.",
    "What does a hash table do?",
]


def main(base_url=None, model="gpt-4o-mini", api_key=None, rows=6, max_new_tokens=32, pilot=2):
    ds = datasets.Dataset.from_dict(
        {"input": [QUESTIONS[i % len(QUESTIONS)] + f" ({i})" for i in range(rows)]}
    )
    if base_url:
        llm = mapgen.OpenAILLM(
            model, base_url=base_url, api_key=api_key, seed=0, max_new_tokens=max_new_tokens
        )
    else:
        llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    fn = mapgen.generate(llm, mapgen.TextGenerationTask())

    guess = mapgen.estimate(ds, fn, pilot=pilot)  # sends `pilot` requests; the map reuses their answers
    print(guess)

    before = mapgen.counters.snapshot()["requests"]
    ds = ds.map(fn, batched=True)
    sent = mapgen.counters.snapshot()["requests"] - before
    fresh = [m for row in ds["generation_metadata"] for m in row if not m["from_store"]]
    used = sum(m["prompt_tokens"] or 0 for m in fresh), sum(m["completion_tokens"] or 0 for m in fresh)
    print(
        f"\nthe map sent {sent} requests ({guess.requests} estimated), used {used[0]} input tokens "
        f"({guess.input_tokens} estimated) and {used[1]} output tokens ({guess.output_tokens} estimated)"
    )
    return guess, sent, used


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--rows", type=int, default=6)
    main(
        base_url=parser.parse_args().base_url, model=parser.parse_args().model, rows=parser.parse_args().rows
    )
