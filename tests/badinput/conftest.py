"""Fixtures for hostile and broken input: the mount fixtures of ``tests/mount`` and a
tiny local HTTP server that answers every request with an HTML page (a web server
that is not OSS)."""
from __future__ import annotations

import http.server
import threading

import pytest

from mount.conftest import mount, mounter, run_ossfs  # noqa: F401  (fixtures reused)


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        body = b"<html><head><title>Welcome</title></head><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def html_server():
    """``http://127.0.0.1:PORT`` of a server returning HTML to everything; stopped at the end."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
