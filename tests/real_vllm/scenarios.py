"""mapgen's vLLM backend on the real engine (vLLM's CPU build): the scenarios one process can run.

Run by tests/test_vllm_engine.py in vLLM's virtual environment (tests/servers/vllm_env.py), with this
checkout on PYTHONPATH::

    python tests/real_vllm/scenarios.py MODEL_FOLDER OUT.json

Every config here differs from the others only in sampling parameters and per-call fields, so they share
one engine in this process. What each map wrote goes to OUT.json for the test to check.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import datasets
import workers  # this folder's
from pydantic import BaseModel

import mapgen

TOKENS = 24


class Dish(BaseModel):
    name: str
    minutes: int


def texts(ds: datasets.Dataset, column: str = "generations") -> list:
    return list(ds[column])


def main(model: str, out: str) -> None:
    found: dict[str, object] = {}
    questions = datasets.Dataset.from_dict({"input": ["What is the capital of France?", "Name a fruit."]})
    # enforce_eager: no compilation, to start in seconds (a knob: the answers' keys are the same).
    llm = mapgen.vLLM(model, max_new_tokens=TOKENS, temperature=1.0, enforce_eager=True)

    seeded = mapgen.generate(replace(llm, seed=7), num_generations=2, cache=False)
    found["seeded"] = texts(questions.map(seeded, batched=True))
    found["seeded_again"] = texts(questions.map(seeded, batched=True, batch_size=1))
    unseeded = mapgen.generate(llm, num_generations=2, cache=False)
    found["unseeded"] = texts(questions.map(unseeded, batched=True))
    found["unseeded_again"] = texts(questions.map(unseeded, batched=True))
    found["metadata"] = texts(questions.map(seeded, batched=True), "generation_metadata")

    greedy = mapgen.generate(replace(llm, temperature=0.0), cache=False)
    found["greedy"] = texts(questions.map(greedy, batched=True))
    top_k_1 = mapgen.generate(replace(llm, top_k=1, seed=1), cache=False)
    found["top_k_1"] = texts(questions.map(top_k_1, batched=True))

    chatml = mapgen.generate(replace(llm, prompt_format="chatml", temperature=0.0), cache=False)
    found["chatml"] = texts(questions.map(chatml, batched=True))
    zephyr = mapgen.generate(replace(llm, prompt_format="zephyr", temperature=0.0), cache=False)
    found["zephyr"] = texts(questions.map(zephyr, batched=True))

    answered = datasets.Dataset.from_dict(
        {"input": ["What is 2 + 2?"], "generations": [["4", "The answer is 5."]]}
    )
    judge = mapgen.label(
        replace(llm, max_new_tokens=160, seed=0),
        mapgen.UltraFeedbackTask.for_instruction_following(),
        cache=False,
    )
    [found["label"]] = answered.map(judge, batched=True).to_list()

    dishes = datasets.Dataset.from_dict({"input": ["Describe a quick pasta dish.", "Describe a salad."]})
    structured = mapgen.generate(
        replace(llm, max_new_tokens=64, seed=0), mapgen.StructuredTask(Dish), cache=False
    )
    found["structured"] = dishes.map(structured, batched=True).to_list()

    chats = datasets.Dataset.from_dict(
        {
            "messages": [
                [
                    {"role": "system", "content": "You answer in one word."},
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                    {"role": "user", "content": "Another one?"},
                ]
            ]
        }
    )
    chat = mapgen.generate(replace(llm, seed=0), mapgen.ChatGenerationTask(), cache=False)
    found["chat"] = texts(chats.map(chat, batched=True))

    slots = datasets.Dataset.from_dict({"slot": [0, 1]})
    magpie = mapgen.generate(replace(llm, seed=0), mapgen.MagpieTask(), cache=False)
    found["magpie"] = slots.map(magpie, batched=True, with_indices=True).to_list()

    people = datasets.Dataset.from_dict({"persona": ["a chef who loves bread"]})
    conversation = mapgen.generate(replace(llm, seed=0), mapgen.ConversationTask(num_turns=1), cache=False)
    found["conversation"] = people.map(conversation, batched=True).to_list()

    pool = mapgen.LLMPool([replace(llm, seed=0), replace(llm, seed=100, temperature=0.7)])
    pooled = mapgen.generate(pool, num_generations=4, cache=False)
    found["pool"] = questions.map(pooled, batched=True).to_list()

    # More than the model's 8,192 tokens: vLLM refuses the prompt, and only its own row fails.
    mixed = datasets.Dataset.from_dict({"input": ["Hi!", "word " * 9000, "Hello!"]})
    short = mapgen.generate(replace(llm, max_new_tokens=8, seed=0), cache=False)
    found["too_long"] = mixed.map(short, batched=True).to_list()

    # The prompts and config of workers.py, in this one process: the same seeded answers.
    numbers = datasets.Dataset.from_dict({"input": workers.prompts(8)})
    like_workers = mapgen.generate(replace(llm, max_new_tokens=16, seed=3, temperature=0.7), cache=False)
    found["like_workers"] = texts(numbers.map(like_workers, batched=True, batch_size=2))

    # A share of RAM that cannot fit is refused before loading, with one that would.
    try:
        mapgen.vLLM(model, gpu_memory_utilization=0.99).engine()
    except ValueError as error:
        found["too_much_memory"] = str(error)

    found["counters"] = mapgen.counters.snapshot()
    with open(out, "w") as file:
        json.dump(found, file, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])
