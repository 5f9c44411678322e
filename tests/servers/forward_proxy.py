"""A tiny HTTP forward proxy on 127.0.0.1, for checking that mapgen's requests honour ``HTTP_PROXY``.

It takes absolute-URI requests (``POST http://127.0.0.1:8000/v1/chat/completions HTTP/1.1``), as clients
send them to a proxy for plain HTTP, forwards each to its target (directly, never through a proxy) and
sends the answer back; ``proxy.seen`` lists ``(method, absolute URI, headers)`` of every request received.

Example:
    with ForwardProxy() as proxy:
        os.environ["HTTP_PROXY"] = proxy.url
        ...
        assert proxy.seen
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "transfer-encoding"}


class ForwardProxy:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        proxy = self
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                headers = {key: value for key, value in self.headers.items()}
                proxy.seen.append((self.command, self.path, headers))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
                request = urllib.request.Request(self.path, data=body, headers=sent, method=self.command)
                try:
                    with direct.open(request, timeout=30) as response:
                        status, answer, content = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, answer, content = error.code, error.headers, error.read()
                self.send_response(status)
                for key, value in answer.items():
                    if key.lower() not in _HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
