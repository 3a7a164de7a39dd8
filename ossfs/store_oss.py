"""OssStore: the :class:`ossfs.store.ObjectStore` that talks to OSS (or ``ossfs-server``).

This is the only module that imports ``oss2``.  It owns:

* the translation of every ``oss2``/``requests`` failure into :mod:`ossfs.errors`
  (one function, :func:`translate`, and one question, :func:`is_temp_failure`);
* the retry policy: oss2's own retries are not used, so that request counts are
  predictable and one policy applies to every call;
* integrity: Content-MD5 on every PUT and part, CRC64 checks on uploads (oss2's
  ``enable_crc``), on whole-object downloads and on CompleteMultipartUpload; the CRC-64
  is computed by ``fastcrc`` when it is installed (:class:`FastCrc64`, which this
  module installs as ``oss2.utils.Crc64``), else by oss2's crcmod;
* listing pages: read by :mod:`ossfs.listxml` (a regular expression per entry, 4-5x
  cheaper than oss2's ElementTree walk), installed as oss2's ``parse_list_objects``
  and ``parse_list_objects_v2``; a page outside the shape OSS sends goes to oss2's
  own parser, so the objects oss2 returns are the same either way;
* the mount prefix (``bucket:/prefix``): added to every key sent, stripped from every
  key returned.

Retry algorithm
---------------
A call is attempted once and then retried up to ``retries`` times while
:func:`is_temp_failure` says the failure is temporary: 5xx answers, connection
errors (refused, reset, dropped mid-body), timeouts, ``InvalidDigest`` and CRC
mismatches (the bytes were damaged on the way; sending them again usually cures
it).  Before retry *n* (0-based) the caller sleeps a uniformly random time in
``[0, min(cap, base * 2**n)]`` ("full jitter", base 0.2 s, cap 10 s), which spreads
the retries of many parallel transfers instead of synchronising them.  An upload body
is rewound to where it started before each attempt.  When retries are exhausted the
caller gets :class:`~ossfs.errors.Unreachable` (connection refused / DNS failure),
:class:`~ossfs.errors.IntegrityError` (digest/CRC mismatch) or
:class:`~ossfs.errors.TransientError` (the rest).  Permanent failures (404, 403,
412...) are never retried.

Streaming downloads (:meth:`OssStore.get_to_file`) retry from the byte where the
broken stream stopped and pin the retry to the ETag of the first answer, so a file
is never stitched from two versions of an object.

A retried request whose first attempt actually reached the server is harmless for
every call except CompleteMultipartUpload and AbortMultipartUpload, whose second
attempt sees ``NoSuchUpload``; both treat that answer after a lost response as
success (complete then HEADs the key to return its info).

Messages never contain the access key secret, a signature or a signed URL: they
are composed here from the operation, the key, the OSS error code and message and
the request id.  oss2's debug log prints request headers (with the Authorization
signature), so its logger is kept at WARNING unless the user configured it.

Transport: requests to a plain-http endpoint without a proxy go through
:mod:`ossfs.httpconn` (http.client with a keep-alive pool), which costs about half the
client CPU of oss2's requests/urllib3 path for a small request; https endpoints,
proxies and bodies of unknown length keep the requests path (see :class:`_Session`).

Threads: an OssStore is shared by every thread of the filesystem.  Its only shared
mutable state is the connection pools (``httpconn.Pool``, guarded by its lock, and
urllib3's); the store itself holds no lock and no per-call state.
"""
from __future__ import annotations

import base64
import email.utils
import errno as _errno
import functools
import hashlib
import http.client
import io
import logging
import os
import random
import re
import socket
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO, Callable, Iterable, Optional, Tuple

import oss2
import requests
import urllib3

from ossfs import crc64, httpconn, listxml
from ossfs.errors import (AccessDenied, IntegrityError, NoSuchBucket, NotFound, PreconditionFailed,
                          StoreError, TransientError, Unreachable)
from ossfs.store import KEPT_HEADERS, Body, ListPage, ObjectInfo, PartInfo, UploadInfo

# Characters an XML request body cannot carry as they are (see OssStore.delete_many):
# C0 controls but TAB and LF (CR included: parsers turn it into LF), the non-characters
# U+FFFE/U+FFFF and lone surrogates.
_XML_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff\ud800-\udfff]")

log = logging.getLogger(__name__)

_oss2_log = logging.getLogger("oss2")
if _oss2_log.level == logging.NOTSET:
    # oss2 logs request headers (including the Authorization signature) at DEBUG.
    _oss2_log.setLevel(logging.WARNING)

try:  # CRC-64 in C without the GIL (several GB/s); crcmod, which oss2 uses, is pure Python here
    from fastcrc import crc64 as _fastcrc64
except ImportError:  # pragma: no cover - fastcrc is optional
    _fastcrc64 = None


class FastCrc64:
    """``oss2.utils.Crc64`` on ``fastcrc`` (CRC-64/XZ: the same polynomial, reflection and
    XOR-out as oss2's CRC-64/ECMA-182, so every value is bit-identical).  oss2 builds one
    per request body and feeds it every chunk sent or received; crcmod (pure Python
    without its C extension) computed a 256-entry table per instance and then ran at a
    few MB/s holding the GIL.  ``combine`` is :func:`ossfs.crc64.combine` (crcmod's took
    ~16 ms a call).  Installed in place of oss2's class at import (one place: this
    module)."""

    def __init__(self, init_crc=0):
        self.crc = init_crc

    def __call__(self, data):
        self.update(data)

    def update(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.crc = _fastcrc64.xz(data, self.crc)

    def combine(self, crc1, crc2, len2):
        return crc64.combine(crc1, crc2, len2)


_Crc64Oss2 = oss2.utils.Crc64
if _fastcrc64 is not None and not getattr(oss2.utils.Crc64, "_ossfs", False):
    FastCrc64._ossfs = True
    oss2.utils.Crc64 = FastCrc64  # make_crc_adapter and calc_obj_crc_from_parts look it up here


def _fast_list_parser(full, marker_tag: str, marker_attr: str):
    """oss2's ``parse_list_objects`` (``full``) for a page :func:`listxml.parse` can
    read, built from its fields with oss2's own conversions; any other page, and any
    page whose fields oss2 would refuse (it then raises), goes to ``full``."""
    unixtime = functools.lru_cache(maxsize=4096)(oss2.utils.iso8601_to_unixtime)  # many entries share a second
    unquote = oss2.compat.urlunquote
    SimplifiedObjectInfo, Owner = oss2.models.SimplifiedObjectInfo, oss2.models.Owner

    def parse(result, body):
        page = listxml.parse(body)
        if page is None:
            return full(result, body)
        fields = page.fields
        url = fields.get("EncodingType") == "url"
        truncated = fields.get("IsTruncated")
        if truncated not in ("true", "false") or (truncated == "true" and marker_tag not in fields):
            return full(result, body)
        try:
            objects = [SimplifiedObjectInfo(unquote(key) if url else key, unixtime(modified), etag.strip('"'),
                                            type_, int(size), storage_class,
                                            None if owner_id is None else Owner(owner_name, owner_id), restore)
                       for key, modified, etag, type_, size, storage_class, owner_id, owner_name, restore
                       in page.entries]
        except ValueError:      # a date or size oss2 refuses: let it raise its own error
            return full(result, body)
        result.is_truncated = truncated == "true"
        if result.is_truncated:
            setattr(result, marker_attr, unquote(fields[marker_tag]) if url else fields[marker_tag])
        result.object_list.extend(objects)
        result.prefix_list.extend(unquote(p) if url else p for p in page.prefixes)
        return result

    parse._ossfs = True
    parse._full = full        # oss2's own, for the equality tests
    return parse


if not getattr(oss2.xml_utils.parse_list_objects, "_ossfs", False):
    # oss2.api looks both up in xml_utils at every call
    oss2.xml_utils.parse_list_objects = _fast_list_parser(
        oss2.xml_utils.parse_list_objects, "NextMarker", "next_marker")
    oss2.xml_utils.parse_list_objects_v2 = _fast_list_parser(
        oss2.xml_utils.parse_list_objects_v2, "NextContinuationToken", "next_continuation_token")

# Our policy is the only retry policy (oss2 only uses this in its iterators, which we
# do not use; set anyway so that nothing retries behind our back).
oss2.defaults.request_retries = 0

META_PREFIX = "x-oss-meta-"
CHUNK = 1 << 20  # streaming unit of get_to_file
GiB = 1 << 30
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0
_RANGE_STANDARD = {"x-oss-range-behavior": "standard"}  # 416 instead of whole object on a bad range


def _content_range_total(value: Optional[str]) -> Optional[int]:
    """The object size from ``Content-Range: bytes 0-99/1234``, None if absent or unknown."""
    if not value or "/" not in value:
        return None
    return _int(value.rsplit("/", 1)[1].strip())


# --------------------------------------------------------------------------- errors

def _root_causes(exc: BaseException):
    """Walk an exception, its ``args``/``reason``/``exception`` attributes and its
    context chain: requests wraps urllib3 which wraps the socket error."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo.append(getattr(e, "exception", None))
        todo.append(getattr(e, "reason", None))
        todo.append(e.__cause__)
        todo.append(e.__context__)
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))


def _connection_reason(exc: BaseException) -> Optional[str]:
    """'connection refused' / 'name resolution failed' when the endpoint cannot be
    reached at all, else None."""
    for e in _root_causes(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return "name resolution failed"
        if isinstance(e, OSError) and e.errno in (_errno.ECONNREFUSED, _errno.EHOSTUNREACH, _errno.ENETUNREACH):
            return "connection refused" if e.errno == _errno.ECONNREFUSED else "host unreachable"
    return None


def _network_reason(exc: BaseException) -> str:
    """A short, secret-free description of a network failure."""
    reason = _connection_reason(exc)
    if reason:
        return reason
    for e in _root_causes(exc):
        if isinstance(e, (socket.timeout, TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError)):
            return "timed out"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError,
                          http.client.HTTPException)):
            return "connection broken"
    return "connection failed"


_TEMP_CODES = {"InvalidDigest", "InternalError", "ServiceUnavailable", "RequestTimeout", "SlowDown",
               "RequestTimeTooSkewed"}
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, httpconn.WireError, ConnectionError,
                   socket.timeout, TimeoutError)


def is_temp_failure(exc: BaseException) -> bool:
    """The single answer to "is this failure worth retrying?"."""
    if isinstance(exc, (TransientError, IntegrityError)):
        return True
    if isinstance(exc, StoreError):
        return False
    if isinstance(exc, (oss2.exceptions.RequestError, oss2.exceptions.InconsistentError)):
        return True
    if isinstance(exc, oss2.exceptions.OssError):
        return exc.status >= 500 or exc.code in _TEMP_CODES or exc.status == 429
    return isinstance(exc, _NETWORK_ERRORS)


def combine_crc64(parts) -> Optional[int]:
    """CRC64 of the concatenation of ``parts`` (PartInfo in order), or None if any
    part's CRC is unknown."""
    crc = 0
    for part in parts:
        if part.crc64 is None:
            return None
        crc = crc64.combine(crc, part.crc64, part.size)
    return crc


def backoff_delay(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (0-based)."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


def translate(exc: BaseException, what: str, endpoint: str) -> BaseException:
    """Turn an oss2/requests exception into an ossfs.errors exception.

    ``what`` names the operation and key (``"GET 'a/b'"``); the message is built only
    from it, the OSS code/message and the request id, so it never carries secrets.
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, oss2.exceptions.InconsistentError):
        return IntegrityError("%s: CRC64 of the data differs from the server's" % what, "InconsistentError")
    if isinstance(exc, oss2.exceptions.RequestError) or isinstance(exc, _NETWORK_ERRORS):
        reason = _connection_reason(exc)
        if reason:
            return Unreachable("cannot reach %s: %s" % (endpoint, reason))
        return TransientError("%s: %s talking to %s" % (what, _network_reason(exc), endpoint))
    if isinstance(exc, oss2.exceptions.ClientError):
        return StoreError("%s: %s" % (what, exc.body))
    if isinstance(exc, oss2.exceptions.OssError):
        code, status = exc.code or "", exc.status
        detail = code or ("HTTP %d" % status)
        if exc.message:
            detail += " (%s)" % exc.message
        if exc.request_id:
            detail += " [request id %s]" % exc.request_id
        msg = "%s: %s" % (what, detail)
        if code == "NoSuchBucket":
            return NoSuchBucket(msg, code, status)
        if code == "InvalidAccessKeyId":
            return AccessDenied("%s: wrong access key id" % what, code, status)
        if code == "SignatureDoesNotMatch":
            return AccessDenied("%s: wrong access key secret" % what, code, status)
        if code == "AccessDenied" or status == 403:
            return AccessDenied(msg, code, status)
        if code in ("NoSuchKey", "NoSuchUpload") or status == 404:
            return NotFound(msg, code, status)
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(msg, code, status)
        if code == "InvalidDigest":
            return IntegrityError(msg, code, status)
        if status >= 500 or code in _TEMP_CODES:
            return TransientError(msg, code, status)
        return StoreError(msg, code, status)
    return StoreError("%s: %s" % (what, type(exc).__name__))


# --------------------------------------------------------------------------- helpers

def _quote(etag: str) -> str:
    return '"%s"' % etag.strip('"')


def _unquote(etag: Optional[str]) -> str:
    return (etag or "").strip('"')


def _http_time(value: Optional[str]) -> float:
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _meta_from_headers(headers) -> dict:
    return {k[len(META_PREFIX):].lower(): v for k, v in headers.items() if k.lower().startswith(META_PREFIX)}


def _kept(headers) -> dict:
    """The KEPT_HEADERS of a response's (case-insensitive) headers."""
    out = {}
    for name in KEPT_HEADERS:
        value = headers.get(name)
        if value:
            out[name] = value
    return out


def _meta_headers(meta: Optional[dict], content_type: str) -> dict:
    headers = {}
    for name, value in (meta or {}).items():
        headers[META_PREFIX + str(name).lower()] = str(value)
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _settle_environment(session: requests.Session, endpoint: str) -> None:
    """Read the proxy and CA-bundle variables once, not on every request.

    With ``trust_env`` requests looks up ``*_proxy``/``no_proxy``, ``~/.netrc`` and the
    CA-bundle variables for each request (a tenth of the client CPU of a small
    request).  A daemon's environment does not change, so the same settings are fixed
    on the session here.  ``.netrc`` is left out on purpose: its credentials would
    replace the OSS signature.  The CA bundle is set only for an https endpoint: a
    bundle path makes requests stat it and key its connection pools by it on every
    request, a fifth of the client CPU of a HEAD, for nothing over plain http."""
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and endpoint.lower().startswith("https://"):
        session.verify = bundle


class _Response(oss2.http.Response):
    """oss2's Response without its eager debug formatting of every header set."""

    def __init__(self, response):  # noqa: super().__init__ deliberately not called
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.request_id = response.headers.get("x-oss-request-id", "")
        self._Response__all_read = False  # oss2.http.Response's private "body consumed" flag


class _AsStored:
    """A ``requests.Response`` whose body is read as the object holds it.

    ``requests.Response.iter_content`` decodes a ``Content-Encoding: gzip``/``deflate``
    body, so an object stored compressed (``ossutil cp --meta Content-Encoding:gzip``,
    a static-site bucket) would come back as other bytes than its size, ETag and CRC-64
    describe, and a file read would fail its CRC check.  This reads the raw stream
    (urllib3's errors are network errors to :func:`is_temp_failure`)."""

    def __init__(self, response: requests.Response):
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers

    def iter_content(self, chunk_size: int = 1):
        return self._response.raw.stream(chunk_size, decode_content=False)

    def close(self) -> None:
        self._response.close()


class _Session(oss2.http.Session):
    """oss2's Session, sending each request through :class:`ossfs.httpconn.Pool` when
    :func:`ossfs.httpconn.usable` says it can (plain http, no proxy, a body of known
    length), else straight through the requests connection pool's adapter instead of
    ``requests.Session.request``.  Failures of either path reach oss2 as
    ``oss2.exceptions.RequestError``, as oss2's own Session raises them; a failure while
    a body is streamed is an ``httpconn.WireError`` (one of the network errors below).

    On the requests path, per request this skips what an OSS client never uses:
    merging session settings, cookie jars on the way out and in, hooks, and following redirects
    (OSS answers a wrong endpoint with an error, not a Location to follow, and a
    redirect must never carry our signed headers to another host).  What oss2
    relies on is kept: the same adapter and pool, ``stream=True``, the timeout, the
    proxies and TLS settings fixed by :func:`_settle_environment`, requests'
    exceptions (wrapped in ``oss2.exceptions.RequestError`` as oss2 does), and the
    body handling of ``PreparedRequest.prepare_body`` (bytes, files, iterators).
    Together with :func:`_settle_environment` this is about a third of the client
    CPU of a small request such as a HEAD."""

    def __init__(self, pool_size: int):
        super().__init__(pool_size=pool_size)
        self._lean = httpconn.Pool(maxsize=pool_size)

    def do_request(self, req, timeout):
        proxies = req.proxies or self.session.proxies
        if httpconn.usable(req.url, req.data, proxies):
            try:
                return _Response(self._lean.request(req.method, req.url, req.params, req.headers, req.data, timeout))
            except httpconn.WireError as exc:
                raise oss2.exceptions.RequestError(exc.__cause__ or exc)
        try:
            prep = requests.PreparedRequest()
            prep.prepare_method(req.method)
            prep.prepare_url(req.url, req.params)
            prep.prepare_headers(httpconn.request_headers(req.headers))
            prep.prepare_body(req.data, None)
            session = self.session
            adapter = session.get_adapter(prep.url)
            return _Response(_AsStored(adapter.send(prep, stream=True, timeout=timeout, verify=session.verify,
                                                    cert=None, proxies=proxies)))
        except requests.RequestException as exc:
            raise oss2.exceptions.RequestError(exc)


class _Body:
    """An upload body that can be measured, digested and rewound for each attempt."""

    def __init__(self, body: Body):
        if isinstance(body, (bytes, bytearray, memoryview)):
            self.data: Optional[bytes] = bytes(body)
            self.fileobj = None
            self.size = len(self.data)
            self.md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()
            return
        self.data = None
        self.fileobj = body
        self.start = body.tell()
        digest = hashlib.md5()
        size = 0
        while True:
            chunk = body.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        self.size = size
        self.md5 = base64.b64encode(digest.digest()).decode()
        body.seek(self.start)

    def payload(self):
        """The body for one attempt (a file object is rewound to where it started)."""
        if self.data is not None:
            return self.data
        self.fileobj.seek(self.start)
        return self.fileobj


# --------------------------------------------------------------------------- the store

class OssStore:
    """One bucket (and optional key prefix) on an OSS endpoint.

    ``credentials`` is any object with ``access_key_id``, ``access_key_secret`` and
    optionally ``session_token`` (``ossfs.credentials.Credentials``), or a tuple
    ``(id, secret[, token])``.  ``copy_limit``/``copy_part_size`` set when and how
    :meth:`copy` switches to UploadPartCopy (OSS refuses CopyObject above 1 GiB).
    """

    def __init__(self, endpoint: str, bucket: str, credentials, *, prefix: str = "", retries: int = 5,
                 connect_timeout: float = 30, readwrite_timeout: float = 120, sigv4: bool = False,
                 region: Optional[str] = None, pool_size: int = 32, list_v2: bool = False,
                 copy_limit: int = GiB, copy_part_size: int = 512 << 20, copy_parallel: int = 4,
                 enable_crc: bool = True, object_headers: Optional[dict] = None, path_style: bool = False):
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.retries = max(0, int(retries))
        self.list_v2 = list_v2
        self.copy_limit = copy_limit
        self.copy_part_size = copy_part_size
        self.copy_parallel = copy_parallel
        # sent with every request that makes a new object (PUT, initiate, copy):
        # x-oss-object-acl (default_acl=), x-oss-storage-class (storage_class=)
        self.object_headers = dict(object_headers or {})
        if isinstance(credentials, (tuple, list)):
            key_id, secret = credentials[0], credentials[1]
            token = credentials[2] if len(credentials) > 2 else None
        else:
            key_id, secret = credentials.access_key_id, credentials.access_key_secret
            token = getattr(credentials, "session_token", None)
        version = oss2.AUTH_VERSION_4 if sigv4 else oss2.AUTH_VERSION_1
        if token:
            auth = oss2.StsAuth(key_id, secret, token, auth_version=version)
        elif sigv4:
            auth = oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(key_id, secret))
        else:
            auth = oss2.Auth(key_id, secret)
        if sigv4 and not region:
            raise StoreError("signature version 4 needs a region")
        self._session = _Session(pool_size=pool_size)
        _settle_environment(self._session.session, self.endpoint)
        self._bucket = oss2.Bucket(auth, self.endpoint, bucket, session=self._session,
                                   connect_timeout=(connect_timeout, readwrite_timeout),
                                   enable_crc=enable_crc, region=region, is_path_style=path_style)
        # check_bucket must fail within seconds, whatever the configured timeouts.
        self._quick_bucket = oss2.Bucket(auth, self.endpoint, bucket, session=self._session,
                                         connect_timeout=(min(connect_timeout, 5), min(readwrite_timeout, 10)),
                                         enable_crc=enable_crc, region=region, is_path_style=path_style)

    def __repr__(self):
        return "OssStore(%s, %s, prefix=%r)" % (self.endpoint, self.bucket, self.prefix)

    # -- keys ------------------------------------------------------------------

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _strip(self, key: str) -> str:
        return key[len(self.prefix):] if self.prefix and key.startswith(self.prefix) else key

    # -- retry loop ------------------------------------------------------------

    def _call(self, what: str, fn: Callable, retries: Optional[int] = None):
        """Run ``fn()`` under the retry policy; raise an ossfs.errors exception."""
        limit = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return fn(attempt)
            except Exception as exc:  # noqa: BLE001 - every failure is translated below
                if not is_temp_failure(exc) or attempt >= limit:
                    err = translate(exc, what, self.endpoint)
                    if attempt and isinstance(err, TransientError) and not isinstance(err, Unreachable):
                        err.args = ("%s (after %d attempts)" % (err.args[0], attempt + 1),)
                    raise err from None
                delay = backoff_delay(attempt)
                log.debug("%s: %s, retry %d/%d in %.2fs", what, type(exc).__name__, attempt + 1, limit, delay)
                time.sleep(delay)
                attempt += 1

    # -- bucket ----------------------------------------------------------------

    def check_bucket(self, deadline: float = 20.0) -> None:
        what = "bucket %s at %s" % (self.bucket, self.endpoint)

        def probe(_attempt):
            try:
                result = self._quick_bucket.list_objects(prefix=self.prefix, max_keys=1)
            except oss2.exceptions.ServerError as exc:
                if not exc.code and not exc.request_id:
                    raise StoreError("%s does not speak the OSS protocol (HTTP %d without an OSS error)"
                                     % (self.endpoint, exc.status), status=exc.status) from None
                raise
            except (oss2.exceptions.OssError,) + _NETWORK_ERRORS:
                raise
            except Exception:  # noqa: BLE001 - an answer oss2 cannot parse (HTML, JSON, ...)
                raise StoreError("%s does not speak the OSS protocol (its answer is not OSS XML)"
                                 % self.endpoint) from None
            if result.status // 100 != 2 or not hasattr(result, "object_list"):
                raise StoreError("%s does not speak the OSS protocol" % self.endpoint)

        # A server that answers 5xx (busy, restarting) is asked again, up to retries=
        # rounds, none started after half of ``deadline`` seconds; one that does not answer at all (no
        # HTTP status: refused, timed out, cut) is given up on after two attempts, so
        # that a wrong url= fails the mount within seconds.
        start, attempts = time.monotonic(), 0
        for attempt in range(self.retries + 1):
            try:
                return self._call("list " + what, probe, retries=min(self.retries, 1))
            except TransientError as exc:
                attempts += min(self.retries, 1) + 1
                delay = backoff_delay(attempt)
                if (not exc.status or attempt >= self.retries
                        or time.monotonic() - start + delay > deadline / 2):
                    if exc.status:
                        exc.args = (re.sub(r" \(after \d+ attempts\)$", "", exc.args[0])
                                    + " (after %d attempts)" % attempts,)
                    raise
                time.sleep(delay)

    # -- reads -----------------------------------------------------------------

    def _info_from_headers(self, key: str, headers, size: Optional[int] = None, meta=True) -> ObjectInfo:
        if size is None:
            size = _int(headers.get("content-length")) or 0
        return ObjectInfo(
            key=key,
            size=size,
            etag=_unquote(headers.get("etag")),
            last_modified=_http_time(headers.get("last-modified")),
            content_type=headers.get("content-type", "") or "",
            meta=_meta_from_headers(headers) if meta else None,
            crc64=_int(headers.get("x-oss-hash-crc64ecma")),
            object_type=headers.get("x-oss-object-type", "Normal") or "Normal",
            headers=_kept(headers),
        )

    def head(self, key: str) -> ObjectInfo:
        result = self._call("HEAD %r" % key, lambda _a: self._bucket.head_object(self._k(key)))
        return self._info_from_headers(key, result.headers)

    def get_first(self, key: str, length: int) -> Tuple[ObjectInfo, bytes]:
        what = "GET %r" % key
        length = max(1, length)

        def attempt(_attempt):
            try:
                result = self._bucket.get_object(self._k(key), byte_range=(0, length - 1),
                                                 headers=self._get_headers(None))
            except oss2.exceptions.ServerError as exc:
                if exc.status == 416:  # an empty object has no byte 0
                    return self.head(key), b""
                raise
            try:
                headers = result.headers
                total = _content_range_total(headers.get("content-range"))
                if result.status == 200 or total is None:  # the whole object (the range was ignored)
                    total = _int(headers.get("content-length"))
                    if total is None:
                        raise TransientError("%s: no Content-Length" % what)
                want = min(length, total)
                chunks, got = [], 0
                for chunk in result.resp.response.iter_content(CHUNK):
                    chunk = chunk[:want - got]
                    chunks.append(chunk)
                    got += len(chunk)
                    if got >= want:
                        break
                if got < want:
                    raise TransientError("%s: stream ended early" % what)
                data = b"".join(chunks)
                info = self._info_from_headers(key, headers, size=total)
                if want == total and info.crc64 is not None:
                    crc = oss2.utils.Crc64()
                    crc.update(data)
                    if crc.crc != info.crc64:
                        raise IntegrityError("%s: CRC64 of the data differs from the server's" % what)
                return info, data
            finally:
                result.resp.response.close()

        return self._call(what, attempt)

    def _get_headers(self, if_match: Optional[str]) -> dict:
        headers = dict(_RANGE_STANDARD)
        if if_match:
            headers["If-Match"] = _quote(if_match)
        return headers

    def get_range(self, key: str, start: int, length: int, if_match: Optional[str] = None) -> bytes:
        buf = io.BytesIO()
        self.get_to_file(key, buf, start, length, if_match)
        return buf.getvalue()

    def get_to_file(self, key: str, fileobj: BinaryIO, start: int = 0, length: Optional[int] = None,
                    if_match: Optional[str] = None) -> int:
        if length is not None and length <= 0:
            return 0
        what = "GET %r" % key
        state = {"written": 0, "etag": if_match, "done": False}
        seekable = bool(getattr(fileobj, "seekable", lambda: False)())
        base = fileobj.tell() if seekable else 0

        def attempt(_attempt):
            # Resume where a broken stream stopped, pinned to the first answer's ETag.
            pos = start + state["written"]
            remaining = None if length is None else length - state["written"]
            if remaining is not None and remaining <= 0:
                return
            last = None if remaining is None else pos + remaining - 1
            if pos == 0 and last is None:
                byte_range = None
            else:
                byte_range = (pos, last)
            try:
                result = self._bucket.get_object(self._k(key), byte_range=byte_range,
                                                 headers=self._get_headers(state["etag"]))
            except oss2.exceptions.ServerError as exc:
                if exc.status == 416:  # start at or beyond the end: nothing to read
                    return
                raise
            try:
                if state["etag"] is None:
                    state["etag"] = _unquote(result.etag)
                whole = result.status == 200
                skip = pos if (whole and byte_range is not None) else 0  # the server ignored the range
                want = remaining
                expected = _int(result.headers.get("content-length"))
                if expected is not None:
                    expected -= skip
                    if want is not None:
                        expected = min(expected, want)
                # Whole-object CRC only when the whole object streams through a file we can rewind.
                crc = None
                if whole and pos == 0 and want is None and result.server_crc is not None and seekable:
                    crc = oss2.utils.Crc64()
                got = 0
                for chunk in result.resp.response.iter_content(CHUNK):
                    if crc is not None:
                        crc.update(chunk)
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if want is not None:
                        chunk = chunk[:want]
                        want -= len(chunk)
                    if chunk:
                        fileobj.write(chunk)
                        got += len(chunk)
                        state["written"] += len(chunk)
                    if want == 0:
                        break
                if expected is not None and got < expected:
                    raise TransientError("%s: stream ended early" % what)
                if crc is not None and crc.crc != result.server_crc:
                    state["written"] = 0  # start over: every byte is suspect
                    fileobj.seek(base)
                    raise IntegrityError("%s: CRC64 of the data differs from the server's" % what)
            finally:
                result.resp.response.close()

        self._call(what, attempt)
        return state["written"]

    # -- writes ----------------------------------------------------------------

    def put(self, key: str, body: Body, meta: Optional[dict] = None, content_type: str = "",
            if_match: Optional[str] = None) -> ObjectInfo:
        data = _Body(body)
        headers = _meta_headers(meta, content_type)
        headers.update(self.object_headers)
        headers["Content-MD5"] = data.md5
        if if_match:
            # OSS ignores If-Match on PutObject: check with a HEAD first (a writer that
            # slips in between HEAD and PUT is not detected), and send the header too
            # for servers that do honour it.
            current = self.head(key).etag
            if current != _unquote(if_match):
                raise PreconditionFailed("PUT %r: object changed (ETag %s, expected %s)"
                                         % (key, current, _unquote(if_match)), "PreconditionFailed", 412)
            headers["If-Match"] = _quote(if_match)
        result = self._call("PUT %r" % key,
                            lambda _a: self._bucket.put_object(self._k(key), data.payload(), headers=dict(headers)))
        return ObjectInfo(key=key, size=data.size, etag=_unquote(result.etag),
                          last_modified=_http_time(result.headers.get("date")),
                          content_type=content_type or result.headers.get("x-oss-content-type", "") or "",
                          meta={str(k).lower(): str(v) for k, v in (meta or {}).items()},
                          crc64=result.crc, headers={})

    def copy(self, src_key: str, dst_key: str, meta: Optional[dict] = None, content_type: str = "",
             if_match: Optional[str] = None, source: Optional[ObjectInfo] = None) -> ObjectInfo:
        """See :meth:`ObjectStore.copy`.  Without ``source`` the source is HEADed first
        (its size chooses CopyObject or UploadPartCopy, its headers are the kept ones).
        With it, no HEAD: the copy is pinned to ``source.etag``, and only if that fails
        because the object changed since (no ``if_match`` given) is it HEADed and copied
        as it is now.  A copy in parts that keeps the headers needs them, so it HEADs
        unless ``source.meta`` is known."""
        big = source is not None and source.size > self.copy_limit
        needs_meta = meta is None and (bool(content_type) or big)
        # KEPT_HEADERS are sent again when the copy replaces the headers or is made in parts
        needs_kept = meta is not None or bool(content_type) or big
        if source is not None and not (needs_meta and source.meta is None) \
                and not (needs_kept and source.headers is None):
            try:
                return self._copy(src_key, source, dst_key, meta, content_type, if_match or source.etag)
            except PreconditionFailed:
                if if_match:
                    raise
                log.debug("COPY %r: changed since it was listed; asking for it again", src_key)
        return self._copy(src_key, self.head(src_key), dst_key, meta, content_type, if_match)

    def _copy(self, src_key: str, src: ObjectInfo, dst_key: str, meta: Optional[dict], content_type: str,
              if_match: Optional[str]) -> ObjectInfo:
        if if_match and _unquote(if_match) != src.etag:
            raise PreconditionFailed("COPY %r: source changed (ETag %s, expected %s)" % (src_key, src.etag, if_match),
                                     "PreconditionFailed", 412)
        guard = if_match or src.etag
        if meta is None:   # kept: as known (None: unknown, the source came from a LIST)
            new_meta = None if src.meta is None else dict(src.meta)
        else:
            new_meta = {str(k).lower(): str(v) for k, v in meta.items()}
        new_type = src.content_type if meta is None and not content_type else content_type
        if src.size > self.copy_limit:
            return self._multipart_copy(src_key, src, dst_key, new_meta or {}, new_type, guard)
        headers = {"x-oss-copy-source-if-match": _quote(guard)}
        headers.update(self.object_headers)
        if meta is not None or content_type:
            headers.update(src.headers or {})
            headers.update(_meta_headers(new_meta, new_type))
            headers["x-oss-metadata-directive"] = "REPLACE"
        else:
            headers["x-oss-metadata-directive"] = "COPY"
        what = "COPY %r -> %r" % (src_key, dst_key)

        def attempt(_a):
            result = self._bucket.copy_object(self.bucket, self._k(src_key), self._k(dst_key), headers=dict(headers))
            body = result.resp.read()
            etag, modified = _unquote(result.etag), None
            try:
                root = ElementTree.fromstring(body) if body else None
            except ElementTree.ParseError:
                root = None
            if root is not None:
                etag = _unquote(root.findtext("ETag")) or etag
                text = root.findtext("LastModified")
                if text:
                    modified = oss2.utils.iso8601_to_unixtime(text)
            return result, etag, modified

        result, etag, modified = self._call(what, attempt)
        return ObjectInfo(key=dst_key, size=src.size, etag=etag,
                          last_modified=modified or _http_time(result.headers.get("date")),
                          content_type=new_type, meta=new_meta,
                          crc64=result.crc if result.crc is not None else src.crc64,
                          object_type=src.object_type if etag == src.etag else "Normal", headers=src.headers)

    def _multipart_copy(self, src_key: str, src: ObjectInfo, dst_key: str, meta: dict, content_type: str,
                        guard: str) -> ObjectInfo:
        part_size = max(self.copy_part_size, -(-src.size // 10000))
        upload_id = self._initiate(dst_key, meta, content_type, src.headers or {})
        ranges = [(n + 1, off, min(part_size, src.size - off)) for n, off in enumerate(range(0, src.size, part_size))]
        try:
            with ThreadPoolExecutor(max_workers=self.copy_parallel, thread_name_prefix="ossfs-copy") as pool:
                parts = list(pool.map(lambda r: self.upload_part_copy(dst_key, upload_id, r[0], src_key, r[1], r[2],
                                                                      if_match=guard), ranges))
            info = self.complete_multipart(dst_key, upload_id, parts)
        except BaseException:
            try:
                self.abort_multipart(dst_key, upload_id)
            except StoreError as exc:
                log.warning("could not abort copy upload of %r: %s", dst_key, exc)
            raise
        if src.crc64 is not None and info.crc64 is not None and src.crc64 != info.crc64:
            raise IntegrityError("COPY %r -> %r: CRC64 of the copy differs from the source" % (src_key, dst_key))
        return replace(info, headers=src.headers)

    def delete(self, key: str) -> None:
        def attempt(_a):
            try:
                self._bucket.delete_object(self._k(key))
            except oss2.exceptions.NoSuchKey:
                pass

        self._call("DELETE %r" % key, attempt)

    def delete_many(self, keys: Iterable[str]) -> None:
        """DeleteMultipleObjects, 1000 keys a request, checked key by key.

        The request is XML, which cannot carry every key as it is: control characters
        are not allowed at all, and a CR arrives as LF (end-of-line normalisation), so
        the server would delete a different key and report success.  Such keys are
        deleted one by one, and so is every key of a batch that the answer does not
        list as deleted: the call succeeds only when each of ``keys`` is gone."""
        singles, batchable = [], []
        for k in keys:
            (singles if _XML_UNSAFE.search(k) else batchable).append(k)
        for i in range(0, len(batchable), 1000):
            batch = batchable[i:i + 1000]
            full = [self._k(k) for k in batch]
            result = self._call("DELETE %d objects" % len(batch),
                                lambda _a, b=full: self._bucket.batch_delete_objects(b))
            reported = set(result.deleted_keys or ())
            singles.extend(k for k, f in zip(batch, full) if f not in reported)
        for key in singles:
            self.delete(key)

    def list(self, prefix: str, delimiter: str = "/", token: Optional[str] = None,
             max_keys: int = 1000) -> ListPage:
        what = "LIST %r" % prefix
        full = self._k(prefix)
        if self.list_v2:
            result = self._call(what, lambda _a: self._bucket.list_objects_v2(
                prefix=full, delimiter=delimiter, continuation_token=token or "", max_keys=max_keys))
            next_token = result.next_continuation_token if result.is_truncated else None
        else:
            result = self._call(what, lambda _a: self._bucket.list_objects(
                prefix=full, delimiter=delimiter, marker=token or "", max_keys=max_keys))
            next_token = None
            if result.is_truncated:
                next_token = result.next_marker or (result.object_list[-1].key if result.object_list else None)
        objects = [ObjectInfo(key=self._strip(o.key), size=o.size, etag=_unquote(o.etag),
                              last_modified=float(o.last_modified), meta=None,
                              object_type=o.type or "Normal")
                   for o in result.object_list]
        return ListPage(objects=objects, prefixes=[self._strip(p) for p in result.prefix_list],
                        next_token=next_token or None)

    # -- multipart -------------------------------------------------------------

    def initiate_multipart(self, key: str, meta: Optional[dict] = None, content_type: str = "") -> str:
        return self._initiate(key, meta, content_type, {})

    def _initiate(self, key: str, meta: Optional[dict], content_type: str, kept: dict) -> str:
        headers = dict(kept)
        headers.update(_meta_headers(meta, content_type))
        headers.update(self.object_headers)
        result = self._call("INITIATE %r" % key,
                            lambda _a: self._bucket.init_multipart_upload(self._k(key), headers=dict(headers)))
        return result.upload_id

    def upload_part(self, key: str, upload_id: str, part_number: int, body: Body) -> PartInfo:
        data = _Body(body)
        headers = {"Content-MD5": data.md5}
        result = self._call("PUT part %d of %r" % (part_number, key),
                            lambda _a: self._bucket.upload_part(self._k(key), upload_id, part_number,
                                                                data.payload(), headers=dict(headers)))
        # oss2 (enable_crc) already compared this CRC with the one of the bytes sent.
        return PartInfo(part_number=part_number, etag=_unquote(result.etag), size=data.size, crc64=result.crc)

    def upload_part_copy(self, key: str, upload_id: str, part_number: int, src_key: str,
                         start: int, length: int, if_match: Optional[str] = None) -> PartInfo:
        headers = {"x-oss-copy-source-if-match": _quote(if_match)} if if_match else {}

        def attempt(_a):
            result = self._bucket.upload_part_copy(self.bucket, self._k(src_key), (start, start + length - 1),
                                                   self._k(key), upload_id, part_number, headers=dict(headers))
            body = result.resp.read()
            etag = _unquote(result.etag)
            if not etag and body:
                try:
                    etag = _unquote(ElementTree.fromstring(body).findtext("ETag"))
                except ElementTree.ParseError:
                    pass
            return etag, result.crc

        etag, crc = self._call("COPY part %d of %r from %r" % (part_number, key, src_key), attempt)
        return PartInfo(part_number=part_number, etag=etag, size=length, crc64=crc)

    def complete_multipart(self, key: str, upload_id: str, parts: list) -> ObjectInfo:
        parts = sorted(parts, key=lambda p: p.part_number)
        oss_parts = [oss2.models.PartInfo(p.part_number, _quote(p.etag), size=p.size) for p in parts]
        what = "COMPLETE %r" % key
        started = time.time()

        def attempt(n):
            try:
                return self._bucket.complete_multipart_upload(self._k(key), upload_id, oss_parts)
            except oss2.exceptions.NoSuchUpload:
                if n == 0:
                    raise
                return None  # an earlier attempt completed it but its answer was lost

        result = self._call(what, attempt)
        size = sum(p.size for p in parts)
        if result is None:
            info = self.head(key)
            if info.size != size or info.last_modified < started - 300:
                raise NotFound("%s: upload %s no longer exists" % (what, upload_id), "NoSuchUpload", 404)
            return info
        body = result.resp.read()
        etag = _unquote(result.etag)
        if not etag and body:
            try:
                etag = _unquote(ElementTree.fromstring(body).findtext("ETag"))
            except ElementTree.ParseError:
                pass
        expected = combine_crc64(parts)
        if expected is not None and result.crc is not None and expected != result.crc:
            raise IntegrityError("%s: CRC64 of the object (%d) differs from the CRC64 of its parts (%d)"
                                 % (what, result.crc, expected), "InconsistentError")
        # headers: none of KEPT_HEADERS, as initiate_multipart sends none (a copy in
        # parts, which does, sets its own)
        return ObjectInfo(key=key, size=size, etag=etag, last_modified=_http_time(result.headers.get("date")),
                          meta=None, crc64=result.crc, object_type="Multipart", headers={})

    def abort_multipart(self, key: str, upload_id: str) -> None:
        def attempt(n):
            try:
                self._bucket.abort_multipart_upload(self._k(key), upload_id)
            except oss2.exceptions.NoSuchUpload:
                if n == 0:
                    raise  # unknown upload; after a lost answer it means "already aborted"

        self._call("ABORT %r" % key, attempt)

    def list_parts(self, key: str, upload_id: str) -> list:
        parts, marker = [], ""
        while True:
            result = self._call("LIST parts of %r" % key,
                                lambda _a, m=marker: self._bucket.list_parts(self._k(key), upload_id, marker=m))
            parts.extend(PartInfo(part_number=p.part_number, etag=_unquote(p.etag), size=p.size or 0)
                         for p in result.parts)
            if not result.is_truncated or not result.next_marker:
                return parts
            marker = result.next_marker

    def list_multipart_uploads(self, prefix: str = "") -> list:
        uploads, key_marker, id_marker = [], "", ""
        while True:
            result = self._call("LIST uploads %r" % prefix, lambda _a, k=key_marker, u=id_marker:
                                self._bucket.list_multipart_uploads(prefix=self._k(prefix), key_marker=k,
                                                                    upload_id_marker=u))
            uploads.extend(UploadInfo(key=self._strip(u.key), upload_id=u.upload_id,
                                      initiated=float(u.initiation_date or 0)) for u in result.upload_list)
            if not result.is_truncated:
                return uploads
            key_marker, id_marker = result.next_key_marker, result.next_upload_id_marker
            if not key_marker and not id_marker:
                return uploads
