"""Multi-turn synthetic conversations with no seed data: Magpie (arXiv 2406.08464) on the embedded
model, then a persona-driven conversation. No key, no network.

Magpie sends the model its own chat template up to where a user's text begins (the pre-query prefix),
so the model writes the user's instruction itself, then answers it. Each row draws its own sample, told
apart by its index: make a dataset with as many rows as you want samples and pass ``with_indices=True``.
With a GPU, any aligned instruct model does better, e.g. ``mapgen.vLLM("Qwen/Qwen2.5-7B-Instruct")``;
OpenAI's own API cannot send a prefix (it always starts a new assistant turn), and says so at once.
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 48


def main(
    num_rows: int = 3, max_new_tokens: int = MAX_NEW_TOKENS
) -> tuple[datasets.Dataset, datasets.Dataset]:
    llm = mapgen.LlamaCppLLM(temperature=0.8, max_new_tokens=max_new_tokens, seed=0)

    rows = datasets.Dataset.from_dict({"id": list(range(num_rows))})
    magpie = mapgen.generate(llm, mapgen.MagpieTask(num_turns=2))
    chats = rows.map(magpie, batched=True, with_indices=True)
    for conversation in chats["conversation"]:
        print([(m["role"], m["content"][:40]) for m in conversation[0] or []])

    personas = datasets.Dataset.from_dict(
        {"persona": ["a retired teacher learning to paint", "a new runner"]}
    )
    talk = mapgen.generate(
        llm, mapgen.ConversationTask(num_turns=2, system_prompt="You are a helpful coach.")
    )
    talks = personas.map(talk, batched=True)
    for persona, conversation in zip(talks["persona"], talks["conversation"], strict=True):
        print(persona, "->", [m["role"] for m in conversation[0] or []])
    return chats, talks


if __name__ == "__main__":
    main()
