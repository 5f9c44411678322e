"""What the Anthropic test server and its batches share: request ids, times, the error shape, the text a
scripted rule matches.

>>> import json
>>> error_body = json.loads(error_response(529, "Overloaded").text)
>>> error_body["type"], error_body["error"]
('error', {'type': 'overloaded_error', 'message': 'Overloaded'})
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from aiohttp import web

from tests.servers import anthropic_schema as schema

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Anthropic's error shape, with the ``request-id`` header every answer has."""
    rid = request_id()
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
    body["request_id"] = rid
    return web.json_response(body, status=status, headers={"request-id": rid, **(headers or {})})


def last_user_text(params: schema.MessageCreateParams) -> str:
    """The text of the last user turn (its text blocks and text tool results, joined by newlines)."""
    texts: list[str] = []
    for message in reversed(params.messages):
        if message.role != "user":
            if texts:
                break
            continue
        parts: list[str] = []
        for block in [message.content] if isinstance(message.content, str) else message.content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, schema.TextBlock):
                parts.append(block.text)
            elif isinstance(block, schema.ToolResultBlock) and isinstance(block.content, str):
                parts.append(block.content)
        texts[:0] = parts
    return "\n".join(texts)
