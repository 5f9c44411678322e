"""Generate through a provider's batch API (OpenAI's Batch API, Anthropic's Message Batches): half the
price of the same requests sent one by one, answered within 24 hours.

    python examples/batch_api.py --base-url http://127.0.0.1:8123/v1 --api-key sk-...  # a test server
    python examples/batch_api.py                       # OpenAI's API, with OPENAI_API_KEY set
    python examples/batch_api.py --provider anthropic  # Anthropic's API, with ANTHROPIC_API_KEY set

The map submits one batch job (``batch_size=None``: the whole dataset in one call, so one job) and waits,
polling. Stop it at any time (Ctrl-C, or a kill): the job's id is already in the response store, so
running the same command again collects the job instead of submitting the requests again. With
``--no-wait`` it submits, prints the pending job ids and exits; run it again later to collect.
"""

from __future__ import annotations

import argparse

import datasets

import mapgen

QUESTIONS = [
    "Give one tip for sleeping well.",
    "What is a prime number?",
    "Name a use of a hash table.",
    "Why is the sky blue?",
]


def main(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    num_rows: int = 8,
    wait: bool = True,
    poll: float = 30.0,
    store: str | None = None,
    provider: str = "openai",
) -> datasets.Dataset:
    rows = [f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})" for i in range(num_rows)]
    ds = datasets.Dataset.from_dict({"input": rows})
    backend, model = (mapgen.OpenAILLM, "gpt-4o-mini")
    if provider == "anthropic":
        backend, model = (mapgen.AnthropicLLM, "claude-haiku-4-5")
    llm = backend(
        model,
        base_url=base_url,
        api_key=api_key,
        max_new_tokens=64,
        batch_api=True,  # a knob: the store keys are those of a synchronous run
        batch_wait=wait,
        batch_poll_interval=poll,
    )
    return ds.map(mapgen.generate(llm, store=store), batched=True, batch_size=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between two polls of the job")
    parser.add_argument("--no-wait", action="store_true", help="submit, print the job ids, and exit")
    parser.add_argument("--store", default=None, help="the response store (default: $MAPGEN_STORE)")
    args = parser.parse_args()
    try:
        ds = main(
            base_url=args.base_url,
            api_key=args.api_key,
            num_rows=args.rows,
            wait=not args.no_wait,
            poll=args.poll,
            store=args.store,
            provider=args.provider,
        )
    except mapgen.BatchPending as pending:
        print(f"pending: {' '.join(pending.jobs)}")
        raise SystemExit(3) from None
    answered = sum(g[0] is not None for g in ds["generations"])
    print(f"answered {answered} of {len(ds)}")
    for row in ds.select(range(min(2, len(ds)))):
        print(row["input"], "->", row["generations"][0])
