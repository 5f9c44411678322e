import pytest

from mapgen import Prompt, format_prompt
from mapgen.llms.formats import PROMPT_FORMATS

PROMPT = Prompt("What is 2+2?", system="You are terse.")

GOLDEN = {
    "default": "You are terse.\nWhat is 2+2?",
    "llama2": "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST]",
    "chatml": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "zephyr": "<|system|>\nYou are terse.</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n",
    "notus": "<|system|>\nYou are terse.</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_named_formats_render_golden_strings(name):
    assert format_prompt(PROMPT, name) == GOLDEN[name]


def test_every_named_format_has_a_golden_string():
    assert set(PROMPT_FORMATS) == set(GOLDEN)


def test_formats_without_system_prompt_leave_no_empty_system_block():
    assert format_prompt(Prompt("Hi"), "default") == "Hi"
    assert format_prompt(Prompt("Hi"), "llama2") == "<s>[INST] Hi [/INST]"
    assert "system" not in format_prompt(Prompt("Hi"), "chatml")


def test_a_function_can_stand_in_for_a_format():
    assert format_prompt(PROMPT, lambda p: f"Q: {p.user}\nA:") == "Q: What is 2+2?\nA:"


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown prompt format 'alpaca'.*chatml.*llama2"):
        format_prompt(PROMPT, "alpaca")


def test_openai_format_is_the_message_list():
    assert PROMPT.messages() == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
    ]
