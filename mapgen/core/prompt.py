"""The prompt a task renders for one row: a conversation of chat messages, the unit every backend sends.

A :class:`Prompt` is a sequence of :class:`Message` s (``system``, ``user``, ``assistant`` turns, in the
Hugging Face chat format that chat datasets and TRL use), each with optional :class:`Image` s. Chat
backends send the messages and let the model's chat template format them; raw-completion engines render
them with the model's chat template or a named format from :mod:`mapgen.llms.formats`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Image:
    """An image in a message: its bytes and media type, or a URL: an ``http(s)://`` one, which the server
    fetches itself, or a ``data:`` one, which each wire format sends in its API's own form.

    Example:
        >>> Image(b"\\x89PNG...", "image/png").url_or_data_url()[:22]
        'data:image/png;base64,'
        >>> Image(url="https://example.com/cat.jpg").url_or_data_url()
        'https://example.com/cat.jpg'
    """

    data: bytes | None = None
    media_type: str = "image/png"
    url: str | None = None
    source: str | None = field(default=None, compare=False, repr=False)
    """The ``data:`` URL the bytes were read from, where they were: the image's identity in store keys, as it
    was before ``data:`` URLs were decoded, so answers stored then still serve."""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("an Image has either data (bytes) or a url, not both or neither.")
        if self.url is not None and not self.url[:8].lower().startswith(("http://", "https://", "data:")):
            raise ValueError(f"an Image's url is an http(s):// or a data: URL, got {self.url[:50]!r}.")

    def url_or_data_url(self) -> str:
        """The URL to send: the image's own, or its bytes as a base64 ``data:`` URL (RFC 2397)."""
        if self.url is not None:
            return self.url
        import base64

        return f"data:{self.media_type};base64,{base64.b64encode(self.data or b'').decode()}"

    def identity(self) -> str:
        """What identifies the image in a store key: a SHA-256 of its bytes, or its URL (for bytes read from
        a ``data:`` URL, that URL)."""
        if self.url is not None:
            return self.url
        if self.source is not None:
            return self.source
        return f"{self.media_type}:sha256:{hashlib.sha256(self.data or b'').hexdigest()}"


@dataclass(frozen=True)
class Message:
    """One chat turn: a role (``system``, ``user`` or ``assistant``), its text, and images, if any."""

    role: str
    content: str
    images: tuple[Image, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a message's role must be one of {ROLES}, got {self.role!r}.")
        if not isinstance(self.content, str):
            raise TypeError(f"a message's content must be a string, got {type(self.content).__name__}.")
        object.__setattr__(self, "images", tuple(self.images))

    @classmethod
    def from_dict(cls, message: Mapping[str, Any] | Message) -> Message:
        """A message from the chat format's ``{"role": ..., "content": ...}``."""
        if isinstance(message, Message):
            return message
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"a chat message is a mapping with 'role' and 'content', got {message!r}.")
        return cls(message["role"], message["content"])


@dataclass(frozen=True, init=False, repr=False)
class Prompt:
    """A conversation to answer: its :class:`Message` s, in order.

    ``Prompt(user, system=...)`` is the common one-question prompt; ``Prompt(messages=[...])`` takes a
    whole conversation in the chat format. ``images`` attach to the last user message.
    ``continue_final_message=True`` asks the model to write on from the end of the last message instead
    of answering it in a new assistant turn (an assistant prefill, or Magpie's open user turn).

    Raises:
        ValueError: no message, an unknown role, or a message that is not ``{"role", "content"}``.

    Example:
        >>> Prompt("Name a color.", system="Be brief.").messages()
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Name a color.'}]
        >>> chat = Prompt(messages=[
        ...     {"role": "user", "content": "Hi"},
        ...     {"role": "assistant", "content": "Hello!"},
        ...     {"role": "user", "content": "Name a color."},
        ... ])
        >>> chat.user, len(chat.turns)
        ('Name a color.', 3)
    """

    turns: tuple[Message, ...]
    continue_final_message: bool = field(default=False)

    def __init__(
        self,
        user: str | None = None,
        system: str | None = None,
        *,
        messages: Iterable[Mapping[str, Any] | Message] = (),
        images: Sequence[Image] = (),
        continue_final_message: bool = False,
    ) -> None:
        turns = [Message.from_dict(m) for m in messages]
        if system is not None and system != "":
            turns.insert(0, Message("system", system))
        if user is not None:
            turns.append(Message("user", user))
        if images:
            users = [i for i, m in enumerate(turns) if m.role == "user"]
            if not users:
                raise ValueError("images attach to a user message, and this prompt has none.")
            last = turns[users[-1]]
            turns[users[-1]] = Message(last.role, last.content, (*last.images, *images))
        if not turns:
            raise ValueError("a prompt needs at least one message.")
        object.__setattr__(self, "turns", tuple(turns))
        object.__setattr__(self, "continue_final_message", bool(continue_final_message))

    @property
    def system(self) -> str | None:
        """The system message's text, if the conversation starts with one."""
        return self.turns[0].content if self.turns[0].role == "system" else None

    @property
    def user(self) -> str:
        """The last user message's text (``""`` if there is none)."""
        return next((m.content for m in reversed(self.turns) if m.role == "user"), "")

    @property
    def images(self) -> tuple[Image, ...]:
        """Every image of the conversation, in order."""
        return tuple(image for m in self.turns for image in m.images)

    def messages(self) -> list[dict[str, str]]:
        """The conversation in the chat format (``[{"role", "content"}]``), text only: what chat templates
        render and what the ``generation_prompt`` column keeps. Wire formats add images themselves."""
        return [{"role": m.role, "content": m.content} for m in self.turns]

    def identity(self) -> list[Any]:
        """Plain data that identifies this prompt in a store key: the messages, a digest of each image's
        bytes (not the bytes), and whether the last message is continued."""
        identity: list[Any] = [self.messages()]
        if self.images:
            identity.append([[image.identity() for image in m.images] for m in self.turns])
        if self.continue_final_message:
            identity.append("continue_final_message")
        return identity

    def __repr__(self) -> str:
        simple = not self.images and not self.continue_final_message
        roles = [m.role for m in self.turns]
        if simple and roles in (["user"], ["system", "user"]):
            system = f", system={self.system!r}" if self.system is not None else ""
            return f"Prompt(user={self.user!r}{system})"
        flags = ", continue_final_message=True" if self.continue_final_message else ""
        images = f", images={len(self.images)}" if self.images else ""
        return f"Prompt(messages={self.messages()!r}{images}{flags})"
