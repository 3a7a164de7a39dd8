"""Keep-alive HTTP/1.1 for plain-http endpoints, on the standard library's http.client.

Why this exists
---------------
oss2 sends every request through ``requests``, which sends it through ``urllib3``,
which sends it through ``http.client``.  For a small request such as a HEAD those two
upper layers cost about 0.6 ms of CPU on the client (URL parsing and re-quoting, header
merging into several case-insensitive dicts, pool bookkeeping with a poll per reuse,
response wrapping), twice what ``http.client`` itself costs.  An ``ls -l`` of a
directory of 10,000 objects the mount has never seen makes 10,000 HEADs, and with the
GIL that CPU is the limit of how fast the listing goes.  :class:`Pool` talks
``http.client`` directly and hands oss2 a response with the small part of
``requests.Response`` that oss2 and ossfs use (``status_code``, ``headers``,
``iter_content``, ``close``).

Scope
-----
:func:`usable` says which requests go this way: ``http://`` endpoints with no proxy,
and bodies that are absent, bytes, or readable objects whose length ``requests``
itself can tell (oss2's CRC adapters, files).  Everything else (https, proxies,
bodies of unknown length, which ``requests`` would send chunked) keeps going through
``requests``, whose TLS and proxy handling is not reproduced here.

What is kept from the ``requests`` path, on purpose:

* the request bytes: the URL and its query are built by requests' own helpers
  (``_encode_params``, ``requote_uri``), the headers are oss2's (a ``None`` value
  means "leave out", as it does for requests) plus ``Accept: */*`` and
  ``Connection: keep-alive``, and ``Content-Length`` comes from
  ``requests.utils.super_len``;
* timeouts: ``(connect, read)`` as requests takes them; the read timeout applies to
  every socket read, as urllib3's does;
* connection reuse: a connection goes back to the pool only after its response was
  read to the end; one closed early, or whose server said ``Connection: close``, is
  closed.  An idle connection that became readable (the server closed it, or sent
  something unasked) is dropped before reuse, as urllib3 does.
* the response body is returned exactly as sent.  (``requests`` would decode an
  object stored with ``Content-Encoding: gzip``; a filesystem must return the
  object's bytes, which is what this does.)

Errors: anything that goes wrong on the wire (``OSError``, which includes timeouts
and resets, and ``http.client.HTTPException``) is raised as :class:`WireError`,
chained to the original, both while sending and while the body is being read; the
caller (``store_oss``) wraps it as oss2 wraps requests' exceptions.

Threads: a :class:`Pool` is shared by all threads.  ``_idle`` (per host, a LIFO
list of idle connections) is GUARDED_BY ``_lock``; a connection taken out of it
belongs to one request, and so to one thread, until it is returned or closed.
"""
from __future__ import annotations

import http.client
import logging
import select
import socket
import threading
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from requests.models import RequestEncodingMixin
from requests.utils import requote_uri, super_len

log = logging.getLogger(__name__)

# http.client reads a file body in pieces of this size (its default is 8 KiB)
SEND_BLOCK = 1 << 20
_DEFAULT_HEADERS = (("Accept", "*/*"), ("Connection", "keep-alive"))


def request_headers(headers) -> dict:
    """The headers to send for oss2's ``headers``: ``Accept`` and ``Connection`` as
    requests adds them, then oss2's own, leaving out those oss2 marks ``None``
    (Accept-Encoding: requests must not add it).  Both HTTP paths use this."""
    send = dict(_DEFAULT_HEADERS)
    send.update((k, v) for k, v in headers.items() if v is not None)
    return send


class WireError(Exception):
    """A request failed on the wire; ``__cause__`` is the OSError/HTTPException."""


def usable(url: str, data, proxies) -> bool:
    """Whether a request for ``url`` with body ``data`` can go through :class:`Pool`."""
    if not url.startswith("http://") or proxies:
        return False
    if data is None or isinstance(data, (bytes, bytearray, memoryview)):
        return True
    return hasattr(data, "read") and _length(data) is not None


def _length(data) -> Optional[int]:
    """The body's length as requests would send it, or None where requests would
    fall back to chunked encoding (length unknown)."""
    try:
        n = super_len(data)
    except Exception:  # noqa: BLE001 - an unmeasurable body is simply not ours to send
        return None
    return n or None


class Headers(dict):
    """Response headers: a dict keyed by lower-case name, looked up case-insensitively.

    ``requests``' CaseInsensitiveDict is a MutableMapping written in Python: every
    ``in``, ``get`` and ``items()`` step is several Python calls, and oss2 and ossfs
    make a few dozen of them per response.  Here lookups are one ``str.lower`` and a
    dict access, and iteration is the dict's own.  Names iterate in lower case."""

    __slots__ = ()

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


def _parse_header_lines(lines) -> Headers:
    """The header block as :class:`Headers` (repeated fields joined with ", ", obsolete
    line folding unfolded, lines without a colon ignored as the email parser does)."""
    headers = Headers()
    last = None
    for raw in lines:
        if raw in (b"\r\n", b"\n", b""):
            break
        line = raw.decode("iso-8859-1")
        if line[0] in " \t":
            if last is not None:
                dict.__setitem__(headers, last, headers[last] + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        dict.__setitem__(headers, name, headers[name] + ", " + value if name in headers else value)
        last = name
    return headers


class _FastResponse(http.client.HTTPResponse):
    """http.client's response with its header block parsed straight into :class:`Headers`.

    ``HTTPResponse.begin`` hands the header lines to the email package, which costs
    about a fifth of the client CPU of a small request.  This ``begin`` reads the status
    line and the header lines with http.client's own readers (``_read_status``,
    ``_read_headers``: line and count limits included) and then decides the body's
    framing exactly as ``HTTPResponse.begin`` does (chunked, Content-Length, no body for
    HEAD/1xx/204/304, ``will_close``)."""

    def begin(self):
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _parse_header_lines(http.client._read_headers(self.fp))
        tr_enc = self.headers.get("transfer-encoding")
        self.chunked = bool(tr_enc and tr_enc.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200
                or self._method == "HEAD"):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _Connection(http.client.HTTPConnection):
    # http.client's private header reader is what _FastResponse builds on; without it
    # (a future Python), the standard response class is used.
    response_class = (_FastResponse if hasattr(http.client, "_read_headers")
                      and hasattr(http.client.HTTPResponse, "_read_status") else http.client.HTTPResponse)


class _Response:
    """The part of ``requests.Response`` oss2 and ossfs use, over an http.client response."""

    def __init__(self, pool: "Pool", key, conn: http.client.HTTPConnection, method: str,
                 resp: http.client.HTTPResponse):
        self._pool, self._key, self._conn, self._resp = pool, key, conn, resp
        self.status_code = resp.status
        self.reason = resp.reason
        if isinstance(resp.headers, Headers):
            self.headers = resp.headers
        else:
            self.headers = Headers()
            for name, value in resp.getheaders():
                name = name.lower()
                # repeated fields are joined as urllib3 joins them
                self.headers[name] = self.headers[name] + ", " + value if name in self.headers else value
        self._done = False
        if method == "HEAD" or resp.length == 0:
            resp.read()          # no body: lets http.client mark the response complete
        if resp.isclosed():
            self._finish()

    def iter_content(self, chunk_size: int = 1):
        """Yield the body in pieces of at most ``chunk_size`` bytes, then release the connection."""
        while not self._done:
            try:
                data = self._resp.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:
                self._abandon()
                raise WireError("reading the response body: %s" % (exc,)) from exc
            if not data and self._resp.length:
                # http.client reports a body cut short of its Content-Length as a
                # normal end; urllib3 raises IncompleteRead, and so does this
                self._abandon()
                raise WireError("response body ended %d bytes early" % self._resp.length) \
                    from http.client.IncompleteRead(b"", self._resp.length)
            if not data or self._resp.isclosed():
                self._finish()   # before the last yield: a caller may stop right after it
            if data:
                yield data

    def close(self) -> None:
        """Release the connection; one whose body was not read to the end is closed."""
        if not self._done:
            self._abandon()

    def _finish(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._resp.will_close:
                conn.close()
            else:
                self._pool._put(self._key, conn)

    def _abandon(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Pool:
    """Idle keep-alive connections per (host, port), at most ``maxsize`` each."""

    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._idle: Dict[Tuple[str, int], List[http.client.HTTPConnection]] = {}  # GUARDED_BY(_lock)

    def request(self, method: str, url: str, params, headers, data, timeout) -> _Response:
        """Send one request and return its response once the status and headers are in.

        ``timeout`` is a number or ``(connect, read)``.  Raises :class:`WireError`."""
        parts = urlsplit(url)
        query = parts.query
        extra = RequestEncodingMixin._encode_params(params) if params else ""
        if extra:
            query = query + "&" + extra if query else extra
        target = requote_uri(urlunsplit(("", "", parts.path or "/", query, "")))
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        host, port = parts.hostname, parts.port or 80
        key = (host, port)

        send_headers = request_headers(headers)
        names = {k.lower() for k in send_headers}
        if data is not None and "content-length" not in names and "transfer-encoding" not in names:
            length = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else _length(data)
            send_headers["Content-Length"] = str(length or 0)
        elif data is None and method not in ("GET", "HEAD") and "content-length" not in names:
            send_headers["Content-Length"] = "0"  # as requests sends it

        conn = self._get(key)
        try:
            if conn is None:
                conn = _Connection(host, port, timeout=connect_timeout, blocksize=SEND_BLOCK)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.settimeout(read_timeout)
            conn.request(method, target, body=data, headers=send_headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            raise WireError("%s %s: %s" % (method, parts.netloc, exc)) from exc
        return _Response(self, key, conn, method, resp)

    def _get(self, key) -> Optional[http.client.HTTPConnection]:
        """An idle connection to ``key`` still fit for a request, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            if conn.sock is not None and not _dropped(conn.sock):
                return conn
            conn.close()

    def _put(self, key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.maxsize:
                idle.append(conn)
                return
        conn.close()

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (EOF)
    or holds bytes nobody asked for; either way it cannot carry a request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
