"""Costs: every answer's tokens and USD cost in its metadata, and ``mapgen.usage(ds)`` to sum them.

The embedded model is free, so this example gives it a price of its own, as you would for a self-hosted
model (``price_per_million=(input, output)``, USD per million tokens). OpenAI's and Anthropic's own APIs
need none: their list prices come from the ``genai-prices`` table. The second run answers from the
response store: it costs nothing, and ``usage`` counts those answers as reused, with what they had cost.

With an API model instead:
    llm = mapgen.OpenAILLM("gpt-4o-mini", max_new_tokens=64)
"""

import datasets

import mapgen

PRICE = (0.10, 0.40)  # USD per million input and output tokens


def main(max_new_tokens: int = 32) -> tuple[datasets.Dataset, datasets.Dataset]:
    ds = datasets.Dataset.from_dict({"input": ["Name a prime number.", "Give one tip for sleeping well."]})
    llm = mapgen.LlamaCppLLM(max_new_tokens=max_new_tokens, seed=0, price_per_million=PRICE)
    generate = mapgen.generate(llm, num_generations=2)
    first = ds.map(generate, batched=True)
    print(first[0]["generation_metadata"][0])  # finish_reason, tokens, from_store, cost (USD), cached_tokens
    print(mapgen.usage(first))

    again = ds.map(generate, batched=True)  # an in-memory dataset: datasets re-runs, the store answers
    print(mapgen.usage(again))
    return first, again


if __name__ == "__main__":
    main()
