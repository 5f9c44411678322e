"""Named prompt formats that turn a :class:`~mapgen.core.prompt.Prompt` into one string.

Only raw-completion engines need them: chat backends send messages and let the model's chat template do
the formatting, which is the default wherever a chat template exists. A format is a name from
:data:`PROMPT_FORMATS` or any function ``Prompt -> str``.

Every format renders every turn of a conversation, assistant turns included. A prompt with
``continue_final_message`` ends where its last message ends, with no end-of-turn marker and no new
assistant turn: the model writes on from there (an assistant prefill, or Magpie's open user turn).

Example:
    >>> from mapgen.core.prompt import Prompt
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
from typing import Any

from mapgen.core.prompt import Prompt

PromptFormat = str | Callable[[Prompt], str]


def default_format(prompt: Prompt) -> str:
    """Each message's text on its own line (system first), with no role markers: for base models."""
    return "\n".join(m.content for m in prompt.turns)


def llama2_format(prompt: Prompt) -> str:
    """Llama 2 chat: ``<s>[INST] <<SYS>>`` system ``<</SYS>>`` user ``[/INST]`` answer ``</s>``, per
    exchange."""
    text, system = "", prompt.system
    turns = [m for m in prompt.turns if m.role != "system"]
    for k, m in enumerate(turns):
        last = k == len(turns) - 1
        if m.role == "user":
            header = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system and k == 0 else ""
            text += f"<s>[INST] {header}{m.content}"
            text += "" if last and prompt.continue_final_message else " [/INST]"
        else:
            text += f" {m.content}" + ("" if last and prompt.continue_final_message else " </s>")
    return text


def _blocks(prompt: Prompt, start: str, end: str, assistant: str) -> str:
    """Role-tagged blocks: ``start(role)`` text ``end`` each, then an open assistant turn, or the last
    block left open when the prompt continues it."""
    blocks = [f"{start.format(role=m.role)}{m.content}{end}" for m in prompt.turns]
    if prompt.continue_final_message:
        return "".join(blocks)[: -len(end)]
    return "".join(blocks) + assistant


def chatml_format(prompt: Prompt) -> str:
    """ChatML blocks, ending with an open assistant turn."""
    return _blocks(prompt, "<|im_start|>{role}\n", "<|im_end|>\n", "<|im_start|>assistant\n")


def zephyr_format(prompt: Prompt) -> str:
    """Zephyr and Notus: ``<|system|>``, ``<|user|>``, ``<|assistant|>`` turns ended by ``</s>``."""
    return _blocks(prompt, "<|{role}|>\n", "</s>\n", "<|assistant|>\n")


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


CONTINUE_MARKER = "MAPGENCONTINUEMARKER"
"""What :func:`render_chat_template` puts in place of the continued message, to find where it begins."""

ChatTemplate = Callable[[list[dict[str, Any]], bool], str]
"""A model's chat template as a function: ``(messages, add_generation_prompt) -> text``."""


def render_chat_template(template: ChatTemplate, prompt: Prompt) -> str:
    """``prompt`` rendered by a model's own chat template, for engines that take raw text.

    With ``continue_final_message``, the template renders the conversation with a marker in place of the
    last message's text and no generation prompt; the text is cut at the marker and the message's own
    text put back. So the model writes on from the end of that message, whatever the template, even an
    empty one: that cut is Magpie's pre-query prefix (the template up to where a user's text begins).

    Raises:
        ValueError: the template dropped the last message, so there is nowhere to continue from.

    Example:
        >>> chatml = lambda messages, _: "".join(
        ...     f"<|im_start|>{m['role']}\\n{m['content']}<|im_end|>\\n" for m in messages)
        >>> render_chat_template(chatml, Prompt(messages=[{"role": "user", "content": ""}],
        ...                                     continue_final_message=True))
        '<|im_start|>user\\n'
    """
    messages = prompt.messages()
    if not prompt.continue_final_message:
        return template(messages, True)
    final = messages[-1]
    text = template([*messages[:-1], {**final, "content": CONTINUE_MARKER}], False)
    if CONTINUE_MARKER not in text:
        raise ValueError(
            "continue_final_message: the chat template does not render the last message, so the model "
            "cannot continue it; use a prompt_format instead."
        )
    return text[: text.rindex(CONTINUE_MARKER)] + final["content"]


def resolve_format(name: str) -> Callable[[Prompt], str]:
    """The format function for ``name``, or a ``ValueError`` listing the known names."""
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        known = ", ".join(sorted([*PROMPT_FORMATS, "openai"]))
        raise ValueError(
            f"Unknown prompt format {name!r}; expected one of: {known}, or a function."
        ) from None
