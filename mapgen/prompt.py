"""The prompt a task renders for one row: an optional system message and a user message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """A system and a user message, the unit every backend sends.

    Chat backends send :meth:`messages` and let the model's chat template format them; raw-completion
    engines turn it into one string with a format from :mod:`mapgen.formats`.

    Example:
        >>> Prompt("Name a color.", system="Be brief.").messages()
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Name a color.'}]
    """

    user: str
    system: str | None = None

    def messages(self) -> list[dict[str, str]]:
        """The prompt as OpenAI-style chat messages."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": self.user}]
