"""Anthropic's Message Batches API on the Anthropic test server (:mod:`tests.servers.anthropic_server`).

- ``POST /v1/messages/batches`` takes ``{"requests": [{"custom_id", "params"}, ...]}`` and answers a
  ``message_batch`` (``processing_status`` ``in_progress``). Checked at creation, as the reference says: the
  envelope (unknown fields refused), 1 to ``max_batch_requests`` requests (100,000 at Anthropic), at most
  ``max_batch_bytes`` (256 MB: 413 ``request_too_large`` above), each ``custom_id`` matching
  ``^[a-zA-Z0-9_-]{1,64}$`` and unique, ``params`` an object without ``stream`` and with ``max_tokens`` of
  at least 1. Everything else in ``params`` is validated when the request is processed, "asynchronously", as
  at Anthropic: a malformed request becomes an ``errored`` result with the 400 error ``/v1/messages`` would
  have given (``{"type": "error", "error": {"type": "invalid_request_error", "message"}}``).
- Processing is simulated. With ``batch_delay`` seconds (0 by default) the requests are processed evenly
  over that time, in order, and the batch ends when the last one is; with ``batch_delay: None`` nothing is
  processed until ``POST /control/batches/{id}`` says so: ``{"processed": k}`` processes the first ``k``
  requests, ``{"expire": true}`` ends the batch now with the unprocessed requests ``expired`` (as a batch
  that reaches its 24 hours does; the others keep their results), ``{}`` processes everything.
- ``POST /v1/messages/batches/{id}/cancel`` answers ``processing_status: canceling``; the batch has ended
  (``ended``) by the next read, its unprocessed requests ``canceled``, the processed ones kept.
- ``GET /v1/messages/batches/{id}``: ``request_counts`` are all ``processing`` until the batch ends, as the
  reference says, then ``succeeded``/``errored``/``canceled``/``expired``; ``results_url`` is set once ended.
- ``GET /v1/messages/batches/{id}/results``: JSONL, one ``{"custom_id", "result"}`` per request, with
  ``result`` ``{"type": "succeeded", "message"}`` (``usage.service_tier``: ``batch``; the 50% price is the
  client's to apply), ``{"type": "errored", "error"}``, ``{"type": "canceled"}`` or ``{"type": "expired"}``.
  Before the batch ends: 400 ``invalid_request_error``.
- ``GET /v1/messages/batches``: newest first, ``limit`` (1 to 1,000, default 20), ``after_id``,
  ``before_id``; ``{"data", "has_more", "first_id", "last_id"}``. ``DELETE .../{id}`` once ended.

Answers are the server's, by the same rules as ``/v1/messages`` (a scripted ``status`` rule makes the item
``errored`` with that error). ``batch_results`` rules force an outcome on items whose last user turn
contains ``"contains"``: ``{"contains": "x", "type": "errored"|"expired"|"canceled", "error": {"type",
"message"}}`` (``error`` defaults to an ``api_error``).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.servers import anthropic_schema as schema
from tests.servers.anthropic_common import ERROR_TYPES, error_response, last_user_text, request_id, rfc3339

if TYPE_CHECKING:
    from tests.servers.anthropic_server import AnthropicServer

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DAY = 24 * 3600


class Batch:
    def __init__(self, requests: list[dict[str, Any]], version: str, delay: float | None) -> None:
        self.id = "msgbatch_" + uuid.uuid4().hex[:24]
        self.requests = requests
        self.version = version
        self.delay = delay
        self.created = time.time()
        self.manual = 0  # requests processed by POST /control
        self.cancel_at: float | None = None
        self.ended_at: float | None = None
        self.end_kind = "canceled"  # what the unprocessed requests become when the batch ends early
        self.results: list[dict[str, Any]] | None = None

    def processed(self, now: float) -> int:
        n = len(self.requests)
        if self.delay is None:
            return min(n, self.manual)
        timed = n if self.delay <= 0 else int((now - self.created) / self.delay * n)
        return min(n, max(timed, self.manual))


class MessageBatches:
    def __init__(self, server: AnthropicServer) -> None:
        self.server = server
        self.batches: dict[str, Batch] = {}

    def clear(self) -> None:
        self.batches = {}

    # -- processing --------------------------------------------------------------------------------------

    def outcome(self, request: dict[str, Any], version: str) -> dict[str, Any]:
        """The ``result`` of one processed request."""
        server = self.server

        def errored(status: int, message: str) -> dict[str, Any]:
            error = {"type": ERROR_TYPES.get(status, "api_error"), "message": message}
            return {"type": "errored", "error": {"type": "error", "error": error}}

        params = schema.parse_params(request["params"], version)
        if isinstance(params, str):
            return errored(400, params)
        text = last_user_text(params)
        for rule in server.settings["batch_results"]:
            if rule.get("contains", "") in text:
                if rule["type"] == "errored":
                    error = rule.get("error", {"type": "api_error", "message": "Internal server error"})
                    return {"type": "errored", "error": {"type": "error", "error": error}}
                return {"type": rule["type"]}
        problem = server.check(params)
        if problem is not None:
            return errored(*problem)
        rule = server.rule_for(text, params.model)
        if rule is not None and rule.get("status"):
            return errored(rule["status"], rule.get("message", f"scripted {rule['status']}"))
        if rule is not None and "body" in rule:
            return {"type": "succeeded", "message": rule["body"]}
        message = server.message(params, rule)
        message["usage"]["service_tier"] = "batch"
        return {"type": "succeeded", "message": message}

    def advance(self, batch: Batch) -> None:
        """Bring ``batch`` up to now: end it when every request is processed, or when it was cancelled."""
        if batch.ended_at is not None:
            return
        now = time.time()
        done = batch.processed(now)
        if done < len(batch.requests) and batch.cancel_at is None:
            return
        if batch.cancel_at is not None:
            done = batch.processed(batch.cancel_at)
        self.end(batch, done, now)

    def end(self, batch: Batch, done: int, now: float) -> None:
        results = []
        for index, request in enumerate(batch.requests):
            result = self.outcome(request, batch.version) if index < done else {"type": batch.end_kind}
            results.append({"custom_id": request["custom_id"], "result": result})
        batch.results = results
        batch.ended_at = now

    def view(self, batch: Batch, request: web.Request) -> dict[str, Any]:
        self.advance(batch)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.results is None:
            counts["processing"] = len(batch.requests)
            status = "in_progress" if batch.cancel_at is None else "canceling"
        else:
            for item in batch.results:
                counts[item["result"]["type"]] += 1
            status = "ended"
        origin = f"{request.url.scheme}://{request.host}"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": rfc3339(batch.created),
            "expires_at": rfc3339(batch.created + DAY),
            "ended_at": None if batch.ended_at is None else rfc3339(batch.ended_at),
            "cancel_initiated_at": None if batch.cancel_at is None else rfc3339(batch.cancel_at),
            "archived_at": None,
            "results_url": None
            if batch.results is None
            else f"{origin}/v1/messages/batches/{batch.id}/results",
        }

    # -- HTTP --------------------------------------------------------------------------------------------

    def find(self, request: web.Request) -> Batch | web.Response:
        refused = self.server.authenticate(request)
        if refused is not None:
            return refused
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return error_response(404, f"message_batch_id: no batch {request.match_info['batch_id']!r}")
        return batch

    def validate(self, body: Any) -> tuple[int, str] | None:
        """What creation refuses (status and message), or ``None``."""
        settings = self.server.settings
        if not isinstance(body, dict):
            return 400, "Input should be a valid dictionary"
        extra = sorted(set(body) - {"requests"})
        if extra:
            return 400, f"{extra[0]}: Extra inputs are not permitted"
        requests = body.get("requests")
        if requests is None:
            return 400, "requests: Field required"
        if not isinstance(requests, list):
            return 400, "requests: Input should be a valid list"
        if not requests:
            return 400, "requests: List should have at least 1 item after validation, not 0"
        if len(requests) > settings["max_batch_requests"]:
            limit = settings["max_batch_requests"]
            return (
                400,
                f"requests: List should have at most {limit} items after validation, not {len(requests)}",
            )
        seen: set[str] = set()
        for index, item in enumerate(requests):
            where = f"requests.{index}"
            if not isinstance(item, dict):
                return 400, f"{where}: Input should be a valid dictionary"
            extra = sorted(set(item) - {"custom_id", "params"})
            if extra:
                return 400, f"{where}.{extra[0]}: Extra inputs are not permitted"
            custom_id, params = item.get("custom_id"), item.get("params")
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                return 400, f"{where}.custom_id: String should match pattern '{CUSTOM_ID.pattern}'"
            if custom_id in seen:
                return (
                    400,
                    f"{where}.custom_id: Duplicate custom_id {custom_id!r}: each must be unique in a batch",
                )
            seen.add(custom_id)
            if not isinstance(params, dict):
                return 400, f"{where}.params: Input should be a valid dictionary"
            if params.get("stream"):
                return 400, f"{where}.params.stream: streaming is not supported in Message Batches"
            if params.get("max_tokens") == 0:
                return 400, f"{where}.params.max_tokens: must be at least 1 in Message Batches"
        return None

    async def create(self, request: web.Request) -> web.Response:
        server = self.server
        server.total += 1
        refused = server.authenticate(request)
        if refused is not None:
            return refused
        body = await server.read_json(request, server.settings["max_batch_bytes"])
        if isinstance(body, web.Response):
            return body
        problem = self.validate(body)
        if problem is not None:
            server.errors += 1
            return error_response(*problem)
        batch = Batch(body["requests"], request.headers["anthropic-version"], server.settings["batch_delay"])
        self.batches[batch.id] = batch
        view = self.view(batch, request)
        if batch.results is not None:  # a batch that ends at once is still reported in progress when made
            view.update(processing_status="in_progress", ended_at=None, results_url=None)
            view["request_counts"] = {
                **dict.fromkeys(view["request_counts"], 0),
                "processing": len(batch.requests),
            }
        return web.json_response(view, headers={"request-id": request_id()})

    async def retrieve(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        if isinstance(batch, web.Response):
            return batch
        return web.json_response(self.view(batch, request), headers={"request-id": request_id()})

    async def results(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        if isinstance(batch, web.Response):
            return batch
        self.advance(batch)
        if batch.results is None:
            return error_response(400, f"Batch {batch.id} has not ended: its results are not available yet")
        text = "".join(json.dumps(item) + "\n" for item in batch.results)
        return web.Response(
            text=text, content_type="application/x-jsonl", headers={"request-id": request_id()}
        )

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        if isinstance(batch, web.Response):
            return batch
        self.advance(batch)
        if batch.ended_at is None and batch.cancel_at is None:
            batch.cancel_at = time.time()
            batch.end_kind = "canceled"
            view = self.view(batch, request)
            view.update(processing_status="canceling", ended_at=None, results_url=None)
            view["request_counts"] = {
                **dict.fromkeys(view["request_counts"], 0),
                "processing": len(batch.requests),
            }
            return web.json_response(view, headers={"request-id": request_id()})
        return web.json_response(self.view(batch, request), headers={"request-id": request_id()})

    async def delete(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        if isinstance(batch, web.Response):
            return batch
        self.advance(batch)
        if batch.ended_at is None:
            return error_response(400, f"Batch {batch.id} is still processing: cancel it before deleting it")
        del self.batches[batch.id]
        return web.json_response(
            {"id": batch.id, "type": "message_batch_deleted"}, headers={"request-id": request_id()}
        )

    async def list(self, request: web.Request) -> web.Response:
        refused = self.server.authenticate(request)
        if refused is not None:
            return refused
        try:
            limit = int(request.query.get("limit", 20))
        except ValueError:
            return error_response(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return error_response(400, "limit: Input should be between 1 and 1000")
        ordered = list(reversed(self.batches.values()))  # newest first
        ids = [batch.id for batch in ordered]
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after is not None:
            if after not in ids:
                return error_response(404, f"after_id: no batch {after!r}")
            window = ordered[ids.index(after) + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif before is not None:
            if before not in ids:
                return error_response(404, f"before_id: no batch {before!r}")
            window = ordered[: ids.index(before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = ordered[:limit], len(ordered) > limit
        data = [self.view(batch, request) for batch in page]
        body = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return web.json_response(body, headers={"request-id": request_id()})

    async def control(self, request: web.Request) -> web.Response:
        """Test control: ``{"processed": k}``, ``{"expire": true}``, or ``{}`` (process everything)."""
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response({"error": "no such batch"}, status=404)
        order = await request.json() if request.can_read_body else {}
        if batch.ended_at is None:
            if order.get("expire"):
                batch.end_kind = "expired"
                self.end(batch, batch.processed(time.time()), time.time())
            else:
                batch.manual = order.get("processed", len(batch.requests))
        return web.json_response(self.view(batch, request))

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches", self.list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self.retrieve)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self.results)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self.cancel)
        app.router.add_delete("/v1/messages/batches/{batch_id}", self.delete)
        app.router.add_post("/control/batches/{batch_id}", self.control)
