"""Generator only: add two answers per instruction with the embedded model (the seed's
``Pipeline(generator=...)`` example). No key, no network.

With an API model instead:
    llm = mapgen.OpenAILLM(model="gpt-4o-mini", max_new_tokens=128)
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 48


def main(max_new_tokens: int = MAX_NEW_TOKENS) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {"input": ["Write a one-sentence tip for learning Python.", "Name a healthy breakfast."]}
    )
    llm = mapgen.LlamaCppLLM(max_new_tokens=max_new_tokens, seed=0)
    ds = ds.map(mapgen.generate(llm, mapgen.TextGenerationTask(), num_generations=2), batched=True)
    for row in ds:
        print(row["input"], "->", row["generations"])
    return ds


if __name__ == "__main__":
    main()
