"""Wire formats: one request, as OpenAI's and Anthropic's APIs take it, and their answers read back.

Every API backend is a wire format (how a request body is built and an answer read) over one shared
sending piece (concurrency, retries, rate limits, the store). The formats are plain functions of data, so
this runs without a server or a key: the same ``Request`` (a system prompt, a question, a JSON schema)
becomes a Chat Completions body and a Messages body, and each provider's answer becomes the same
``Completion``. Adding a provider: docs/new_backend.md.
"""

import json

import mapgen
from mapgen.core.request import Request

SCHEMA = {
    "title": "Answer",
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_ANSWER = {
    "choices": [{"message": {"content": '{"city": "Paris"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 6},
}
ANTHROPIC_ANSWER = {
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "Answer", "input": {"city": "Paris"}}],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 21, "output_tokens": 6},
}


def main() -> dict[str, tuple[dict, mapgen.Completion]]:
    request = Request(
        mapgen.Prompt("Which city is France's capital?", system="Answer as JSON."), schema=SCHEMA
    )
    backends = {
        "openai": (mapgen.OpenAILLM("gpt-4o-mini", api_key="unused", max_new_tokens=32), OPENAI_ANSWER),
        "anthropic": (
            mapgen.AnthropicLLM("claude-sonnet-4-5", api_key="unused", max_new_tokens=32),
            ANTHROPIC_ANSWER,
        ),
    }
    seen = {}
    for name, (llm, answer) in backends.items():
        wire = llm.wire
        body = wire.body(llm, request, 1, llm.schema_styles[0])
        completion = wire.completions(answer, 1)[0]
        print(f"{name}: POST {wire.path}\n{json.dumps(body, indent=2)}")
        print(f"-> {completion.text!r}, {completion.prompt_tokens} + {completion.completion_tokens} tokens\n")
        seen[name] = (body, completion)
    return seen


if __name__ == "__main__":
    main()
