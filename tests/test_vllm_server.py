"""OpenAILLM against vLLM's real OpenAI-compatible server (vLLM 0.32, its CPU build) on 127.0.0.1.

One server for the session (``vllm_server``, :mod:`tests.servers.vllm_fixtures`), serving the test model
(SmolLM2-135M-Instruct, bf16) as ``smollm2`` with ``--max-model-len 2048``; short answers and few rows, as
the machine has two cores. The answers quoted below are what that server gave, by curl.

What vLLM's server answers that our own test servers did not, and what changed for it:

- a prompt longer than the context: HTTP 400, ``{"error": {"message": "This model's maximum context length
  is 2048 tokens. However, your prompt contains at least 2049 input tokens, ...", "type": "BadRequestError",
  "param": "input_tokens", "code": 400}}``. mapgen took any 400 to an ``n > 1`` request for a server that
  refuses ``n``, so one long prompt turned ``n`` off for the rest of the process; now only a single request
  that then gets past the error does (:meth:`mapgen.llms._api.APILLM._answer_group`). The fault server
  answers it alike with ``max_context``;
- ``continue_final_message`` (Magpie's open user turn): the answer's ``message.role`` is that of the message
  continued, ``"user"``; and ``continue_final_message`` without ``add_generation_prompt: false`` (its
  default is true) is a 400 ("continue_final_message and add_generation_prompt are not compatible..."). The
  fault server now answers both as vLLM does; mapgen already sent both fields and ignores the role.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Literal

import datasets
import pytest
from pydantic import BaseModel

import mapgen
from mapgen.core.prompt import Prompt
from mapgen.core.request import Request
from mapgen.llms.openai_wire import OPENAI_CHAT

TRANSPORTS = ["aiohttp", "sdk"]


def vllm_llm(base_url: str, **options) -> mapgen.OpenAILLM:
    options.setdefault("max_new_tokens", 12)
    return mapgen.OpenAILLM("smollm2", base_url=base_url, **options)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_generations_come_in_one_request_with_n(vllm_server, transport):
    """vLLM honours ``n``: ``choices`` has ``n`` entries (each ``finish_reason`` ``"length"`` or ``"stop"``),
    ``usage`` counts them together (``prompt_tokens_details`` is ``null``)."""
    llm = vllm_llm(vllm_server, temperature=1.0, transport=transport)
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
    out = ds.map(mapgen.generate(llm, num_generations=3), batched=True)
    assert out["generation_errors"] == [[None] * 3] * 2
    assert all(isinstance(text, str) and text.strip() for row in out["generations"] for text in row)
    assert all(len(set(row)) > 1 for row in out["generations"])  # three samples, not one thrice
    assert llm.engine().n_supported is True  # all n choices came back: n is in use
    for row in out["generation_metadata"]:
        assert all(m["finish_reason"] in ("stop", "length") for m in row)
        assert 3 <= sum(m["completion_tokens"] for m in row) <= 3 * 12  # the request's usage, shared
    assert out["generation_model"][0] == ["smollm2"] * 3


class Tag(BaseModel):
    """An answer the model cannot guess its way into: only constrained decoding writes these names."""

    zq_code: Literal["zq-alpha", "zq-beta"]
    vx_ok: bool


def test_structured_task_goes_as_strict_json_schema(vllm_server):
    """``response_format`` ``{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}`` is
    taken and decoded by grammar: the answer is the schema's JSON (``finish_reason`` ``"stop"``). A schema
    vLLM's grammar compiler refuses is a 400 "Grammar error: ...", which mapgen reads as a refused shape."""
    llm = vllm_llm(vllm_server, temperature=0.0, max_new_tokens=32, seed=0)
    task = mapgen.StructuredTask(Tag, template="Tag this: {{ thing }}. Answer in JSON.")
    ds = datasets.Dataset.from_dict({"thing": ["a red apple", "the sea"]})
    out = ds.map(mapgen.generate(llm, task), batched=True)
    assert out["generation_errors"] == [[None], [None]]
    for row in out.to_list():
        record = Tag.model_validate({"zq_code": row["zq_code"][0], "vx_ok": row["vx_ok"][0]})
        assert record == Tag.model_validate_json(row["raw_generation_responses"][0])
        # what was sent: json_schema with strict true (strict false would say json_schema_nonstrict)
        assert row["generation_metadata"][0]["schema_style"] == "json_schema"
    assert llm.schema_styles[llm.engine().schema_style] == "json_schema"


def test_magpie_draws_instructions_through_continue_final_message(vllm_server):
    """The instruction round sends the open user turn with ``continue_final_message: true,
    add_generation_prompt: false``: vLLM renders the template up to ``<|im_start|>user\\n`` (24 prompt
    tokens with SmolLM2's default system prompt, 30 with a generation prompt) and answers with
    ``message.role`` ``"user"``."""
    llm = vllm_llm(vllm_server, temperature=1.0, max_new_tokens=16, seed=0)
    ds = datasets.Dataset.from_dict({"id": [0, 1]})
    out = ds.map(mapgen.generate(llm, mapgen.MagpieTask()), batched=True, with_indices=True)
    assert out["generation_errors"] == [[None], [None]]
    instructions = [row[0] for row in out["instruction"]]
    assert all(isinstance(text, str) and text.strip() for text in instructions)
    assert len(set(instructions)) == 2  # each row drew its own
    assert not any("<|im_" in text for text in instructions)
    assert all(row[0] and row[0].strip() for row in out["response"])
    assert [m["role"] for m in out[0]["conversation"][0]] == ["user", "assistant"]

    # The prompt ended where a user's text begins: as many tokens as vLLM's own rendering of it.
    open_turn = mapgen.MagpieTask().prompt({})
    [answer] = llm.complete([Request(open_turn)])
    tokenize = vllm_server.removesuffix("/v1") + "/tokenize"
    messages = open_turn.messages()
    continued = post(
        tokenize,
        {
            "model": "smollm2",
            "messages": messages,
            "continue_final_message": True,
            "add_generation_prompt": False,
        },
    )
    new_turn = post(tokenize, {"model": "smollm2", "messages": messages})
    assert answer.error is None and answer.text.strip()
    assert answer.prompt_tokens == continued["count"] < new_turn["count"]


def test_log_probabilities_and_the_weighted_rating(vllm_server):
    """``logprobs: true, top_logprobs: k`` gives OpenAI's layout, ``choices[i].logprobs.content`` a list of
    ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}`` with ``k``
    alternatives each (at most 20: 21 is a 400 "Requested sample logprobs of 21, which is greater than max
    allowed: 20"), the model's own probabilities, before any schema constraint."""
    llm = vllm_llm(vllm_server, temperature=0.0, max_new_tokens=8, seed=0)
    [answer] = llm.complete([Request(Prompt("Rate Paris as a capital from 1 to 5."), top_logprobs=5)])
    assert answer.error is None
    assert "".join(answer.tokens) == answer.text
    assert len(answer.top_logprobs) == len(answer.tokens)
    for token, alternatives in zip(answer.tokens, answer.top_logprobs, strict=True):
        assert 1 <= len(alternatives) <= 5 and all(lp <= 0.0 for lp in alternatives.values())
        assert max(alternatives, key=alternatives.get) == token  # greedy: the likeliest

    judge = vllm_llm(vllm_server, temperature=0.0, max_new_tokens=48, seed=0)
    rate = mapgen.label(judge, mapgen.UltraFeedbackTask.for_small_models(), weighted_ratings=True)
    ds = datasets.Dataset.from_dict({"input": ["What is 2 + 2?"], "generations": [["4", "22"]]})
    out = ds.map(rate, batched=True)
    [ratings], [weighted] = out["rating"], out["weighted_rating"]
    assert all(r in (1.0, 2.0, 3.0, 4.0, 5.0) for r in ratings), out["labelling_error"]
    assert all(isinstance(w, float) and 1.0 <= w <= 5.0 for w in weighted)
    assert any(w != r for w, r in zip(weighted, ratings, strict=True))  # probabilities, not the digit


def test_sampling_parameters_mapgen_sends_are_taken(vllm_server):
    """``top_k``, ``min_p`` and ``repetition_penalty`` (with ``repeat_penalty``, llama.cpp's name, beside it:
    vLLM ignores the field it does not know) are answered with 200. vLLM's bounds: ``top_k`` -1 or 0 (no
    cut) or >= 1 (-2: 400 "top_k must be 0 (disable), or at least 1, got -2."), ``min_p`` in [0, 1],
    ``repetition_penalty`` > 0, ``top_p`` in (0, 1] (0 is a 400, though OpenAI takes it)."""
    prompts = [Request(Prompt("Write the word 'cat' ten times.")), Request(Prompt("Name three fruits."))]

    def texts(**options) -> list[str]:
        llm = vllm_llm(vllm_server, max_concurrency=1, seed=0, **options)
        answers = llm.complete(prompts)
        assert [a.error for a in answers] == [None, None]
        return [a.text for a in answers]

    body = OPENAI_CHAT.body(
        vllm_llm(vllm_server, top_k=1, min_p=0.5, repetition_penalty=1.3), prompts[0], 1, None
    )
    assert (body["top_k"], body["min_p"], body["repetition_penalty"], body["repeat_penalty"]) == (
        1,
        0.5,
        1.3,
        1.3,
    )
    greedy = texts(temperature=0.0)
    assert all(text.strip() for text in greedy)
    assert texts(temperature=1.0, top_k=1) == greedy  # the likeliest token only: greedy
    assert texts(temperature=1.0, min_p=1.0) == greedy  # none as likely as the likeliest: greedy
    assert texts(temperature=0.0, repetition_penalty=2.0)[0] != greedy[0]  # 'cat' is penalised


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_too_long_for_the_context_fails_its_row_and_keeps_n(vllm_server, transport):
    """A prompt over ``--max-model-len``: HTTP 400 ``{"error": {"message": "This model's maximum context
    length is 2048 tokens. However, your prompt contains at least 2049 input tokens, which exceeds this
    limit even without any output tokens. Please reduce the length of the input prompt.
    (parameter=input_tokens, value=2049)", "type": "BadRequestError", "param": "input_tokens", "code":
    400}}``: that row's error, not the run's. (A prompt that fits, with ``max_tokens`` that do not, is
    answered: cut at the context, ``finish_reason`` ``"length"``.)"""
    llm = vllm_llm(vllm_server, temperature=1.0, max_new_tokens=4, max_concurrency=1, transport=transport)
    ds = datasets.Dataset.from_dict({"input": ["word " * 3000, "Name a fruit."]})
    out = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generations"][0] == [None, None]
    for error in out["generation_errors"][0]:
        assert error.startswith("http_400: HTTP 400: This model's maximum context length is 2048 tokens")
    assert out["generation_errors"][1] == [None, None]
    assert all(text.strip() for text in out["generations"][1])
    assert llm.engine().n_supported is True  # the 400 was the prompt's, not n's


def test_max_new_tokens_over_the_context_fails_every_row_as_data(vllm_server):
    """``max_tokens`` over ``--max-model-len``: HTTP 400 ``{"error": {"message": "max_tokens=4096 cannot be
    greater than max_model_len=2048. Please request fewer output tokens. (parameter=max_tokens,
    value=4096)", "type": "BadRequestError", "param": "max_tokens", "code": 400}}``."""
    llm = vllm_llm(vllm_server, max_new_tokens=4096, max_retries=0)
    out = datasets.Dataset.from_dict({"input": ["Hi."]}).map(mapgen.generate(llm), batched=True)
    [[error]] = out["generation_errors"]
    assert error.startswith("http_400: HTTP 400: max_tokens=4096 cannot be greater than max_model_len=2048")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unknown_model_stops_the_map(vllm_server, transport):
    """A model the server does not serve: HTTP 404 ``{"error": {"message": "The model `nope` does not exist.
    Valid aliases: smollm2.", "type": "NotFoundError", "param": "model", "code": 404}}``: misconfiguration,
    raised out of ``ds.map`` (:class:`mapgen.errors.FatalAPIError`) instead of one failure per row."""
    llm = mapgen.OpenAILLM("nope", base_url=vllm_server, max_new_tokens=4, transport=transport)
    ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(4)]})
    with pytest.raises(mapgen.errors.FatalAPIError) as raised:
        ds.map(mapgen.generate(llm), batched=True)
    message = str(raised.value)
    assert message.startswith("HTTP 404: The model `nope` does not exist. Valid aliases: smollm2.")
    assert "check the model name and base_url" in message
