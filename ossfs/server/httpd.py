"""The HTTP server of ossfs-server and the dispatcher in front of the two faces.

What it owns
    A :class:`ThreadingHTTPServer` (one daemon thread per connection, HTTP/1.1
    keep-alive, 4 MiB socket buffers) and :class:`Handler`, which for every request:

    1. serves the test hooks ``/_ossfs/faults`` (GET/POST JSON) and ``/_ossfs/stats``
       (GET; ``POST /_ossfs/stats/reset``) without authentication -- loopback only;
    2. applies the injected latency, then ``fail_next`` (503 ServiceUnavailable for the
       next N requests) and the fault rate (500 InternalError or 503
       ServiceUnavailable), both counted under ``"faults"`` without touching the store, then
       decides whether this request's connection is to be dropped;
    3. picks the face by the signature: ``AWS4-HMAC-SHA256``/``AWS `` or ``X-Amz-*``
       query -> :mod:`ossfs.server.s3_api`; ``OSS ``/``OSS4-HMAC-SHA256`` or
       ``OSSAccessKeyId``/``x-oss-signature-version`` query -> :mod:`ossfs.server.oss_api`;
       nothing -> AccessDenied 403 (anonymous access is refused);
    4. turns :class:`~ossfs.server.store.StoreError` into the XML error, any other
       exception into 500 InternalError (logged with its traceback), and
       :class:`~ossfs.server.httputil.ConnectionDropped` into a closed socket.

Contract with the faces: ``face.handle(handler, state)`` answers the request through
:mod:`ossfs.server.httputil`.  On the handler it may use:

* ``handler.command``, ``handler.headers`` (case-insensitive), ``handler.path`` (raw);
* ``handler.raw_path`` (the path part, still percent-encoded), ``handler.raw_query``;
* ``handler.query``: dict of decoded query parameters (first value wins; a
  parameter without ``=`` maps to ``""``), ``handler.query_list`` (all pairs);
* ``handler.bucket`` / ``handler.key``: decoded from virtual-host or path style
  (``None`` when absent; ``key`` may contain undecodable surrogates -> InvalidObjectName);
* ``handler.virtual_host``: True when the bucket came from the Host header;
* ``handler.request_id``, ``handler.state``, ``handler.fault_settings``, ``handler.drop``.

Threads and locks
    No state of its own: each connection thread works on its own handler; shared
    state lives in :class:`~ossfs.server.state.ServerState`, with its own locks.
"""
from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

from ossfs.server import httputil
from ossfs.server.httputil import BadRequest, ConnectionDropped, send_response, xml_error
from ossfs.server.state import ServerState
from ossfs.server.store import StoreError

log = logging.getLogger(__name__)

SOCKET_BUFFER = 4 << 20
DRAIN_LIMIT = 16 << 20


def _split_target(handler, state: ServerState):
    """(bucket, key, virtual_host) from the Host header and the path."""
    host = (handler.headers.get("Host") or "").strip().lower()
    name = host
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif ":" in name:
        name = name.rsplit(":", 1)[0]
    path = handler.raw_path
    bucket = key = None
    virtual = False
    for suffix in {state.host.lower(), "localhost", "127.0.0.1"}:
        if name.endswith("." + suffix) and len(name) > len(suffix) + 1:
            bucket = name[: -len(suffix) - 1]
            virtual = True
            break
    if virtual:
        rest = path[1:]
    else:
        parts = path[1:].split("/", 1)
        bucket = unquote(parts[0]) or None
        rest = parts[1] if len(parts) > 1 else ""
    if rest:
        key = unquote(rest, errors="surrogateescape")
    return bucket, key, virtual


class Handler(BaseHTTPRequestHandler):
    """One connection; see the module docstring for what a face may use."""

    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""
    rbufsize = 1 << 16

    def setup(self) -> None:
        super().setup()
        sock = self.connection
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    @property
    def state(self) -> ServerState:
        return self.server.state

    def log_message(self, fmt, *args) -> None:
        # the request line may carry a presigned signature: keep it at debug level
        log.debug("%s - " + fmt, self.address_string(), *args)

    def log_request(self, code="-", size="-") -> None:
        path = self.path.split("?", 1)[0]
        log.debug("%s %s -> %s", self.command, path, code)

    def do_GET(self):
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    # ------------------------------------------------------------------ dispatch
    def _prepare(self) -> None:
        self.request_id = uuid.uuid4().hex[:24].upper()
        self.body_reader = None
        self.drop = False
        self.drop_done = False
        self.fault_settings = self.state.faults.snapshot()
        raw_path, _, raw_query = self.path.partition("?")
        if raw_path.startswith(("http://", "https://")):
            raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
        self.raw_path = raw_path or "/"
        self.raw_query = raw_query
        self.query_list = parse_qsl(raw_query, keep_blank_values=True)
        self.query = {}
        for k, v in self.query_list:
            self.query.setdefault(k, v)
        self.bucket, self.key, self.virtual_host = _split_target(self, self.state)

    def _dispatch(self) -> None:
        try:
            self._prepare()
        except Exception:   # a malformed request line or query
            self.close_connection = True
            self.send_error(400)
            return
        state = self.state
        try:
            if self.raw_path.startswith("/_ossfs/"):
                self._hooks()
                return
            fs = self.fault_settings
            if fs.latency_ms > 0:
                time.sleep(fs.latency_ms / 1000.0)
            forced = state.faults.take_forced()
            if forced or state.faults.roll(fs.fault_rate):
                state.stats.count("faults")
                if not forced and state.faults.roll(0.5):
                    xml_error(self, "InternalError", 500, "We encountered an internal error. Please try again.")
                else:
                    xml_error(self, "ServiceUnavailable", 503, "Please reduce your request rate.")
                return
            self.drop = state.faults.roll(fs.drop_rate)
            if self.drop:
                state.stats.count("drops")  # the connection of this request will be cut
            face = self._choose_face()
            if face is None:
                return
            face.handle(self, state)
        except ConnectionDropped as e:
            log.debug("connection dropped: %s", e)
            self._cut()
            return
        except StoreError as e:
            self._answer_error(e.code, e.status, e.message, e.extra)
        except BadRequest as e:
            self.close_connection = True
            self._answer_error("InvalidRequest", 400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception:
            log.exception("internal error serving %s %s", self.command, self.raw_path)
            self._answer_error("InternalError", 500, "We encountered an internal error. Please try again.")
        finally:
            self._finish_body()

    def _answer_error(self, code, status, message, extra=None) -> None:
        try:
            xml_error(self, code, status, message, extra)
        except ConnectionDropped:
            self._cut()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _finish_body(self) -> None:
        """Keep the connection usable: discard an unread request body, or close."""
        if self.close_connection:
            return
        try:
            reader = httputil.read_body(self)
            if not reader.drain(DRAIN_LIMIT):
                self.close_connection = True
        except Exception:
            self.close_connection = True

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
        except Exception:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _choose_face(self):
        auth = self.headers.get("Authorization") or ""
        q = {k.lower() for k in self.query}
        if auth.startswith(("AWS4-HMAC-SHA256", "AWS ")) or "x-amz-algorithm" in q \
                or ("awsaccesskeyid" in q and "signature" in q):
            try:
                from ossfs.server import s3_api
            except ImportError:
                xml_error(self, "NotImplemented", 501, "The S3 protocol is not available in this build.")
                return None
            return s3_api
        if auth.startswith(("OSS ", "OSS4-HMAC-SHA256")) or "ossaccesskeyid" in q \
                or "x-oss-signature-version" in q:
            from ossfs.server import oss_api
            return oss_api
        xml_error(self, "AccessDenied", 403, "AccessDenied: anonymous access is not allowed.")
        return None

    def _hooks(self) -> None:
        """Test hooks: fault settings and request counters, JSON in and out."""
        state = self.state
        path = self.raw_path.rstrip("/")
        reader = httputil.read_body(self)
        if path == "/_ossfs/faults":
            if self.command == "POST":
                try:
                    body = json.loads(reader.read_all(1 << 16) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("expected a JSON object")
                    state.faults.update(**body)
                except (ValueError, TypeError) as e:
                    self._json(400, {"error": str(e)})
                    return
            self._json(200, vars(state.faults.snapshot()))
        elif path == "/_ossfs/stats" and self.command == "GET":
            self._json(200, state.stats.snapshot())
        elif path == "/_ossfs/stats/reset" and self.command == "POST":
            state.stats.reset()
            self._json(200, state.stats.snapshot())
        else:
            self._json(404, {"error": "no such hook"})

    def _json(self, status: int, obj) -> None:
        # hooks are never subject to the drop fault
        self.drop = False
        send_response(self, status, {"Content-Type": "application/json"},
                      json.dumps(obj).encode("utf-8"))


class Server(ThreadingHTTPServer):
    """Threaded HTTP server carrying the :class:`ServerState`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, state: ServerState):
        self.state = state
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


def make_server(state: ServerState, host: str = "127.0.0.1", port: int = 0) -> Server:
    """Bind (port 0 picks a free port); call ``serve_forever()`` on the result."""
    return Server((host, port), state)
