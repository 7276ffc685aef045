"""A small local HTTP backend with hits, misses, passes, 404s and slow answers, behind real Varnish."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.servers import Varnish

SLOW_SECONDS = 0.3  # how slow /slow answers: a simulated slow backend, not a wait in the test


class Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        if self.path.startswith("/slow"):
            time.sleep(SLOW_SECONDS)
        body = f"page {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Cache-Control", "max-age=60")
        self.send_header("X-Backend", "webops-test")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def varnish() -> Iterator[Varnish]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    v = Varnish(server.server_address[1])
    yield v
    v.stop()
    server.shutdown()
