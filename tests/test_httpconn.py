"""ossfs.httpconn: the keep-alive HTTP path under oss2 for plain-http endpoints.

A small HTTP/1.1 server runs in a thread here so that each test can decide what the
"server" does (answer, close an idle connection, cut a body short, stay silent) and
see the exact request bytes.  The whole store contract, fault and mount suites run
through this path as well (every test endpoint is plain http on loopback).
"""
import http.client
import io
import socket
import socketserver
import threading
import time

import oss2
import pytest
import requests

from ossfs import httpconn
from ossfs.errors import TransientError
from ossfs.store_oss import OssStore


class _Handler(socketserver.StreamRequestHandler):
    """Reads requests off one connection and answers each as ``server.script`` says."""

    def handle(self):
        srv = self.server
        with srv.lock:
            srv.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = []
            while True:
                h = self.rfile.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                headers.append(h.decode("latin-1").rstrip("\r\n"))
            length = 0
            for h in headers:
                name, _, value = h.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = self.rfile.read(length) if length else b""
            with srv.lock:
                srv.requests.append((line.decode("latin-1").rstrip("\r\n"), headers, body))
            action = srv.script(line.decode("latin-1").split()[1])
            if action == "silent":
                time.sleep(3)
                return
            if action == "cut":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
                self.wfile.flush()
                return
            if action == "chunked":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                self.wfile.flush()
                continue
            if action == "http10":
                self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
                self.wfile.flush()
                return
            payload = b"hello world" * 10
            extra = b"X-Dup: a\r\nX-Dup: b\r\nX-Mixed-Case: yes\r\n"
            close = action == "close"
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s%s\r\n%s"
                             % (len(payload), extra, b"Connection: close\r\n" if close else b"",
                                b"" if line.startswith(b"HEAD") else payload))
            self.wfile.flush()
            if close or action == "close-after":
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []
        self.script = lambda path: "answer"

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


@pytest.fixture
def server():
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(pool, srv, path="/b/k", method="GET", **kw):
    resp = pool.request(method, srv.url + path, kw.get("params"), kw.get("headers", {}), kw.get("data"),
                        kw.get("timeout", (5, 5)))
    body = b"".join(resp.iter_content(7))
    return resp, body


def test_keeps_one_connection_for_requests_read_to_the_end(server):
    pool = httpconn.Pool()
    for _ in range(5):
        _, body = _get(pool, server)
        assert body == b"hello world" * 10
        _get(pool, server, method="HEAD")
    assert server.connections == 1
    assert len(server.requests) == 10


def test_a_response_closed_early_does_not_give_its_connection_back(server):
    pool = httpconn.Pool()
    resp = pool.request("GET", server.url + "/b/k", None, {}, None, (5, 5))
    assert next(resp.iter_content(5)) == b"hello"
    resp.close()
    _get(pool, server)
    assert server.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced(server):
    pool = httpconn.Pool()
    server.script = lambda path: "close-after"     # answers, then hangs up without saying so
    _get(pool, server)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:             # wait for the FIN to reach our side
        idle = pool._idle[("127.0.0.1", server.server_address[1])]
        if idle and httpconn._dropped(idle[-1].sock):
            break
        time.sleep(0.01)
    server.script = lambda path: "answer"
    _, body = _get(pool, server)
    assert body == b"hello world" * 10
    assert server.connections == 2


def test_connection_close_is_honoured(server):
    pool = httpconn.Pool()
    server.script = lambda path: "close"
    for _ in range(3):
        _get(pool, server)
    assert server.connections == 3


def test_a_body_cut_short_of_its_length_is_an_error(server):
    pool = httpconn.Pool()
    server.script = lambda path: "cut"
    resp = pool.request("GET", server.url + "/b/k", None, {}, None, (5, 5))
    with pytest.raises(httpconn.WireError) as info:
        b"".join(resp.iter_content(4))
    assert isinstance(info.value.__cause__, http.client.IncompleteRead)


def test_read_timeout(server):
    pool = httpconn.Pool()
    server.script = lambda path: "silent"
    with pytest.raises(httpconn.WireError) as info:
        pool.request("GET", server.url + "/b/k", None, {}, None, (5, 0.3))
    assert isinstance(info.value.__cause__, socket.timeout)


def test_headers_are_case_insensitive_and_repeats_joined(server):
    pool = httpconn.Pool()
    resp, _ = _get(pool, server)
    assert resp.status_code == 200
    assert resp.headers["x-mixed-case"] == resp.headers["X-MIXED-CASE"] == "yes"
    assert "X-Mixed-Case" in resp.headers and resp.headers.get("x-absent") is None
    assert resp.headers["x-dup"] == "a, b"


def test_chunked_bodies_and_close_delimited_bodies(server):
    pool = httpconn.Pool()
    server.script = lambda path: "chunked"
    for _ in range(2):
        resp, body = _get(pool, server)
        assert body == b"hello world"
    assert server.connections == 1                 # a chunked answer keeps the connection
    server.script = lambda path: "http10"
    resp, body = _get(pool, server)
    assert body == b"until the end" and resp.status_code == 200
    server.script = lambda path: "answer"
    _get(pool, server)                             # the HTTP/1.0 answer ended its connection
    assert server.connections == 2


def test_header_block_parsing():
    h = httpconn._parse_header_lines([
        b"Content-Length: 12\r\n", b"X-Oss-Meta-Mode:  33188 \r\n", b"x-dup: a\r\n", b"X-Dup: b\r\n",
        b"X-Folded: first\r\n", b"  second\r\n", b"no colon here\r\n", b"X-Latin: caf\xe9\r\n",
        b"\r\n", b"X-After-End: no\r\n"])
    assert dict(h) == {"content-length": "12", "x-oss-meta-mode": "33188", "x-dup": "a, b",
                       "x-folded": "first second", "x-latin": "caf\xe9"}
    assert h["X-OSS-META-MODE"] == "33188" and "Content-Length" in h


def _sent_by_requests(srv, method, path, params, headers, data):
    """The request line, header set and body that requests (oss2's own path) sends."""
    session = oss2.http.Session()
    req = oss2.http.Request(method, srv.url + path, data=data, params=params, headers=headers)
    resp = session.do_request(req, (5, 5))
    resp.read()
    return srv.requests[-1]


@pytest.mark.parametrize("method,path,params,data", [
    ("HEAD", "/b/dir/a%20b%2Bc", None, None),
    ("GET", "/b/", {"prefix": "dir/ä", "delimiter": "/", "max-keys": 1000, "marker": ""}, None),
    ("POST", "/b/big", {"uploads": ""}, None),
    ("PUT", "/b/big", {"partNumber": 3, "uploadId": "u id", "skip": None}, b"part bytes"),
    ("PUT", "/b/file", None, "file"),
    ("DELETE", "/b/gone", None, None),
])
def test_sends_the_same_request_as_requests_does(server, method, path, params, data):
    headers = {"x-oss-meta-mode": "33188", "Content-Type": "text/plain", "Accept-Encoding": None}

    def body():
        if data == "file":
            f = io.BytesIO(b"0123456789" * 1000)
            f.seek(5)
            return oss2.utils.make_crc_adapter(oss2.http._convert_request_body(f))
        return data

    theirs = _sent_by_requests(server, method, path, params, dict(headers), body())
    req = oss2.http.Request(method, server.url + path, data=body(), params=params, headers=dict(headers))
    assert httpconn.usable(req.url, req.data, None)
    pool = httpconn.Pool()
    resp = pool.request(req.method, req.url, req.params, req.headers, req.data, (5, 5))
    b"".join(resp.iter_content(100))
    ours = server.requests[-1]
    assert ours[0] == theirs[0]                                   # request line: method, path, query
    assert sorted(ours[1]) == sorted(theirs[1])                   # header lines
    assert ours[2] == theirs[2]                                   # body
    if data == "file":
        assert ours[2] == (b"0123456789" * 1000)[5:]


def test_which_requests_take_this_path():
    assert httpconn.usable("http://h/b/k", None, None)
    assert httpconn.usable("http://h/b/k", b"x", {})
    assert httpconn.usable("http://h/b/k", io.BytesIO(b"abc"), None)
    assert not httpconn.usable("https://h/b/k", None, None)                  # TLS: requests
    assert not httpconn.usable("http://h/b/k", None, {"http": "http://proxy:3128"})
    assert not httpconn.usable("http://h/b/k", iter([b"a", b"b"]), None)     # unknown length: chunked


def test_oss_store_retries_a_cut_body_and_names_the_failure(server):
    """Through OssStore: a cut body is a temporary failure, retried, then reported as
    'connection broken' with no traceback material in the message."""
    server.script = lambda path: "cut"
    store = OssStore(server.url, "bucket", ("id", "secret"), retries=1)
    with pytest.raises(TransientError) as info:
        store.get_to_file("k", io.BytesIO())
    assert "connection broken" in str(info.value)
    assert len(server.requests) == 2


def test_a_proxied_endpoint_still_goes_through_requests(monkeypatch):
    """A proxied endpoint is sent by requests' adapter, not by the pool."""
    store = OssStore("http://127.0.0.1:9", "bucket", ("id", "secret"), retries=0)
    store._session.session.proxies["http"] = "http://127.0.0.1:9"
    pool_calls, adapter_calls = [], []
    monkeypatch.setattr(httpconn.Pool, "request", lambda *a, **k: pool_calls.append(a))

    def send(self, prep, **kw):
        adapter_calls.append((prep.method, prep.url, kw.get("proxies")))
        raise requests.ConnectionError("refused by the test")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    with pytest.raises(TransientError):
        store.head("k")
    assert pool_calls == []
    assert adapter_calls and adapter_calls[0][0] == "HEAD"
    assert adapter_calls[0][2]["http"] == "http://127.0.0.1:9"


@pytest.mark.parametrize("path", ["httpconn", "requests"])
def test_an_object_stored_compressed_reads_back_as_stored(oss_server_session, monkeypatch, path):
    """Content-Encoding: gzip is the object's own header, not a transfer encoding:
    both HTTP paths return the stored bytes (requests would otherwise decompress them
    and the whole-object CRC check would fail)."""
    import gzip
    srv = oss_server_session
    if path == "requests":
        monkeypatch.setattr(httpconn, "usable", lambda *a: False)
    store = OssStore(srv.endpoint, srv.bucket, (srv.access_key_id, srv.access_key_secret), retries=0)
    raw = gzip.compress(b"compressed text " * 5000)
    srv.oss_bucket().put_object("stored-gzip-%s" % path, raw, headers={"Content-Encoding": "gzip"})
    out = io.BytesIO()
    assert store.get_to_file("stored-gzip-%s" % path, out) == len(raw)
    assert out.getvalue() == raw
