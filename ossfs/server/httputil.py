"""HTTP helpers shared by the OSS and S3 faces of ossfs-server.

What it owns
    Reading request bodies (Content-Length or chunked) and writing responses, with the
    per-connection bandwidth cap and the drop fault applied in both directions, plus
    the XML error document.

Contracts
    * :func:`read_body` returns a reader of exactly the request body (``read``,
      ``readinto``, ``read_all``); it raises
      :class:`ConnectionDropped` when the drop fault fires mid-body (the dispatcher then
      closes the socket without answering).
    * :func:`send_response` writes status, headers and the body (bytes or a file object
      of ``length`` bytes); HEAD requests get the headers only.  It adds
      ``x-oss-request-id`` (and ``x-amz-request-id``) and ``Content-Length``.
    * Byte counts go to ``state.stats``.
    * Handlers are :class:`ossfs.server.httpd.Handler` objects: ``handler.state``,
      ``handler.request_id``, ``handler.drop`` (this request is to be cut),
      ``handler.fault_settings`` (the :class:`FaultSettings` read once for this request).

Threads and locks
    Nothing shared: each function works on one connection's handler.
"""
from __future__ import annotations

import logging
import time
from typing import BinaryIO, Mapping, Optional, Union
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class ConnectionDropped(Exception):
    """The drop fault fired: the connection must be closed without an answer."""


class BadRequest(Exception):
    """A malformed request body framing (answered 400 and the connection closed)."""


class _Throttle:
    """Sleeps so that a connection moves at most ``rate`` bytes per second."""

    def __init__(self, rate: int):
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def chunk_size(self) -> int:
        if self.rate <= 0:
            return CHUNK
        return max(1024, min(CHUNK, self.rate // 20))

    def account(self, n: int) -> None:
        if self.rate <= 0:
            return
        self.done += n
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class BodyReader:
    """File-like reader of one request body (``read(n)``); see :func:`read_body`."""

    def __init__(self, handler, length: Optional[int], chunked: bool):
        self._h = handler
        self._rfile = handler.rfile
        self.length = length
        self.chunked = chunked
        self._remaining = length if not chunked else 0
        self._chunk_left = 0
        self._eof = (length == 0) and not chunked
        self.received = 0
        fs = handler.fault_settings
        self._throttle = _Throttle(fs.bandwidth)
        # a dropped upload is cut halfway through its body (or at once if it is tiny)
        self._drop_at = None
        if handler.drop and (chunked or (length or 0) > 0):
            self._drop_at = (length // 2) if length else 0
            handler.drop_done = True

    @property
    def finished(self) -> bool:
        return self._eof

    def _raw(self, n: int) -> bytes:
        if self.chunked:
            if self._chunk_left == 0:
                line = self._rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size line")
                if size == 0:
                    while True:   # trailers up to the blank line
                        t = self._rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    self._eof = True
                    return b""
                self._chunk_left = size
            buf = self._rfile.read(min(n, self._chunk_left))
            if not buf:
                raise ConnectionDropped("client closed mid-body")
            self._chunk_left -= len(buf)
            if self._chunk_left == 0:
                self._rfile.readline(8)   # CRLF after the chunk
            return buf
        if self._remaining <= 0:
            self._eof = True
            return b""
        buf = self._rfile.read(min(n, self._remaining))
        if not buf:
            self._eof = True
            return b""
        self._remaining -= len(buf)
        if self._remaining == 0:
            self._eof = True
        return buf

    def _allow(self, n: int) -> int:
        """How many bytes the next read may take, after the bandwidth cap and drop fault."""
        n = min(n, self._throttle.chunk_size())
        if self._drop_at is not None:
            if self.received >= self._drop_at:
                raise ConnectionDropped("drop fault during the request body")
            n = min(n, max(1, self._drop_at - self.received))
        return n

    def _account(self, n: int) -> None:
        self.received += n
        self._h.state.stats.add_bytes(bytes_in=n)
        self._throttle.account(n)

    def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        if n is None or n < 0:
            n = CHUNK
        buf = self._raw(self._allow(n))
        self._account(len(buf))
        return buf

    def readinto(self, buf) -> int:
        """Like :meth:`read` into a writable buffer; returns the count (0 at the end).

        A Content-Length body is read straight from the socket into ``buf`` (no bytes
        object per chunk); a chunked one goes through :meth:`read`.
        """
        view = memoryview(buf)
        if self._eof or not len(view):
            return 0
        n = self._allow(len(view))
        if self.chunked:
            data = self._raw(n)
            got = len(data)
            view[:got] = data
        else:
            if self._remaining <= 0:
                self._eof = True
                return 0
            got = self._rfile.readinto(view[:min(n, self._remaining)]) or 0
            if not got:
                self._eof = True
                return 0
            self._remaining -= got
            if self._remaining == 0:
                self._eof = True
        self._account(got)
        return got

    def read_all(self, limit: int = 64 << 20) -> bytes:
        """The whole body in memory (for small XML/JSON bodies); 400 above ``limit``."""
        parts = []
        total = 0
        while True:
            buf = self.read(CHUNK)
            if not buf:
                return b"".join(parts)
            total += len(buf)
            if total > limit:
                raise BadRequest("request body too large")
            parts.append(buf)

    def drain(self, limit: int = 1 << 20) -> bool:
        """Discard what is left of the body; False when more than ``limit`` remains."""
        if self._eof:
            return True
        if not self.chunked and self._remaining > limit:
            return False
        got = 0
        while not self._eof:
            buf = self._raw(CHUNK)
            got += len(buf)
            if got > limit and self.chunked:
                return False
        return True


def read_body(handler) -> BodyReader:
    """The request body of ``handler`` as a :class:`BodyReader` (memoised per request)."""
    reader = getattr(handler, "body_reader", None)
    if reader is not None:
        return reader
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    chunked = "chunked" in te
    length = None
    if not chunked:
        cl = handler.headers.get("Content-Length")
        try:
            length = int(cl) if cl is not None else 0
        except ValueError:
            raise BadRequest("bad Content-Length")
        if length < 0:
            raise BadRequest("bad Content-Length")
    reader = BodyReader(handler, length, chunked)
    handler.body_reader = reader
    return reader


def send_response(handler, status: int, headers: Optional[Mapping[str, str]] = None,
                  body: Union[bytes, BinaryIO, None] = b"", length: Optional[int] = None) -> None:
    """Write one response; ``body`` is bytes or a file object positioned at its start."""
    headers = dict(headers or {})
    if isinstance(body, (bytes, bytearray)):
        length = len(body) if length is None else length
    elif body is None:
        length = 0 if length is None else length
    is_head = handler.command == "HEAD"
    if handler.drop and not getattr(handler, "drop_done", False) and (is_head or not length):
        # nothing to cut in the middle of: close without answering
        raise ConnectionDropped("drop fault before the response")
    handler.send_response(status)
    lower = {k.lower() for k in headers}
    if "x-oss-request-id" not in lower:
        headers["x-oss-request-id"] = handler.request_id
    if "content-length" not in lower:
        headers["Content-Length"] = str(length)
    for k, v in headers.items():
        handler.send_header(k, v)
    if getattr(handler, "close_connection", False):
        handler.send_header("Connection", "close")
    handler.end_headers()
    if is_head or not length:
        return
    throttle = _Throttle(handler.fault_settings.bandwidth)
    drop_at = length // 2 if handler.drop and not getattr(handler, "drop_done", False) else None
    sent = 0
    out = handler.wfile
    stats = handler.state.stats
    if isinstance(body, (bytes, bytearray)):
        view = memoryview(body)
        while sent < length:
            n = min(throttle.chunk_size(), length - sent)
            if drop_at is not None:
                if sent >= drop_at:
                    raise ConnectionDropped("drop fault during the response body")
                n = min(n, max(1, drop_at - sent))
            out.write(view[sent:sent + n])
            sent += n
            stats.add_bytes(bytes_out=n)
            throttle.account(n)
        return
    while sent < length:
        n = min(throttle.chunk_size(), length - sent)
        if drop_at is not None:
            if sent >= drop_at:
                raise ConnectionDropped("drop fault during the response body")
            n = min(n, max(1, drop_at - sent))
        buf = body.read(n)
        if not buf:
            # the file is shorter than promised: the client must not reuse the connection
            raise ConnectionDropped("object body ended early")
        out.write(buf)
        sent += len(buf)
        stats.add_bytes(bytes_out=len(buf))
        throttle.account(len(buf))


def xml_error(handler, code: str, status: int, message: str,
              extra_headers: Optional[Mapping[str, str]] = None, extra_xml: str = "",
              host_id: str = "") -> None:
    """Answer an OSS/S3-style XML error (headers only for HEAD, as OSS does)."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>%s</Code>\n'
            '  <Message>%s</Message>\n  <RequestId>%s</RequestId>\n  <HostId>%s</HostId>\n%s</Error>\n'
            % (escape(code), escape(message), handler.request_id,
               escape(host_id or handler.headers.get("Host", "")), extra_xml)).encode("utf-8")
    headers = {"Content-Type": "application/xml", "x-oss-ec": "0000-00000000"}
    headers.update(extra_headers or {})
    if handler.command == "HEAD":
        send_response(handler, status, headers, b"", length=0)
    else:
        send_response(handler, status, headers, body)


def xml_response(handler, status: int, xml: str, headers: Optional[Mapping[str, str]] = None) -> None:
    """Answer an XML document."""
    h = {"Content-Type": "application/xml"}
    h.update(headers or {})
    body = xml.encode("utf-8")
    if not xml.startswith("<?xml"):
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + body
    send_response(handler, status, h, body)
