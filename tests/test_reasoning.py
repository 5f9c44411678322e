"""Reasoning traces: split from answers (mapgen.mapping.reasoning), from a server's reasoning field or a
<think> block, into generation_reasoning / labelling_reasoning; reasoning options sent and validated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import datasets
import pytest

import mapgen
from mapgen.core.request import Completion
from mapgen.mapping.map_function import valid
from mapgen.mapping.reasoning import opens_reasoning, split_reasoning, with_reasoning


def fault_llm(server, **kwargs) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **kwargs)


def questions(*texts: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input": list(texts)})


# Splitting


QWEN3 = (
    "Qwen3 ends its reasoning with </think> and then writes the final answer, so a parser must split on it."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>b", ("a", "b")),
        ("\n <think>\nstep 1\nstep 2\n</think>\n\nThe answer.\n", ("step 1\nstep 2", "The answer.")),
        ("<think>cut short by max_new_tokens", ("cut short by max_new_tokens", None)),
        ("<think>a</think>b</think>c", ("a", "b</think>c")),  # the first close ends the block
        # Tags inside an ordinary answer are its text, whatever they are.
        (QWEN3, (None, QWEN3)),
        ("a</think>b<think>c</think>d", (None, "a</think>b<think>c</think>d")),
        ("No reasoning, and a <think> tag later.", (None, "No reasoning, and a <think> tag later.")),
        ("Answer that quotes <think>x</think> inside", (None, "Answer that quotes <think>x</think> inside")),
        ("<THINK>a</THINK>b", (None, "<THINK>a</THINK>b")),  # not the tag (vLLM's parsers match it exactly)
        ("<thinking>a</thinking>b", (None, "<thinking>a</thinking>b")),
        ("", (None, "")),
    ],
)
def test_split_reasoning(text, expected):
    assert split_reasoning(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("opened by the template</think>\nAnswer", ("opened by the template", "Answer")),  # DeepSeek-R1
        ("<think>a</think>b", ("a", "b")),
        ("r</think>a</think>b", ("r", "a</think>b")),
        ("no close: the answer as it came", (None, "no close: the answer as it came")),
    ],
)
def test_a_block_the_template_opened_ends_at_the_first_close(text, expected):
    assert split_reasoning(text, opened=True) == expected


def test_an_ordinary_answer_that_names_the_tags_is_kept_whole():
    came = Completion(text=QWEN3, finish_reason="stop")
    assert with_reasoning(came) is came
    assert valid(came) is came  # the check every backend's answers pass


def test_a_block_with_no_answer_after_it_is_an_empty_answer_that_keeps_its_reasoning():
    done = with_reasoning(Completion(text="<think>all thought</think>  ", finish_reason="stop"))
    assert (done.text, done.reasoning, done.error_kind) == (None, "all thought", "empty_answer")


def test_a_server_parsed_reasoning_is_left_as_it_came():
    came = Completion(text="<think>quoted</think> on purpose", reasoning="the server's")
    assert with_reasoning(came) is came


def test_log_probabilities_follow_the_answer_when_tokens_line_up():
    text = "<think>hm</think>\n\n 4 is it"
    tokens = ["<think>", "hm", "</think>", "\n\n", " 4", " is", " it"]
    alternatives = [{t: float(-i)} for i, t in enumerate(tokens)]
    done = with_reasoning(Completion(text=text, tokens=tokens, top_logprobs=alternatives))
    assert done.text == "4 is it"
    assert done.tokens == ["4", " is", " it"]  # the whitespace the answer dropped is cut from its token
    assert done.top_logprobs == alternatives[4:]
    # Tokens that do not spell the text cannot be placed: dropped rather than misread.
    odd = with_reasoning(Completion(text=text, tokens=["x"], top_logprobs=[{}]))
    assert (odd.text, odd.tokens, odd.top_logprobs) == ("4 is it", None, None)


def test_every_backends_answers_go_through_the_split():
    # valid() is the check every backend's answers pass (MapFunction._send) before parsing and storing.
    assert valid(Completion(text="<think>r</think>a")).reasoning == "r"


# Through the fault server


REPLIES = [
    {"contains": "field", "reply": "Paris.", "reasoning": "The capital of France is Paris."},
    {
        "contains": "other name",
        "reply": "Rome.",
        "reasoning": "Italy's capital.",
        "reasoning_field": "reasoning",
    },
    {"contains": "think", "reply": "<think>2 + 2 is 4.</think>\n\nIt is 4."},
    {"contains": "cut", "reply": "<think>Let me count: one, two", "finish_reason": "length"},
    {"contains": "plain", "reply": "No trace."},
]


def test_reasoning_goes_to_its_column_and_the_answer_column_holds_the_answer_alone(fault_server):
    fault_server.configure(api_key=fault_server.api_key, replies=REPLIES)
    ds = questions(
        "Reasoning in a field?", "Under the other name?", "Do you think?", "Is it cut?", "A plain one?"
    )
    fn = mapgen.generate(fault_llm(fault_server, seed=0), mapgen.TextGenerationTask())
    out = ds.map(fn, batched=True)
    assert out["generations"] == [["Paris."], ["Rome."], ["It is 4."], [None], ["No trace."]]
    assert out["generation_reasoning"] == [
        ["The capital of France is Paris."],
        ["Italy's capital."],
        ["2 + 2 is 4."],
        ["Let me count: one, two"],  # kept with the failure, so a bigger max_new_tokens can be judged
        [None],
    ]
    assert out["raw_generation_responses"][2] == ["It is 4."]
    assert out["generation_errors"][3][0].startswith(
        "empty_answer: reasoning but no answer (finish_reason=length)"
    )
    assert [e for [e] in out["generation_errors"]].count(None) == 4

    # Re-run from the response store: nothing sent, the same traces.
    fault_server.configure(api_key=fault_server.api_key, replies=REPLIES)
    again = ds.map(fn, batched=True)
    assert fault_server.stats()["total"] == 1  # only the failed answer is asked again
    assert again["generation_reasoning"] == out["generation_reasoning"]
    assert again["generations"] == out["generations"]
    assert [m["from_store"] for [m] in again["generation_metadata"]] == [True, True, True, False, True]


def test_the_judges_reasoning_is_kept_and_its_rating_read_from_the_answer(fault_server):
    reply = "<think>The answer is right but terse.</think>\nRating: 4\nRationale: ok"
    fault_server.configure(api_key=fault_server.api_key, default_reply=reply)
    task = mapgen.UltraFeedbackTask(per_generation=True)
    fn = mapgen.label(fault_llm(fault_server), task, weighted_ratings=True)
    ds = datasets.Dataset.from_dict({"input": ["q"], "generations": [["a", "b"]]})
    [row] = ds.map(fn, batched=True)
    assert row["labelling_reasoning"] == ["The answer is right but terse."] * 2
    assert row["raw_labelling_response"] == ["Rating: 4\nRationale: ok"] * 2
    assert row["rating"] == [4, 4]
    assert row["weighted_rating"] == [4.0, 4.0]  # log-probabilities found the digit in the answer
    assert row["labelling_error"] is None


def test_the_hub_client_keeps_the_reasoning_too(fault_server):
    fault_server.configure(api_key=fault_server.api_key, replies=REPLIES)
    llm = mapgen.InferenceEndpointsLLM(
        "fault", base_url=fault_server.base_url, token=fault_server.api_key, transport="hub"
    )
    out = questions("Under the other name?", "Do you think?").map(mapgen.generate(llm), batched=True)
    assert out["generations"] == [["Rome."], ["It is 4."]]
    assert out["generation_reasoning"] == [["Italy's capital."], ["2 + 2 is 4."]]


def test_tags_in_a_plain_models_answer_stay_in_the_answer_columns(fault_server):
    fault_server.configure(api_key=fault_server.api_key, default_reply=QWEN3)
    out = questions("How does Qwen3 end its reasoning?").map(
        mapgen.generate(fault_llm(fault_server)), batched=True
    )
    assert out["generations"] == out["raw_generation_responses"] == [[QWEN3]]
    assert out["generation_reasoning"] == [[None]] and out["generation_errors"] == [[None]]


@pytest.mark.parametrize(
    "options", [{"reasoning_effort": "low"}, {"chat_template_kwargs": {"enable_thinking": True}}]
)
def test_a_backend_that_thinks_says_its_template_opened_the_block(fault_server, options):
    fault_server.configure(api_key=fault_server.api_key, default_reply="R.</think>\n\nA.")
    out = questions("Think?").map(mapgen.generate(fault_llm(fault_server, **options)), batched=True)
    assert (out["generations"], out["generation_reasoning"]) == ([["A."]], [["R."]])


def test_which_backends_say_a_template_opened_the_block():
    server = {"base_url": "http://127.0.0.1:1/v1", "api_key": "k"}
    assert not opens_reasoning(mapgen.OpenAILLM("m", **server))
    assert opens_reasoning(mapgen.OpenAILLM("m", reasoning_effort="high", **server))
    assert opens_reasoning(mapgen.OpenAILLM("m", chat_template_kwargs={"thinking": True}, **server))
    assert not opens_reasoning(
        mapgen.OpenAILLM("m", chat_template_kwargs={"enable_thinking": False}, **server)
    )
    # OpenAI's own API never puts reasoning in the text: a tag in its answer is the answer's.
    assert not opens_reasoning(mapgen.OpenAILLM("o4-mini", reasoning_effort="low", api_key="sk-test"))


# Options


def test_reasoning_effort_and_chat_template_kwargs_are_sent(fault_server):
    fault_server.configure(api_key=fault_server.api_key, replies=REPLIES)
    llm = fault_llm(fault_server, reasoning_effort="high")
    out = questions("Reasoning in a field?").map(mapgen.generate(llm), batched=True)
    assert out["generation_reasoning"] == [["The capital of France is Paris. (effort: high)"]]
    [body] = fault_server.requests()
    assert body["reasoning_effort"] == "high" and "chat_template_kwargs" not in body

    off = fault_llm(fault_server, chat_template_kwargs={"enable_thinking": False})
    out = questions("Reasoning in a field?").map(mapgen.generate(off), batched=True)
    assert out["generation_reasoning"] == [[None]]  # the server's template did not think
    assert fault_server.requests()[-1]["chat_template_kwargs"] == {"enable_thinking": False}


def test_a_reasoning_effort_the_api_does_not_know_is_refused_at_construction(fault_server):
    with pytest.raises(ValueError, match="reasoning_effort must be one of"):
        fault_llm(fault_server, reasoning_effort="extreme")
    # Nor can extra_body smuggle it past the check (or override the field): mapgen owns that body field.
    with pytest.raises(ValueError, match="reasoning_effort"):
        fault_llm(fault_server, max_retries=0, extra_body={"reasoning_effort": "extreme"})


def test_chat_template_kwargs_are_refused_for_openais_own_api():
    with pytest.raises(ValueError, match="OpenAI's API has none"):
        mapgen.OpenAILLM("o4-mini", api_key="sk-test", chat_template_kwargs={"enable_thinking": False})


def test_chat_template_kwargs_need_the_chat_template_on_local_engines():
    with pytest.raises(ValueError, match="unused with a prompt_format"):
        mapgen.vLLM("Qwen/Qwen3-8B", prompt_format="chatml", chat_template_kwargs={"enable_thinking": False})


# The example


def test_reasoning_traces_example(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "17 * 23", "reply": "391", "reasoning": "17 * 23 = 340 + 51 = 391."},
            {"contains": "221", "reply": "<think>221 = 13 * 17.</think>\nNo: 221 = 13 * 17."},
        ],
    )
    path = Path(__file__).parent.parent / "examples" / "reasoning_traces.py"
    spec = importlib.util.spec_from_file_location("example_reasoning_traces", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ds = module.main(model="fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    assert ds["generations"] == [["391"], ["No: 221 = 13 * 17."]]
    assert ds["generation_reasoning"] == [["17 * 23 = 340 + 51 = 391. (effort: low)"], ["221 = 13 * 17."]]


def test_an_answer_whose_prompt_opened_the_block_is_split_at_its_first_close():
    from mapgen.mapping.map_function import valid

    opened = valid(mapgen.Completion("Count: 2 + 2.</think>\n\nIt is 4.", opened_reasoning=True))
    assert (opened.reasoning, opened.text) == ("Count: 2 + 2.", "It is 4.")
    plain = valid(mapgen.Completion("Count: 2 + 2.</think>\n\nIt is 4."))
    assert (plain.reasoning, plain.text) == (None, "Count: 2 + 2.</think>\n\nIt is 4.")
