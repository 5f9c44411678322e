"""Reasoning traces apart from answers: the one place where a ``<think>...</think>`` block is split off.

Reasoning models write their reasoning before their answer. OpenAI-compatible servers that parse it
(vLLM, llama.cpp with a reasoning format) return it apart, as ``message.reasoning_content`` (or
``message.reasoning``), and the backend puts it in :attr:`Completion.reasoning
<mapgen.core.request.Completion.reasoning>`. Local engines and servers that do not parse it return it in the
text, as a ``<think>...</think>`` block at the start. Every backend's answers pass through
:func:`with_reasoning` (in :func:`mapgen.mapping.map_function.valid`, before they are parsed or stored), so
the task parses the answer alone and the trace lands in the ``generation_reasoning`` column either way.

Only a text that starts with reasoning is split; a tag anywhere else is the answer's own text (an answer
may well explain these tags). The rules:

- a ``<think>`` block at the start (after whitespace) is the reasoning; the text after the first
  ``</think>`` is the answer, stripped of the whitespace around it;
- a text whose block the prompt opened (chat templates such as DeepSeek-R1's open it, so the model writes
  only its end) starts with reasoning that the first ``</think>`` ends. Only the backend can say so, never
  the text: a local engine, which renders the prompt, marks its answers
  (:attr:`~mapgen.core.request.Completion.opened_reasoning`), and a server's config says it was asked to
  think (:func:`opens_reasoning`). An answer that merely contains a ``</think>`` is kept whole;
- a block opened by the text that never closes (cut by ``max_new_tokens``) is reasoning with no answer: a
  failed ``empty_answer`` completion that keeps its reasoning (a block the prompt opened that never closes
  is left as the answer: nothing in the text says where reasoning would have ended);
- an answer whose reasoning came apart is left as it is.

Example:
    >>> split_reasoning("<think>2 + 2 is 4.</think>\\n\\nIt is 4.")
    ('2 + 2 is 4.', 'It is 4.')
    >>> split_reasoning("No block here, though it ends with </think> when it reasons.")
    (None, 'No block here, though it ends with </think> when it reasons.')
    >>> split_reasoning("2 + 2 is 4.</think> It is 4.", opened=True)
    ('2 + 2 is 4.', 'It is 4.')
    >>> split_reasoning("<think>Let me count: one, two")
    ('Let me count: one, two', None)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mapgen.core.request import THINK_END, THINK_START, Completion
from mapgen.errors import EMPTY_ANSWER

THINKING_KWARGS = ("enable_thinking", "thinking")
"""The ``chat_template_kwargs`` that turn a template's thinking on (Qwen3's; DeepSeek-V3.1's, Granite's)."""


def opens_reasoning(llm: Any) -> bool:
    """Whether ``llm``'s answers may start inside a reasoning block that its prompt opened: it was asked to
    think (``reasoning_effort``, or ``chat_template_kwargs`` that turn thinking on) and its text can hold
    the reasoning (OpenAI's own API never returns it in the text).

    Example:
        >>> import mapgen
        >>> opens_reasoning(mapgen.vLLM("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))
        False
        >>> opens_reasoning(mapgen.vLLM("Qwen/Qwen3-8B", chat_template_kwargs={"enable_thinking": True}))
        True
    """
    if getattr(llm, "is_openai", False):
        return False
    options = getattr(llm, "chat_template_kwargs", None) or {}
    thinks = any(options.get(name) for name in THINKING_KWARGS)
    return thinks or getattr(llm, "reasoning_effort", None) is not None


def split_reasoning(text: str, *, opened: bool = False) -> tuple[str | None, str | None]:
    """``(reasoning, answer)`` of a text that may start with reasoning: a ``<think>`` block, or with
    ``opened`` (the prompt opened the block) the text before the first ``</think>``. ``reasoning`` is
    ``None`` when the text does not start with reasoning, ``answer`` is ``None`` when its block never
    closes."""
    reasoning, answer, _ = _split(text, opened)
    return reasoning, answer


def with_reasoning(completion: Completion, *, opened: bool = False) -> Completion:
    """``completion`` with the reasoning its text starts with moved to its ``reasoning``: a ``<think>``
    block at the start, or with ``opened`` (the backend's prompt opened the block: :func:`opens_reasoning`)
    the text before the first ``</think>``.

    Answers that already carry their reasoning (a server that parsed it), failed ones, and texts that do
    not start with reasoning (tags further in are the answer's text) are returned unchanged. Token
    log-probabilities are kept only when they line up with the answer (the reasoning's tokens are dropped),
    so that positions in the answer still find their tokens.

    Example:
        >>> from mapgen.core.request import THINK_END, THINK_START, Completion
        >>> done = with_reasoning(Completion(text="<think>Short.</think> Yes."))
        >>> done.text, done.reasoning
        ('Yes.', 'Short.')
        >>> cut = with_reasoning(Completion(text="<think>Still thinking", finish_reason="length"))
        >>> cut.text, cut.error_kind, cut.reasoning
        (None, 'empty_answer', 'Still thinking')
        >>> with_reasoning(Completion(text="<think> </think> Yes.")).reasoning is None  # an empty block
        True
        >>> with_reasoning(Completion(text="Write </think> to end a block.")).text  # a tag inside: text
        'Write </think> to end a block.'
    """
    text = completion.text
    if not isinstance(text, str) or completion.reasoning is not None:
        return completion
    reasoning, answer, start = _split(text, opened)
    if reasoning is None:
        return completion
    if not answer:
        return dataclasses.replace(
            completion,
            text=None,
            reasoning=reasoning,
            error=f"reasoning but no answer (finish_reason={completion.finish_reason})",
            error_kind=EMPTY_ANSWER,
            tokens=None,
            top_logprobs=None,
        )
    tokens, top_logprobs = _answer_tokens(completion, text, start)
    # An empty block (Qwen3 with thinking off writes one) is no reasoning.
    return dataclasses.replace(
        completion, text=answer, reasoning=reasoning or None, tokens=tokens, top_logprobs=top_logprobs
    )


def _split(text: str, opened: bool) -> tuple[str | None, str | None, int]:
    """Reasoning, answer, and where the answer starts in ``text`` (``opened``: the prompt opened a block)."""
    body_start = len(text) - len(text.lstrip())
    if text.startswith(THINK_START, body_start):
        inner = body_start + len(THINK_START)
        end = text.find(THINK_END, inner)
        if end < 0:
            return text[inner:].strip(), None, len(text)
    elif opened:
        inner = 0
        end = text.find(THINK_END)
        if end < 0:
            return None, text, 0
    else:
        return None, text, 0
    after = end + len(THINK_END)
    start = len(text) - len(text[after:].lstrip())
    return text[inner:end].strip(), text[start:].rstrip(), start


def _answer_tokens(
    completion: Completion, text: str, start: int
) -> tuple[list[str] | None, list[dict[str, float]] | None]:
    """The tokens (and their alternatives) of the answer starting at ``text[start]``: those after the
    reasoning, the first one cut to the answer when it began with the whitespace the answer drops; ``None,
    None`` when the tokens do not line up (a weighted rating would read the wrong token)."""
    tokens, alternatives = completion.tokens, completion.top_logprobs
    if not tokens or alternatives is None or "".join(tokens) != text:
        return None, None
    offset = 0
    for i, token in enumerate(tokens):
        if offset <= start < offset + len(token):
            if text[offset:start].strip():
                return None, None  # the answer's first token holds the end of the reasoning
            return [token[start - offset :], *tokens[i + 1 :]], alternatives[i:]
        offset += len(token)
    return None, None
