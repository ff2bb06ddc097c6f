"""A page served from an origin of its own (another port than the Toto servers, so the
browser applies CORS), which collects what the page POSTs back as reports."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PageServer:
    """Serves ``page`` at ``/``; any other GET answers ``other_status()`` (default 404), so a
    page can poll for a signal; every POST body is a JSON report put on ``reports``."""

    def __init__(self, page: bytes, other_status: Any = None) -> None:
        self.reports: queue.Queue[Any] = queue.Queue()
        reports = self.reports

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                self.send_response(other_status() if other_status is not None else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                reports.put(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
