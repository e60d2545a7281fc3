"""A real webhook receiver for the alert tests: http.server on 127.0.0.1, recording every POST it takes.

It can answer with another status (`status = 503`: up but failing) or be stopped and started again on
the same port (down: connections refused), the two outages a notifier must ride through.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """`taken`: the JSON bodies answered 2xx, in arrival order; `refused`: POSTs answered otherwise."""

    def __init__(self) -> None:
        self.taken: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.refused = 0
        self.status = 200
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    status = receiver.status
                    if 200 <= status < 300:
                        receiver.taken.append(json.loads(body))
                        receiver.headers.append(dict(self.headers))
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[Any]:
        with self._lock:
            return list(self.taken)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll `condition` until true or `timeout_s` passed (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
