"""Conversations (ChatGenerationTask), prompts that continue their last message, and multi-turn tasks
(ConversationTask, MagpieTask) through generate's rounds: on the embedded model, the fault server (an
OpenAI-compatible server), and vLLM's TEST DOUBLE (tests/doubles/fake_vllm.py; no GPU here)."""

from __future__ import annotations

import datasets
import pytest

import mapgen
from mapgen.llms import base
from mapgen.llms.formats import render_chat_template
from tests.doubles import fake_vllm

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Name a color."},
]
PRE_QUERY = (  # SmolLM2's ChatML template, with its own default system prompt, up to a user's text
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n"
)
OPEN_USER_TURN = mapgen.Prompt(messages=[{"role": "user", "content": ""}], continue_final_message=True)
PREFILL = mapgen.Prompt(
    messages=[{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Sure: the"}],
    continue_final_message=True,
)

# Prompt formats: every turn rendered, and continue_final_message.

GOLDEN_CONVERSATION = {
    "default": "Be brief.\nHi\nHello! How can I help?\nName a color.",
    "llama2": (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! How can I help? </s>"
        "<s>[INST] Name a color. [/INST]"
    ),
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "zephyr": (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello! How can I help?</s>\n"
        "<|user|>\nName a color.</s>\n<|assistant|>\n"
    ),
}
GOLDEN_PREFILL = {
    "default": "Name a fruit.\nSure: the",
    "llama2": "<s>[INST] Name a fruit. [/INST] Sure: the",
    "chatml": "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\nSure: the",
    "zephyr": "<|user|>\nName a fruit.</s>\n<|assistant|>\nSure: the",
}
GOLDEN_OPEN_USER = {
    "default": "",
    "llama2": "<s>[INST] ",
    "chatml": "<|im_start|>user\n",
    "zephyr": "<|user|>\n",
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CONVERSATION))
def test_named_formats_render_every_turn_and_continue_the_final_message(name):
    assert mapgen.format_prompt(mapgen.Prompt(messages=CHAT), name) == GOLDEN_CONVERSATION[name]
    assert mapgen.format_prompt(PREFILL, name) == GOLDEN_PREFILL[name]
    assert mapgen.format_prompt(OPEN_USER_TURN, name) == GOLDEN_OPEN_USER[name]


def test_a_chat_template_is_cut_where_the_continued_message_begins():
    def template(messages, add_generation_prompt):
        text = "".join(f"[{m['role']}]{m['content'].strip()}[/{m['role']}]" for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")

    assert render_chat_template(template, PREFILL) == "[user]Name a fruit.[/user][assistant]Sure: the"
    assert render_chat_template(template, OPEN_USER_TURN) == "[user]"
    assert render_chat_template(template, mapgen.Prompt("Hi")) == "[user]Hi[/user][assistant]"
    with pytest.raises(ValueError, match="does not render the last message"):
        render_chat_template(lambda messages, _: "[nothing]", PREFILL)


# ChatGenerationTask


def test_chat_task_reads_a_conversation_and_refuses_rows_that_do_not_end_with_a_user_turn():
    task = mapgen.ChatGenerationTask(system_prompt="Default system.")
    assert task.inputs == ("messages",)
    assert task.prompt({"messages": CHAT}).messages() == CHAT  # its own system message wins
    assert task.prompt({"messages": CHAT[1:]}).messages()[0] == {
        "role": "system",
        "content": "Default system.",
    }
    for bad, reason in [
        (CHAT[:3], "must end with a user turn; it ends with assistant"),
        ([], "it ends with nothing"),
        ("Hi", "expected a list"),
        ([{"role": "robot", "content": "Hi"}], "role 'robot'"),
        ([{"role": "user", "content": None}], "content is a NoneType"),
        ([{"role": "user", "content": [{"type": "image"}]}], "has a 'image' part"),
    ]:
        with pytest.raises(mapgen.InputError, match=reason):
            task.prompt({"messages": bad})
    # Hugging Face's multimodal format, text parts only: the text, joined
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}]
    assert task.prompt({"messages": parts}).user == "Hi\nthere"


@pytest.mark.llamacpp
def test_chat_generation_on_the_embedded_model_answers_the_last_turn_and_keeps_the_messages(tiny_llm):
    ds = datasets.Dataset.from_dict({"chat": [CHAT, CHAT[:3]]})
    fn = mapgen.generate(tiny_llm, mapgen.ChatGenerationTask(), input_columns={"messages": "chat"})
    out = ds.map(fn, batched=True)
    assert isinstance(out[0]["generations"][0], str) and out[0]["generations"][0].strip()
    assert out[0]["generation_prompt"] == [CHAT]
    assert out[0]["generation_errors"] == [None]
    assert out[1]["generations"] == [None]
    assert out[1]["generation_errors"][0].startswith("input: column 'chat': the conversation must end with")
    # The same conversation as a whole chat is what the model was asked: the llama.cpp engine's own answer.
    [direct] = tiny_llm.complete([mapgen.Request(mapgen.Prompt(messages=CHAT))])
    assert out[0]["generations"][0] == direct.text


def test_an_openai_compatible_server_gets_the_messages_as_they_are(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    ds = datasets.Dataset.from_dict({"messages": [CHAT]})
    out = ds.map(mapgen.generate(llm, mapgen.ChatGenerationTask()), batched=True)
    [body] = fault_server.requests()
    assert body["messages"] == CHAT
    assert "continue_final_message" not in body
    assert out[0]["generations"] == ["echo: Name a color."]


# Prompts that continue their last message, on each backend.


@pytest.mark.llamacpp
def test_llamacpp_continues_a_message_with_the_ggufs_own_template(tiny_llm):
    assert tiny_llm.render(OPEN_USER_TURN) == PRE_QUERY
    assert tiny_llm.render(PREFILL).endswith("<|im_start|>assistant\nSure: the")
    # The plain chat prompt rendered by our path is what llama.cpp's chat handler renders itself.
    assert tiny_llm.render(mapgen.Prompt(messages=CHAT)) == mapgen.format_prompt(
        mapgen.Prompt(messages=CHAT), "chatml"
    )
    prefill, instruction = tiny_llm.complete([mapgen.Request(PREFILL), mapgen.Request(OPEN_USER_TURN)])
    assert prefill.text and instruction.text  # each a continuation, not a refusal of an empty turn


@pytest.mark.llamacpp
def test_transformers_renders_the_same_text_as_llamacpp_for_continued_messages(tiny_llm, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    from mapgen.llms.llamacpp import embedded_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    llm = mapgen.TransformersLLM(str(path.parent), gguf_file=path.name, device="cpu")
    for prompt in (OPEN_USER_TURN, PREFILL, mapgen.Prompt(messages=CHAT)):
        assert llm.render(tokenizer, mapgen.Request(prompt)) == tiny_llm.render(prompt)


@pytest.fixture
def fake_vllm_log(monkeypatch, tmp_path):
    fake_vllm.install(monkeypatch)
    log = tmp_path / "vllm.log"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    base._ENGINES.clear()
    yield log
    base._ENGINES.clear()


def test_vllm_chat_continues_final_messages_in_a_call_of_their_own(fake_vllm_log):
    requests = [mapgen.Request(p) for p in (mapgen.Prompt("Hi"), PREFILL, mapgen.Prompt("Bye"))]
    answers = mapgen.vLLM("m", seed=0).complete(requests)
    calls = [r for r in fake_vllm.read_log(fake_vllm_log) if r["event"] == "chat"]
    assert [c["prompts"] for c in calls] == [2, 1]  # the new-turn prompts together, then the continued one
    assert "Hi<template:assistant>" in answers[0].text
    assert answers[1].text.split(" | ")[0].endswith("<template:assistant>Sure: the")  # left open
    assert "Bye<template:assistant>" in answers[2].text


def test_an_openai_compatible_server_gets_continue_final_message_in_the_body(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    llm.complete([mapgen.Request(PREFILL)])
    [body] = fault_server.requests()
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"] == PREFILL.messages()


# Magpie


def test_magpie_is_refused_before_anything_is_sent_where_a_prompt_cannot_end_inside_a_message(fault_server):
    with pytest.raises(ValueError, match=r"cannot send.*Nothing was sent"):
        mapgen.generate(mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-test"), mapgen.MagpieTask())
    with pytest.raises(ValueError, match="InferenceEndpointsLLM"):
        mapgen.generate(mapgen.InferenceEndpointsLLM("http://127.0.0.1:9/"), mapgen.MagpieTask())
    with pytest.raises(ValueError, match="LLMPool"):
        pool = mapgen.LLMPool([mapgen.LlamaCppLLM(), mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-test")])
        mapgen.generate(pool, mapgen.MagpieTask())
    mapgen.generate(mapgen.OpenAILLM("m", base_url=fault_server.base_url), mapgen.MagpieTask())  # fine
    assert fault_server.stats()["total"] == 0


def test_magpie_tells_rows_apart_by_index_and_says_so_without_indices(tiny_llm):
    fn = mapgen.generate(tiny_llm, mapgen.MagpieTask())
    with pytest.raises(TypeError, match="with_indices=True"):
        datasets.Dataset.from_dict({"id": [0, 1]}).map(fn, batched=True)
    assert mapgen.counters.snapshot()["requests"] == 0


@pytest.mark.llamacpp
def test_magpie_on_the_embedded_model_writes_instructions_from_the_pre_query_prefix_alone(monkeypatch):
    llm = mapgen.LlamaCppLLM(temperature=0.7, max_new_tokens=16, seed=0)
    engine = llm.engine()
    sent: list[str] = []
    real = engine.create_completion

    def recording(prompt, **options):  # the real engine; we only note what it was given
        sent.append(engine.detokenize(prompt, special=True).decode())
        return real(prompt, **options)

    monkeypatch.setattr(engine, "create_completion", recording)
    ds = datasets.Dataset.from_dict({"id": [0, 1]})  # the task reads no column
    out = ds.map(mapgen.generate(llm, mapgen.MagpieTask()), batched=True, with_indices=True)

    instructions = [row[0] for row in out["instruction"]]
    assert all(isinstance(i, str) and i.strip() for i in instructions), out["generation_errors"]
    assert len(set(instructions)) == 2  # each row drew its own
    assert all(row[0] and row[0].strip() for row in out["response"])
    # The instruction rounds sent the template's prefix and nothing else; the response rounds (which
    # llama.cpp's chat handler also sends through create_completion) the instruction as a user turn.
    assert sent[:2] == [PRE_QUERY] * 2
    assert [
        text.endswith(f"{i}<|im_end|>\n<|im_start|>assistant\n")
        for text, i in zip(sent[2:], instructions, strict=True)
    ] == [
        True,
        True,
    ]
    assert out[0]["generation_prompt"] == [[{"role": "user", "content": ""}]]
    assert out[0]["conversation"][0] == [
        {"role": "user", "content": instructions[0]},
        {"role": "assistant", "content": out[0]["response"][0]},
    ]
    requests = mapgen.counters.snapshot()["requests"]
    assert requests == 4

    again = ds.map(mapgen.generate(llm, mapgen.MagpieTask()), batched=True, with_indices=True)
    assert again["conversation"] == out["conversation"]  # every round from the response store
    assert mapgen.counters.snapshot()["requests"] == requests


@pytest.mark.llamacpp
def test_magpie_multi_turn_with_a_system_prompt_on_the_embedded_model():
    llm = mapgen.LlamaCppLLM(temperature=0.7, max_new_tokens=12, seed=1)
    task = mapgen.MagpieTask(num_turns=2, system_prompt="You are a cooking assistant.")
    out = datasets.Dataset.from_dict({"id": [7]}).map(
        mapgen.generate(llm, task), batched=True, with_indices=True
    )
    [conversation] = out[0]["conversation"]
    assert out[0]["generation_errors"] == [None]
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user", "assistant"]
    assert all(m["content"].strip() for m in conversation)
    assert llm.render(task.next_prompt({"conversation": conversation[:3]})).endswith(
        "<|im_end|>\n<|im_start|>user\n"
    )


def test_a_failed_round_ends_that_conversation_with_none_and_the_reason(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "echo", "status": 500, "message": "boom"}],  # the response round fails
    )
    llm = mapgen.OpenAILLM(
        "fault", base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0, seed=0
    )
    out = datasets.Dataset.from_dict({"id": [0, 1]}).map(
        mapgen.generate(llm, mapgen.MagpieTask(), num_generations=2), batched=True, with_indices=True
    )
    assert out["instruction"] == [[None, None], [None, None]]
    assert out["conversation"] == [[None, None], [None, None]]
    assert all(e.startswith("http_500: round 2: ") for row in out["generation_errors"] for e in row)
    bodies = fault_server.requests()
    instruction_rounds = [b for b in bodies if b.get("continue_final_message")]
    assert all(b["add_generation_prompt"] is False for b in instruction_rounds)
    assert sorted(b["seed"] for b in instruction_rounds) == [0, 1, 2, 3]  # row r, generation i: r * 2 + i
    assert mapgen.counters.snapshot()["failed"] == 4


def test_magpie_only_instruction_writes_the_instruction_in_one_round(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    out = datasets.Dataset.from_dict({"id": [0, 1]}).map(
        mapgen.generate(llm, mapgen.MagpieTask(only_instruction=True)), batched=True, with_indices=True
    )
    assert out["generation_errors"] == [[None], [None]]
    # the server echoes the open (empty) user turn; the two rows are two samples (one n=2 request)
    assert sorted(out["instruction"]) == [["echo:  #0"], ["echo:  #1"]]
    assert out["response"] == [[None], [None]]
    assert all(b.get("continue_final_message") for b in fault_server.requests())  # no response round


# ConversationTask


def test_conversation_task_plays_the_user_from_a_persona_then_answers(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "first message", "reply": "How do I start running?"},
            {"contains": "next message", "reply": "And how often?"},
        ],
    )
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    task = mapgen.ConversationTask(
        num_turns=2, persona="a {{ job }} who wants to get fit", system_prompt="Coach."
    )
    out = datasets.Dataset.from_dict({"job": ["teacher"]}).map(mapgen.generate(llm, task), batched=True)
    [conversation] = out[0]["conversation"]
    assert conversation == [
        {"role": "system", "content": "Coach."},
        {"role": "user", "content": "How do I start running?"},
        {"role": "assistant", "content": "echo: How do I start running?"},
        {"role": "user", "content": "And how often?"},
        {"role": "assistant", "content": "echo: And how often?"},
    ]
    user_rounds = [
        b for b in fault_server.requests() if "a teacher who wants to get fit" in b["messages"][0]["content"]
    ]
    assert len(user_rounds) == 2
    assert "Assistant: echo: How do I start running?" in user_rounds[1]["messages"][1]["content"]


def test_conversation_task_extends_a_given_conversation(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    task = mapgen.ConversationTask(num_turns=1, persona="a student", extend=True)
    assert task.inputs == ("messages",)
    ds = datasets.Dataset.from_dict({"messages": [CHAT, CHAT[:3]]})
    out = ds.map(mapgen.generate(llm, task), batched=True)
    first, second = out[0]["conversation"][0], out[1]["conversation"][0]
    assert first[:4] == CHAT and [m["role"] for m in first[4:]] == ["assistant", "user", "assistant"]
    assert second[:3] == CHAT[:3] and [m["role"] for m in second[3:]] == ["user", "assistant"]


@pytest.mark.llamacpp
def test_conversation_task_on_the_embedded_model(tiny_llm):
    task = mapgen.ConversationTask(num_turns=2)
    out = datasets.Dataset.from_dict({"persona": ["a gardener"]}).map(
        mapgen.generate(tiny_llm, task), batched=True
    )
    [conversation] = out[0]["conversation"]
    assert out[0]["generation_errors"] == [None]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert out[0]["generation_metadata"][0]["completion_tokens"] >= 4
