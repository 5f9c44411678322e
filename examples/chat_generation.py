"""Conversations: answer the last user turn of chats in the Hugging Face chat format (a ``messages``
column, as chat datasets and TRL keep them) with the embedded model. No key, no network.

A row whose conversation does not end with a user turn gets ``None`` and an ``input`` error; the run
goes on. With an API model instead:
    llm = mapgen.OpenAILLM(model="gpt-4o-mini", max_new_tokens=128)
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 48


def main(max_new_tokens: int = MAX_NEW_TOKENS) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {
            "messages": [
                [
                    {"role": "user", "content": "I want to learn to cook."},
                    {"role": "assistant", "content": "Great! Start with simple dishes like pasta or eggs."},
                    {"role": "user", "content": "How do I boil an egg?"},
                ],
                [
                    {"role": "system", "content": "You answer in one sentence."},
                    {"role": "user", "content": "Why is the sky blue?"},
                ],
                [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi there!"}],
            ]
        }
    )
    llm = mapgen.LlamaCppLLM(max_new_tokens=max_new_tokens, seed=0)
    task = mapgen.ChatGenerationTask(system_prompt="You are a friendly assistant.")
    ds = ds.map(mapgen.generate(llm, task), batched=True)
    for row in ds:
        print(row["messages"][-1]["content"], "->", row["generations"][0] or row["generation_errors"][0])
    return ds


if __name__ == "__main__":
    main()
