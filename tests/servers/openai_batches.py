"""OpenAI's Files and Batch APIs on the fault server (:mod:`tests.servers.fault_server`), by its rules.

Files (``/v1/files``):

- ``POST`` (multipart: ``file``, ``purpose``) answers a ``file`` object (``id`` ``file-...``, ``bytes``,
  ``created_at``, ``filename``, ``purpose``, ``status: processed``). ``purpose`` must be one of OpenAI's; a
  ``batch`` file must be named ``*.jsonl`` ("Invalid file format for Batch API. Must be .jsonl") and hold at
  most ``max_batch_file_bytes`` (200 MB at OpenAI). Its lines are not read at upload, as at OpenAI: a
  malformed file fails the batch made from it.
- ``GET /v1/files`` (list), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content`` (the bytes), ``DELETE
  /v1/files/{id}``.

Batches (``/v1/batches``):

- ``POST`` takes ``input_file_id`` (a ``batch`` file), ``endpoint`` (this server answers
  ``/v1/chat/completions``), ``completion_window`` (``"24h"``, the only value) and optional ``metadata``
  (at most 16 keys); unknown fields and bad values are a 400 ``invalid_request_error`` naming the ``param``.
  It answers the batch ``validating``. The input file is then validated, line by line: each line is JSON
  ``{"custom_id", "method": "POST", "url": <endpoint>, "body"}`` with a ``body.model``, ``custom_id`` unique,
  one model in the whole file, at most ``max_batch_requests`` lines (50,000 at OpenAI). A file that breaks
  these makes the batch ``failed``, with ``errors.data`` entries ``{"code", "message", "param", "line"}``
  (codes: ``invalid_json_line``, ``missing_required_parameter``, ``invalid_method``, ``invalid_url``,
  ``duplicate_custom_id``, ``mismatched_model``, ``too_many_requests``, ``empty_file``).
- Processing is simulated as for Anthropic's batches: with ``batch_delay`` seconds (0 by default), requests
  are processed evenly over that time and the batch is ``completed`` when all are; with ``batch_delay: None``
  only ``POST /control/batches/{id}`` moves it (``{"processed": k}``, ``{"expire": true}``, ``{}`` for
  all). ``request_counts`` (``total``, ``completed``, ``failed``) follow as requests are processed.
- Each request is answered as ``/v1/chat/completions`` would answer it (the echo, scripted replies, usage);
  a scripted ``status`` rule makes it fail with that status. ``batch_results`` rules ``{"contains": "x",
  "type": "expired"}`` keep matching requests from ever being processed, so that the batch ends ``expired``
  (once the others are done) with partial results, as OpenAI's do.
- Output file lines: ``{"id": "batch_req_...", "custom_id", "response": {"status_code": 200, "request_id",
  "body": <chat completion>}, "error": null}``. Failed requests go to the error file: a response with its
  4xx/5xx status and ``{"error": {...}}`` body, or, for requests never run, ``"response": null`` and
  ``"error": {"code": "batch_expired" | "batch_cancelled", "message"}``. ``output_file_id`` is set when
  something succeeded, ``error_file_id`` when something failed; ``usage`` sums the succeeded requests'.
- ``POST /v1/batches/{id}/cancel`` answers ``cancelling``; by the next read the batch is ``cancelled`` with
  what was processed before. ``GET /v1/batches`` lists newest first with ``after`` and ``limit`` (1 to
  100, default 20): ``{"object": "list", "data", "first_id", "last_id", "has_more"}``.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.servers.fault_server import FaultServer

BATCH_DEFAULTS: dict[str, Any] = {
    "batch_delay": 0.0,  # seconds from creation to the end of processing; None: only POST /control moves it
    "batch_results": [],  # [{"contains": ..., "type": "expired"}]: requests never processed
    "max_batch_requests": 50_000,
    "max_batch_file_bytes": 200 * 1024 * 1024,
}

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
DAY = 24 * 3600
UNFINISHED = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return web.json_response({"error": error}, status=status)


class Batch:
    def __init__(self, body: dict[str, Any], delay: float | None) -> None:
        self.id = "batch_" + uuid.uuid4().hex[:24]
        self.body = body
        self.delay = delay
        self.created = time.time()
        self.validated = False
        self.errors: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.model: str | None = None
        self.manual = 0
        self.outcomes: list[dict[str, Any]] = []  # one per processed request, in order
        self.status = "validating"
        self.times: dict[str, int] = {}
        self.output_file_id: str | None = None
        self.error_file_id: str | None = None

    def processed(self, now: float) -> int:
        n = len(self.lines)
        if self.delay is None:
            return min(n, self.manual)
        timed = n if self.delay <= 0 else int((now - self.created) / self.delay * n)
        return min(n, max(timed, self.manual))


class FilesAndBatches:
    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.clear()

    def clear(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, Batch] = {}

    # -- files -------------------------------------------------------------------------------------------

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        info = {
            "id": "file-" + uuid.uuid4().hex[:24],
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[info["id"]] = info
        self.contents[info["id"]] = data
        return info

    async def upload(self, request: web.Request) -> web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        if not request.content_type.startswith("multipart/"):
            return openai_error(400, "Expected a multipart/form-data body with `file` and `purpose`.")
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose is None:
            return openai_error(
                400, "Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter"
            )
        if purpose not in PURPOSES:
            return openai_error(400, f"Invalid value for purpose: {purpose!r}.", "purpose", "invalid_value")
        if upload is None or isinstance(upload, str):
            return openai_error(
                400, "Missing required parameter: 'file'.", "file", "missing_required_parameter"
            )
        data = upload.file.read()
        if purpose == "batch":
            if not upload.filename.endswith(".jsonl"):
                return openai_error(400, "Invalid file format for Batch API. Must be .jsonl", "file")
            limit = self.server.settings["max_batch_file_bytes"]
            if len(data) > limit:
                return openai_error(
                    400, f"File is too large: {len(data)} bytes; the limit is {limit}.", "file"
                )
        return web.json_response(self.add_file(data, upload.filename, str(purpose)))

    def find_file(self, request: web.Request) -> dict[str, Any] | web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            return openai_error(404, f"No such File object: {file_id}", "id")
        return self.files[file_id]

    async def retrieve_file(self, request: web.Request) -> web.Response:
        found = self.find_file(request)
        return found if isinstance(found, web.Response) else web.json_response(found)

    async def file_content(self, request: web.Request) -> web.Response:
        found = self.find_file(request)
        if isinstance(found, web.Response):
            return found
        return web.Response(body=self.contents[found["id"]], content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.Response:
        found = self.find_file(request)
        if isinstance(found, web.Response):
            return found
        del self.files[found["id"]], self.contents[found["id"]]
        return web.json_response({"id": found["id"], "object": "file", "deleted": True})

    async def list_files(self, request: web.Request) -> web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        purpose = request.query.get("purpose")
        data = [f for f in reversed(self.files.values()) if purpose is None or f["purpose"] == purpose]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return web.json_response(
            {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False}
        )

    # -- batches: validation and processing --------------------------------------------------------------

    def validate_file(self, batch: Batch) -> None:
        """Read the input file as OpenAI's ``validating`` step does; fill ``batch.lines`` or ``errors``."""
        batch.validated = True
        data = self.contents[batch.body["input_file_id"]]
        endpoint = batch.body["endpoint"]
        errors: list[dict[str, Any]] = []

        def fail(line: int | None, code: str, message: str, param: str | None = None) -> None:
            errors.append({"code": code, "message": message, "param": param, "line": line})

        seen: set[str] = set()
        models: set[str] = set()
        lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
        if not lines:
            fail(None, "empty_file", "The input file is empty.")
        limit = self.server.settings["max_batch_requests"]
        if len(lines) > limit:
            fail(
                None, "too_many_requests", f"The input file has {len(lines)} requests; the limit is {limit}."
            )
        for number, text in enumerate(lines, start=1):
            try:
                line = json.loads(text)
            except ValueError:
                fail(number, "invalid_json_line", "This line is not parseable as valid JSON.")
                continue
            if not isinstance(line, dict):
                fail(number, "invalid_json_line", "This line is not a JSON object.")
                continue
            missing = [key for key in ("custom_id", "method", "url", "body") if key not in line]
            if missing:
                fail(
                    number,
                    "missing_required_parameter",
                    f"Missing required parameter: {missing[0]!r}.",
                    missing[0],
                )
                continue
            if line["method"] != "POST":
                fail(number, "invalid_method", "The method must be POST.", "method")
            if line["url"] != endpoint:
                fail(number, "invalid_url", f"The url must be the batch's endpoint, {endpoint}.", "url")
            body = line["body"]
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                fail(
                    number,
                    "missing_required_parameter",
                    "Missing required parameter: 'body.model'.",
                    "body.model",
                )
                continue
            if line["custom_id"] in seen:
                fail(
                    number,
                    "duplicate_custom_id",
                    f"The custom_id {line['custom_id']!r} is not unique.",
                    "custom_id",
                )
            seen.add(line["custom_id"])
            if models and body["model"] not in models:
                fail(
                    number,
                    "mismatched_model",
                    "The model of this request does not match the model of the other requests in the file.",
                    "body.model",
                )
            models.add(body["model"])
        if errors:
            batch.errors = errors
            batch.status = "failed"
            batch.times["failed_at"] = int(time.time())
            return
        batch.lines = [json.loads(text) for text in lines]
        batch.model = next(iter(models))
        batch.status = "in_progress"
        batch.times["in_progress_at"] = int(time.time())

    def stuck(self, line: dict[str, Any]) -> bool:
        """Whether a ``batch_results`` rule keeps this request from being processed."""
        text = self.user_text(line["body"])
        return any(
            rule.get("contains", "") in text and rule["type"] == "expired"
            for rule in self.server.settings["batch_results"]
        )

    @staticmethod
    def user_text(body: dict[str, Any]) -> Any:
        from tests.servers.fault_server import message_text  # the chat server's own reading of a message

        messages = body.get("messages") or []
        return next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")

    def answer(self, line: dict[str, Any]) -> dict[str, Any]:
        """The output-file line of one processed request."""
        server = self.server
        body = line["body"]
        response: dict[str, Any]
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            error = {"message": "Missing required parameter: 'messages'.", "type": "invalid_request_error"}
            response = {"status_code": 400, "body": {"error": {**error, "param": "messages", "code": None}}}
        else:
            user = self.user_text(body)
            rule = server.rule_for(user, body.get("model"))
            if rule is not None and rule.get("status"):
                message = rule.get("message", f"scripted {rule['status']}")
                error = {"message": message, "type": "scripted", "param": None, "code": None}
                response = {"status_code": rule["status"], "body": {"error": error}}
            else:
                response = {"status_code": 200, "body": server.completion(body, user, rule)}
        response["request_id"] = "req_" + uuid.uuid4().hex[:24]
        return {
            "id": "batch_req_" + uuid.uuid4().hex[:24],
            "custom_id": line["custom_id"],
            "response": response,
        }

    def advance(self, batch: Batch, now: float | None = None) -> None:
        """Bring ``batch`` up to now: validate, process what is due, end it when nothing is left."""
        if batch.status in ("failed", "completed", "expired", "cancelled"):
            return
        if not batch.validated:
            self.validate_file(batch)
            if batch.status == "failed":
                return
        now = time.time() if now is None else now
        due = batch.processed(now if batch.status != "cancelling" else batch.times["cancelling_at"])
        runnable = [line for line in batch.lines if not self.stuck(line)]
        for line in runnable[len(batch.outcomes) : due]:
            batch.outcomes.append(self.answer(line))
        if batch.status == "cancelling":
            self.finish(batch, "cancelled")
        elif len(batch.outcomes) == len(runnable):
            self.finish(batch, "completed" if len(runnable) == len(batch.lines) else "expired")

    def finish(self, batch: Batch, status: str) -> None:
        done = {outcome["custom_id"] for outcome in batch.outcomes}
        succeeded = [o for o in batch.outcomes if o["response"]["status_code"] == 200]
        failed = [o for o in batch.outcomes if o["response"]["status_code"] != 200]
        if status != "completed":
            code, message = UNFINISHED["expired" if status == "expired" else "cancelled"]
            failed += [
                {
                    "id": "batch_req_" + uuid.uuid4().hex[:24],
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": message},
                }
                for line in batch.lines
                if line["custom_id"] not in done
            ]
        for outcome in succeeded + failed:
            outcome.setdefault("error", None)

        def write(items: list[dict[str, Any]], kind: str) -> str | None:
            if not items:
                return None
            data = "".join(json.dumps(item) + "\n" for item in items).encode()
            return self.add_file(data, f"{batch.id}_{kind}.jsonl", "batch_output")["id"]

        batch.output_file_id = write(succeeded, "output")
        batch.error_file_id = write(failed, "error")
        batch.status = status
        now = int(time.time())
        if status == "completed":
            batch.times.update(finalizing_at=now, completed_at=now)
        else:
            batch.times[f"{status}_at"] = now

    def view(self, batch: Batch) -> dict[str, Any]:
        self.advance(batch)
        succeeded = [o for o in batch.outcomes if o["response"]["status_code"] == 200]
        usage = [o["response"]["body"].get("usage") or {} for o in succeeded]
        inputs = sum(u.get("prompt_tokens", 0) for u in usage)
        outputs = sum(u.get("completion_tokens", 0) for u in usage)
        failed = len(batch.outcomes) - len(succeeded)
        if batch.status in ("expired", "cancelled"):
            failed = len(batch.lines) - len(succeeded)
        view = {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.body["endpoint"],
            "model": batch.model,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.body["input_file_id"],
            "completion_window": batch.body["completion_window"],
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created),
            "expires_at": int(batch.created + DAY),
            "request_counts": {"total": len(batch.lines), "completed": len(succeeded), "failed": failed},
            "usage": {
                "input_tokens": inputs,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": outputs,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": inputs + outputs,
            },
            "metadata": batch.body.get("metadata"),
        }
        for name in (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
        ):
            view[name] = batch.times.get(name)
        view["cancelled_at"] = batch.times.get("cancelled_at")
        return view

    # -- batches: HTTP -----------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return openai_error(400, "The body must be a JSON object.")
        known = {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
        unknown = sorted(set(body) - known)
        if unknown:
            return openai_error(400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
        for name in ("input_file_id", "endpoint", "completion_window"):
            if name not in body:
                return openai_error(
                    400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
                )
        if body["completion_window"] != "24h":
            return openai_error(
                400,
                f"Invalid value for 'completion_window': {body['completion_window']!r}. Supported: '24h'.",
                "completion_window",
                "invalid_value",
            )
        if body["endpoint"] != "/v1/chat/completions":
            return openai_error(
                400,
                f"This server answers batches for /v1/chat/completions, not {body['endpoint']!r}.",
                "endpoint",
                "invalid_value",
            )
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
            return openai_error(
                400, "metadata: at most 16 string key-value pairs.", "metadata", "invalid_value"
            )
        info = self.files.get(body["input_file_id"])
        if info is None:
            return openai_error(400, f"No such File object: {body['input_file_id']}", "input_file_id")
        if info["purpose"] != "batch":
            return openai_error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")
        batch = Batch(body, self.server.settings["batch_delay"])
        self.batches[batch.id] = batch
        view = self.view(batch)
        # As OpenAI answers creation: validating, nothing counted yet (the next read sees the validation).
        view.update(status="validating", errors=None, output_file_id=None, error_file_id=None)
        view["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at"):
            view[name] = None
        return web.json_response(view)

    def find(self, request: web.Request) -> Batch | web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return openai_error(
                404, f"No batch found with id '{request.match_info['batch_id']}'.", "batch_id"
            )
        return batch

    async def retrieve(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        return batch if isinstance(batch, web.Response) else web.json_response(self.view(batch))

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.find(request)
        if isinstance(batch, web.Response):
            return batch
        self.advance(batch)
        if batch.status not in ("validating", "in_progress"):
            return openai_error(409, f"Cannot cancel a batch with status {batch.status!r}.")
        batch.status = "cancelling"
        batch.times["cancelling_at"] = int(time.time())
        view = self.view(batch) | {"status": "cancelling", "cancelled_at": None}
        return web.json_response(view)

    async def list(self, request: web.Request) -> web.Response:
        refused = self.server.unauthorized(request)
        if refused is not None:
            return refused
        try:
            limit = int(request.query.get("limit", 20))
        except ValueError:
            return openai_error(400, "limit must be an integer", "limit")
        if not 1 <= limit <= 100:
            return openai_error(400, "limit must be between 1 and 100", "limit")
        ordered = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [batch.id for batch in ordered]
            if after not in ids:
                return openai_error(400, f"No batch found with id '{after}'.", "after")
            ordered = ordered[ids.index(after) + 1 :]
        data = [self.view(batch) for batch in ordered[:limit]]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        body = {
            "object": "list",
            "data": data,
            "first_id": first,
            "last_id": last,
            "has_more": len(ordered) > limit,
        }
        return web.json_response(body)

    async def control(self, request: web.Request) -> web.Response:
        """Test control: ``{"processed": k}``, ``{"expire": true}``, or ``{}`` (process everything)."""
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response({"error": "no such batch"}, status=404)
        order = await request.json() if request.can_read_body else {}
        self.advance(batch)
        if batch.status == "in_progress":
            if "processed" in order or not order.get("expire"):
                batch.manual = order.get("processed", len(batch.lines))
            self.advance(batch)
            if order.get("expire") and batch.status == "in_progress":
                self.finish(batch, "expired")
        return web.json_response(self.view(batch))

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files", self.list_files)
        app.router.add_get("/v1/files/{file_id}", self.retrieve_file)
        app.router.add_get("/v1/files/{file_id}/content", self.file_content)
        app.router.add_delete("/v1/files/{file_id}", self.delete_file)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.list)
        app.router.add_get("/v1/batches/{batch_id}", self.retrieve)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self.cancel)
        app.router.add_post("/control/batches/{batch_id}", self.control)
