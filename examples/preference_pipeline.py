"""The preference ``pipeline`` helper: one callable that generates, then rates with UltraFeedback for a
subtask (``text-quality``, ``helpfulness``, ``truthfulness``, ``honesty``, ``instruction-following``).

The default labeller is OpenAI's gpt-4o-mini (needs OPENAI_API_KEY):
    fn = mapgen.pipeline("preference", "text-quality", generator=generator)
Here both steps run on the embedded model, judging one generation per prompt.
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 32


def main(max_new_tokens: int = MAX_NEW_TOKENS, subtask: str = "text-quality") -> datasets.Dataset:
    ds = datasets.Dataset.from_dict({"input": ["Suggest a name for a cat.", "What is 7 times 6?"]})
    generator = mapgen.LlamaCppLLM(max_new_tokens=max_new_tokens, seed=0)
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=60, seed=0)
    fn = mapgen.pipeline(
        "preference",
        subtask,
        generator=generator,
        labeller=judge,
        num_generations=2,
        per_generation=True,  # labeller_kwargs: the small-model way of judging
        template=mapgen.tasks.ultrafeedback.COMPACT_TEMPLATE,
        system_prompt=None,
        weighted_ratings=True,
    )
    ds = ds.map(fn, batched=True)
    for row in ds:
        print(row["input"], row["generations"], row["rating"], row["weighted_rating"])
    return ds


if __name__ == "__main__":
    main()
