"""Structured outputs: every answer a typed record of a pydantic model, one column per field.

The embedded model (SmolLM2-135M on llama.cpp) answers under a grammar built from the model's JSON schema,
so its answers are JSON of that shape by construction; each is still validated with pydantic, and one
that fails (cut off by the token limit, say) is asked again, up to ``max_reasks`` times.
"""

from typing import Literal

import datasets
from pydantic import BaseModel, Field

import mapgen

PRODUCTS = ["phone", "kettle", "backpack", "desk lamp", "blender", "umbrella", "headset", "bicycle"]
OPINIONS = [
    "I love my new {p}, it works perfectly.",
    "The {p} broke after two days. Avoid it.",
    "The {p} is fine, nothing special.",
    "Best {p} I have ever owned, worth every cent!",
    "My {p} arrived scratched and support never answered.",
]


class Review(BaseModel):
    """What to read from a product review."""

    sentiment: Literal["positive", "negative", "neutral"]
    stars: Literal[1, 2, 3, 4, 5] = Field(description="1 (worst) to 5 (best)")
    would_recommend: bool
    # A length bound is part of the grammar: the answer always ends within the token limit.
    product: str = Field(description="the product, in one or two words", max_length=24)


TEMPLATE = """\
Read this product review and answer in JSON with the sentiment, the stars (1 to 5), whether the \
writer would recommend the product, and the product.

Review: {{ review }}"""


def reviews(rows: int) -> datasets.Dataset:
    """``rows`` short product reviews (products and opinions combined, then numbered to be distinct)."""
    texts = [
        OPINIONS[i % len(OPINIONS)].format(p=PRODUCTS[i // len(OPINIONS) % len(PRODUCTS)])
        for i in range(rows)
    ]
    texts = [
        text if i < len(PRODUCTS) * len(OPINIONS) else f"{text} (order {i})" for i, text in enumerate(texts)
    ]
    return datasets.Dataset.from_dict({"review": texts})


def main(rows: int = 8, max_new_tokens: int = 96) -> datasets.Dataset:
    llm = mapgen.LlamaCppLLM(temperature=0.7, max_new_tokens=max_new_tokens, seed=0)
    task = mapgen.StructuredTask(Review, template=TEMPLATE)
    ds = reviews(rows).map(mapgen.generate(llm, task, max_reasks=2), batched=True, batch_size=50)
    print(ds.features["stars"], ds.features["would_recommend"])  # typed columns: int64, bool
    print(ds[0]["review"], "->", ds[0]["sentiment"], ds[0]["stars"], ds[0]["product"])
    valid = sum(error is None for errors in ds["generation_errors"] for error in errors)
    print(f"{valid} valid records of {rows}; re-asks so far: {mapgen.counters.snapshot()['reasks']}")
    return ds


if __name__ == "__main__":
    main()
