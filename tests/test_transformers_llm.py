"""TransformersLLM on the CPU, with the embedded model's GGUF file read by transformers (needs the
``transformers``, ``gguf``, ``accelerate`` and CPU ``torch`` packages; nothing is downloaded)."""

from __future__ import annotations

import dataclasses

import datasets
import pytest

import mapgen
from mapgen.llms.llamacpp import embedded_model_path

pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.llamacpp  # the embedded model comes with the llama.cpp extra


@pytest.fixture(scope="module")
def llm(monkeypatch_module):
    path = embedded_model_path()
    return mapgen.TransformersLLM(
        str(path.parent), gguf_file=path.name, temperature=0.0, max_new_tokens=10, device="cpu", n_threads=1
    )


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield patch


PROMPTS = [mapgen.Prompt("Name a fruit."), mapgen.Prompt("What is two plus two?", system="Answer briefly.")]


def test_batched_left_padded_answers_match_model_generate(llm):
    answers = llm.complete([mapgen.Request(p) for p in PROMPTS])
    engine = llm.engine(None)
    tok, model = engine.tokenizer, engine.model
    assert tok.padding_side == "left"
    texts = [
        tok.apply_chat_template(p.messages(), add_generation_prompt=True, tokenize=False) for p in PROMPTS
    ]
    order = sorted(range(2), key=lambda i: len(texts[i]))
    inputs = tok([texts[i] for i in order], return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    for i, row in zip(order, out[:, inputs["input_ids"].shape[1] :], strict=True):
        assert answers[i].text == tok.decode(row, skip_special_tokens=True)
        assert answers[i].prompt_tokens == len(tok(texts[i], add_special_tokens=False)["input_ids"])
        assert answers[i].finish_reason in ("stop", "length")
        assert 0 < answers[i].completion_tokens <= 10


def test_raw_format_on_request(llm):
    import dataclasses

    raw = dataclasses.replace(llm, prompt_format="zephyr")
    assert raw.render(llm.engine(None).tokenizer, mapgen.Request(PROMPTS[1])) == mapgen.format_prompt(
        PROMPTS[1], "zephyr"
    )
    chat = llm.render(llm.engine(None).tokenizer, mapgen.Request(PROMPTS[1]))
    assert "Answer briefly." in chat and chat.rstrip().endswith("assistant")


def test_generate_map_and_seeded_sampling(llm):
    import dataclasses

    ds = datasets.Dataset.from_dict({"input": ["Name a colour.", "Name an animal.", None]})
    out = ds.map(mapgen.generate(llm, num_generations=2, cache=False), batched=True)
    assert [len(g) for g in out["generations"]] == [2, 2, 2]
    assert out["generations"][0][0] == out["generations"][0][1]  # greedy
    assert out["generations"][2] == [None, None]
    assert out["generation_errors"][2][0] == "input: column(s) ['input'] are empty"
    assert out["generation_model"][0] == ["SmolLM2-135M-Instruct.Q4_1"] * 2

    sampled = dataclasses.replace(llm, temperature=1.0, seed=5)
    requests = [mapgen.Request(PROMPTS[0], i) for i in range(3)]
    first = [c.text for c in sampled.complete(requests)]
    assert first == [c.text for c in sampled.complete(requests)]


def test_a_seeded_request_is_reproducible_on_its_own(llm):
    import dataclasses

    sampled = dataclasses.replace(llm, temperature=1.0, seed=5, max_new_tokens=12)
    [alone] = sampled.complete([mapgen.Request(PROMPTS[0], 1)])
    # in a batch with another prompt and another generation of its own, in one or several sub-batches
    requests = [mapgen.Request(PROMPTS[1], 1), mapgen.Request(PROMPTS[0], 0), mapgen.Request(PROMPTS[0], 1)]
    batched = sampled.complete(requests)
    one_by_one = dataclasses.replace(sampled, batch_size=1).complete(requests)
    assert batched[2].text == one_by_one[2].text == alone.text
    assert batched[1].text == one_by_one[1].text != alone.text  # seed + 0 is another sample


def test_without_a_seed_each_request_samples_afresh(llm):
    import dataclasses

    sampled = dataclasses.replace(llm, temperature=1.0, max_new_tokens=12)
    requests = [mapgen.Request(PROMPTS[0])] * 2
    # torch's global generator is what every forked num_proc worker inherits, equal in every run: it
    # must not decide a sample.
    texts = []
    for _ in range(2):
        torch.manual_seed(0)
        texts += [c.text for c in sampled.complete(requests)]
    assert len(set(texts)) == 4


def test_fingerprint_is_the_folder_name_and_content_not_its_place(llm):
    state = llm.fingerprint()
    name, _, digest = state["model"].partition(":sha256:")
    assert name == embedded_model_path().parent.name and len(digest) == 64
    assert state["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert mapgen.TransformersLLM("org/model").fingerprint()["model"] == "org/model"


def test_chat_template_kwargs_reach_the_chat_template(llm, monkeypatch):
    tokenizer = llm.engine(None).tokenizer
    template = "{% for m in messages %}{{ m.content }}{% endfor %}{% if enable_thinking %} <think>{% endif %}"
    monkeypatch.setattr(tokenizer, "chat_template", template)  # a thinking model's switch, in small
    request = mapgen.Request(mapgen.Prompt("hi"))
    thinking = dataclasses.replace(llm, chat_template_kwargs={"enable_thinking": True})
    assert thinking.render(tokenizer, request) == "hi <think>"
    assert llm.render(tokenizer, request) == "hi"


def test_answers_say_when_the_chat_template_opened_a_reasoning_block(llm, monkeypatch):
    # DeepSeek-R1's template ends the prompt inside <think>: the model writes its reasoning, then </think>.
    thinking = dataclasses.replace(llm, chat_template_kwargs={"enable_thinking": True})
    template = "{{ messages[-1].content }}{% if enable_thinking %}<think>\n{% endif %}"
    for config in (llm, thinking):  # (configs with other template options build engines of their own)
        monkeypatch.setattr(config.engine(None).tokenizer, "chat_template", template)
    [opened] = thinking.complete([mapgen.Request(PROMPTS[0])])
    [plain] = llm.complete([mapgen.Request(PROMPTS[0])])
    assert opened.opened_reasoning and not plain.opened_reasoning
    # a block the template opened and closed again (Qwen3 with thinking off) leaves the answer alone
    closing = "{{ messages[-1].content }}<think>\n\n</think>\n\n"
    monkeypatch.setattr(thinking.engine(None).tokenizer, "chat_template", closing)
    [closed] = thinking.complete([mapgen.Request(PROMPTS[0])])
    assert not closed.opened_reasoning


def test_sampling_parameters_take_effect(llm):
    import dataclasses

    [plain] = llm.complete([mapgen.Request(PROMPTS[1])])
    assert " " in plain.text  # else cutting at a space would prove nothing
    # the typed parameters are per call: these configs share the fixture's engine
    [stopped] = dataclasses.replace(llm, stop=[" "]).complete([mapgen.Request(PROMPTS[1])])
    assert (stopped.text, stopped.finish_reason) == (plain.text.split(" ")[0], "stop")
    [penalised] = dataclasses.replace(llm, repetition_penalty=3.0).complete([mapgen.Request(PROMPTS[1])])
    assert penalised.text != plain.text

    # the engine of test_a_seeded_request_is_reproducible_on_its_own: top_k=1 and min_p=1 are both greedy
    sampled = dataclasses.replace(llm, temperature=1.0, seed=5, max_new_tokens=12)
    request = [mapgen.Request(PROMPTS[0], 1)]
    [top_k] = dataclasses.replace(sampled, top_k=1).complete(request)
    [min_p] = dataclasses.replace(sampled, min_p=1.0).complete(request)
    [free] = sampled.complete(request)
    assert top_k.text == min_p.text != free.text


def test_unknown_generation_kwargs_are_refused_before_loading(llm):
    import dataclasses

    with pytest.raises(ValueError, match=r"\['bogus'\] are not transformers GenerationConfig options"):
        dataclasses.replace(llm, generation_kwargs={"bogus": 1}).complete([mapgen.Request(PROMPTS[0])])
