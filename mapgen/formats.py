"""Named prompt formats that turn a :class:`~mapgen.prompt.Prompt` into one string.

Only raw-completion engines need them: chat backends send messages and let the model's chat template do
the formatting, which is the default wherever a chat template exists. A format is a name from
:data:`PROMPT_FORMATS` or any function ``Prompt -> str``.

Example:
    >>> from mapgen.prompt import Prompt
    >>> print(format_prompt(Prompt("Hi", system="Be kind."), "chatml"))
    <|im_start|>system
    Be kind.<|im_end|>
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
    <BLANKLINE>
"""

from __future__ import annotations

from collections.abc import Callable

from mapgen.prompt import Prompt

PromptFormat = str | Callable[[Prompt], str]


def default_format(prompt: Prompt) -> str:
    """System prompt, a newline, then the user prompt."""
    return f"{prompt.system}\n{prompt.user}" if prompt.system else prompt.user


def llama2_format(prompt: Prompt) -> str:
    """Llama 2 chat: ``<s>[INST] <<SYS>>`` system ``<</SYS>>`` user ``[/INST]``."""
    system = f"<<SYS>>\n{prompt.system}\n<</SYS>>\n\n" if prompt.system else ""
    return f"<s>[INST] {system}{prompt.user} [/INST]"


def chatml_format(prompt: Prompt) -> str:
    """ChatML blocks, ending with an open assistant turn."""
    blocks = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt.messages()]
    return "".join(blocks) + "<|im_start|>assistant\n"


def zephyr_format(prompt: Prompt) -> str:
    """Zephyr and Notus: ``<|system|>``, ``<|user|>``, ``<|assistant|>`` turns ended by ``</s>``."""
    blocks = [f"<|{m['role']}|>\n{m['content']}</s>\n" for m in prompt.messages()]
    return "".join(blocks) + "<|assistant|>\n"


PROMPT_FORMATS: dict[str, Callable[[Prompt], str]] = {
    "default": default_format,
    "llama2": llama2_format,
    "chatml": chatml_format,
    "zephyr": zephyr_format,
    "notus": zephyr_format,
}
"""Named formats. ``"openai"`` is not here: it means chat messages, which chat backends send as is."""


def format_prompt(prompt: Prompt, prompt_format: PromptFormat) -> str:
    """Render ``prompt`` as one string with a named format or a function."""
    if callable(prompt_format):
        return prompt_format(prompt)
    return resolve_format(prompt_format)(prompt)


def resolve_format(name: str) -> Callable[[Prompt], str]:
    """The format function for ``name``, or a ``ValueError`` listing the known names."""
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        known = ", ".join(sorted([*PROMPT_FORMATS, "openai"]))
        raise ValueError(
            f"Unknown prompt format {name!r}; expected one of: {known}, or a function."
        ) from None
