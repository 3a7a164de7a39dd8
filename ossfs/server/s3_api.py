"""The S3 face of ossfs-server: path-style S3 REST over the same store as the OSS face.

What it owns
    :func:`handle` serves one request that the dispatcher recognised as S3 (SigV4 or
    SigV2 ``Authorization`` header, or ``X-Amz-Algorithm``/``AWSAccessKeyId`` in the
    query): it verifies the signature (:mod:`ossfs.server.auth_s3`), maps the request onto
    :class:`ossfs.server.store.Store` and answers in S3's XML dialect (namespace
    ``http://s3.amazonaws.com/doc/2006-03-01/``).  Path-style addressing
    (``/bucket/key``, what s3fs ``use_path_request_style`` and rclone
    ``force_path_style`` send) is the supported form; virtual-host requests work where
    the dispatcher recognises the bucket in the Host header.

Contracts
    * Both faces see one object: ``x-amz-meta-NAME`` here is the store's user metadata
      ``NAME`` (lower case), which the OSS face serves as ``x-oss-meta-NAME``; ETags are
      the store's, served lower-case as S3 does (conditions accept either case).
    * Every request is counted once with ``state.stats.count`` under its OSS operation
      name (``PutObject``, ``ListObjectsV2``, ``UploadPartCopy``...).
    * Bodies go through :mod:`ossfs.server.httputil` so injected faults (bandwidth,
      dropped connections) hit this face too.
    * A body that fails its ``x-amz-content-sha256``, ``Content-MD5`` or chunk signature
      is refused before the store commits it: the object keeps its old content.
    * Errors are S3 error XML (``Code``, ``Message``, ``Resource``, ``RequestId``); HEAD
      errors carry no body.

Threads and locks
    No state of its own: each request works on its arguments; the store and the stats
    lock for themselves.
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, Optional, Tuple
from urllib.parse import quote, quote_plus, unquote

from ossfs.server import auth_s3, httputil
from ossfs.server.auth_s3 import S3AuthError
from ossfs.server.store import HEADER_NAMES, ObjectRecord, StoreError

log = logging.getLogger(__name__)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
META_PREFIX = "x-amz-meta-"
OWNER_ID = "ossfs"
# XML bodies we parse (DeleteObjects, CompleteMultipartUpload) are small; cap them so a
# client cannot make the server buffer an unbounded body.
MAX_XML_BODY = 8 << 20
MAX_KEYS = 1000

# Store (OSS) error codes whose S3 name differs.
_S3_CODES = {
    "BucketAlreadyExists": ("BucketAlreadyOwnedByYou", 409),
    "SymlinkTargetNotExist": ("NoSuchKey", 404),
    "InvalidObjectName": ("KeyTooLongError", 400),
    "InvalidTargetType": ("InvalidRequest", 400),
    "ObjectNotAppendable": ("InvalidRequest", 400),
}


class S3Error(Exception):
    """An S3 error answer: code, HTTP status, message, extra response headers."""

    def __init__(self, code: str, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message
        self.headers = headers or {}


@dataclass
class S3Request:
    """One parsed request: target, verified identity, and what it addresses."""

    handler: object
    state: object
    method: str
    raw_path: str
    query: Dict[str, str]
    bucket: str
    key: str
    ctx: Optional[auth_s3.SigV4Context] = None
    request_id: str = ""

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self.handler.headers.get(name, default)


# --------------------------------------------------------------------------- entry point

def handle(handler, state) -> None:
    """Serve one S3 request on ``handler`` (an ``httpd.Handler``, body unread)."""
    req = S3Request(handler, state, handler.command, handler.raw_path, handler.query,
                    handler.bucket or "", handler.key or "", request_id=handler.request_id)
    op = _operation_name(req)
    state.stats.count(op)
    try:
        try:
            if (handler.headers.get("Authorization") or "").startswith("AWS ") \
                    or "AWSAccessKeyId" in handler.query:
                prefix = "/" + req.bucket if getattr(handler, "virtual_host", False) else ""
                req.ctx = auth_s3.verify_request_v2(req.method, handler.raw_path, handler.raw_query,
                                                    handler.headers, state.credentials, prefix)
            else:
                req.ctx = auth_s3.verify_request(req.method, handler.raw_path, handler.raw_query,
                                                 handler.headers, state.credentials)
        except S3AuthError as e:
            raise S3Error(e.code, e.status, e.message) from None
        _ROUTES[op](req)
    except S3AuthError as e:
        _send_error(req, S3Error(e.code, e.status, e.message))
    except StoreError as e:
        code, status = _S3_CODES.get(e.code, (e.code, e.status))
        _send_error(req, S3Error(code, status, e.message, dict(e.extra)))
    except S3Error as e:
        _send_error(req, e)


def _operation_name(req: S3Request) -> str:
    """The OSS operation name of a request (used for routing and for the counters)."""
    m, q = req.method, req.query
    if not req.bucket:
        return "ListBuckets" if m in ("GET", "HEAD") else "Unsupported"
    if not req.key:
        if m == "GET":
            if "location" in q:
                return "GetBucketLocation"
            if "acl" in q:
                return "GetBucketAcl"
            if "versioning" in q:
                return "GetBucketVersioning"
            if "uploads" in q:
                return "ListMultipartUploads"
            if q.get("list-type") == "2":
                return "ListObjectsV2"
            if set(q) - _LIST_PARAMS:
                return "Unsupported"
            return "ListObjects"
        if m == "HEAD":
            return "HeadBucket"
        if m == "PUT":
            if "acl" in q:
                return "PutBucketAcl"
            return "Unsupported" if q else "PutBucket"
        if m == "DELETE":
            return "Unsupported" if q else "DeleteBucket"
        if m == "POST" and "delete" in q:
            return "DeleteMultipleObjects"
        return "Unsupported"
    if m == "GET":
        if "uploadId" in q:
            return "ListParts"
        if "acl" in q:
            return "GetObjectAcl"
        if "tagging" in q:
            return "GetObjectTagging"
        return "GetObject"
    if m == "HEAD":
        return "HeadObject"
    if m == "PUT":
        if "acl" in q:
            return "PutObjectAcl"
        copy = req.header("x-amz-copy-source")
        if "uploadId" in q and "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if m == "POST":
        if "uploads" in q:
            return "InitiateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        return "Unsupported"
    if m == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return "Unsupported"


_LIST_PARAMS = {"prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type",
                "continuation-token", "start-after", "fetch-owner", "x-id",
                "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"}


# --------------------------------------------------------------------------- I/O helpers

def _send(req: S3Request, status: int, headers: Optional[dict] = None, body=b"",
          length: Optional[int] = None) -> None:
    """Send a response; ``body`` is bytes or a file to stream ``length`` bytes from."""
    h = {"x-amz-request-id": req.request_id, "x-amz-id-2": req.request_id}
    h.update(headers or {})
    httputil.send_response(req.handler, status, h, body, length=length)


def _send_xml(req: S3Request, root: ET.Element, status: int = 200, headers: Optional[dict] = None) -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    h = {"Content-Type": "application/xml"}
    h.update(headers or {})
    _send(req, status, h, body)


def _send_error(req: S3Request, e: S3Error) -> None:
    if e.status >= 500:
        log.warning("S3 %s %s failed: %s %s", req.method, req.raw_path, e.code, e.message)
    else:
        log.debug("S3 %s %s -> %s %s", req.method, req.raw_path, e.status, e.code)
    if e.status == 304 or req.method == "HEAD":
        # No body: 304 never has one, and HEAD answers carry only the headers.
        _send(req, e.status, e.headers, b"", length=0)
        return
    root = ET.Element("Error")
    _sub(root, "Code", e.code)
    _sub(root, "Message", e.message)
    _sub(root, "Resource", req.raw_path)
    _sub(root, "RequestId", req.request_id)
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    headers = {"Content-Type": "application/xml"}
    headers.update(e.headers)
    _send(req, e.status, headers, body)


class _LineReader:
    """``read``/``readline`` over a body reader that only offers ``read`` (for aws-chunked)."""

    def __init__(self, raw):
        self._raw = raw
        self._buf = b""

    def _fill(self) -> bool:
        data = self._raw.read(65536)
        self._buf += data
        return bool(data)

    def read(self, n: int) -> bytes:
        if not self._buf:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self._buf and len(self._buf) < limit:
            if not self._fill():
                break
        i = self._buf.find(b"\n")
        end = min(limit, i + 1) if i >= 0 else min(limit, len(self._buf))
        out, self._buf = self._buf[:end], self._buf[end:]
        return out


def _body_reader(req: S3Request):
    """A file-like view of the request body, decoded and checked as the signature says.

    Returns ``(reader, length)`` where ``length`` is the decoded body length.
    """
    ctx = req.ctx
    raw = httputil.read_body(req.handler)
    if ctx.streaming:
        try:
            decoded = int(req.header("x-amz-decoded-content-length", ""))
        except ValueError:
            raise S3Error("MissingContentLength", 411,
                          "x-amz-decoded-content-length is required with aws-chunked bodies") from None
        lines = _LineReader(raw)
        reader, length = auth_s3.AwsChunkedReader(lines.read, lines.readline, ctx, decoded), decoded
    else:
        length = raw.length
        if ctx.payload == auth_s3.UNSIGNED_PAYLOAD:
            reader = raw
        elif length is None:
            raise S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
        else:
            reader = auth_s3.Sha256Reader(raw.read, length, ctx.payload)
    for algorithm in auth_s3.CHECKSUMS:
        expected = req.header("x-amz-checksum-" + algorithm)
        if expected:
            reader = auth_s3.ChecksumReader(reader, length, algorithm, expected)
    return reader, length


def _read_small_body(req: S3Request) -> bytes:
    reader, length = _body_reader(req)
    if length is not None and length > MAX_XML_BODY:
        raise S3Error("EntityTooLarge", 400, "The XML body is too large.")
    data = bytearray()
    while True:
        chunk = reader.read(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_XML_BODY:
            raise S3Error("EntityTooLarge", 400, "The XML body is too large.")
    md5 = req.header("Content-MD5")
    if md5:
        if base64.b64encode(hashlib.md5(bytes(data)).digest()).decode() != md5.strip():
            _check_md5_syntax(md5)
            raise S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    return bytes(data)


def _check_md5_syntax(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
    return value.strip()


def _parse_xml(data: bytes) -> ET.Element:
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed.") from None
    # Clients send the body with or without S3's namespace; strip it for lookups.
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _sub(parent: ET.Element, tag: str, text=None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=S3_NS)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _etag(rec_etag: str) -> str:
    return rec_etag.lower()


def _quoted(rec_etag: str) -> str:
    return '"%s"' % _etag(rec_etag)


def _owner(parent: ET.Element) -> None:
    owner = _sub(parent, "Owner")
    _sub(owner, "ID", OWNER_ID)
    _sub(owner, "DisplayName", OWNER_ID)


def _user_meta(req: S3Request) -> dict:
    meta = {}
    for name, value in req.handler.headers.items():
        lname = name.lower()
        if lname.startswith(META_PREFIX) and len(lname) > len(META_PREFIX):
            meta[lname[len(META_PREFIX):]] = value
    return meta


def _std_headers(req: S3Request) -> dict:
    headers = {n: req.header(n) for n in HEADER_NAMES if req.header(n) is not None}
    if "content-encoding" in headers:
        # aws-chunked is transfer framing, not a property of the object: S3 strips it.
        codings = [c.strip() for c in headers["content-encoding"].split(",")
                   if c.strip() and c.strip().lower() != "aws-chunked"]
        if codings:
            headers["content-encoding"] = ",".join(codings)
        else:
            del headers["content-encoding"]
    return headers


def _content_type(req: S3Request) -> Optional[str]:
    return req.header("Content-Type") or None


def _object_headers(rec: ObjectRecord) -> dict:
    h = {"ETag": _quoted(rec.etag), "Last-Modified": _http_date(rec.last_modified),
         "Content-Type": rec.content_type or "application/octet-stream",
         "Accept-Ranges": "bytes", "x-amz-storage-class": "STANDARD"}
    for name, value in rec.headers.items():
        h[name.title()] = value
    for name, value in rec.user_meta.items():
        h[META_PREFIX + name] = value
    return h


def _parse_http_date(value: str) -> Optional[float]:
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    return None if parsed is None else float(email.utils.mktime_tz(parsed))


def _etag_matches(header: str, rec: ObjectRecord) -> bool:
    mine = rec.etag.lower()
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.strip('"').lower() == mine:
            return True
    return False


def _check_conditions(rec: ObjectRecord, get, prefix: str, copy: bool) -> None:
    """If-Match & co (``prefix`` "" or "x-amz-copy-source-"); raises 412/304 as S3 does."""
    mtime = int(rec.last_modified)
    im, inm = get(prefix + "if-match"), get(prefix + "if-none-match")
    ims, ius = get(prefix + "if-modified-since"), get(prefix + "if-unmodified-since")
    failed = S3Error("PreconditionFailed", 412, "At least one of the preconditions you specified did not hold.")
    if im is not None:
        if not _etag_matches(im, rec):
            raise failed
    elif ius is not None:
        t = _parse_http_date(ius)
        if t is not None and mtime > t:
            raise failed
    if inm is not None:
        if _etag_matches(inm, rec):
            if copy:
                raise failed
            raise S3Error("NotModified", 304, "Not Modified", {"ETag": _quoted(rec.etag)})
    elif ims is not None:
        t = _parse_http_date(ims)
        if t is not None and mtime <= t and t <= time.time():
            if copy:
                raise failed
            raise S3Error("NotModified", 304, "Not Modified", {"ETag": _quoted(rec.etag)})


def _parse_range(value: str, size: int) -> Optional[Tuple[int, int]]:
    """(start, end_inclusive) of a single ``bytes=`` range; None = whole object."""
    value = value.strip()
    if not value.startswith("bytes=") or "," in value:
        return None   # S3 ignores what it does not understand and sends everything
    first, sep, last = value[6:].strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise ValueError
            return (max(0, size - n), size - 1) if size else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise S3Error("InvalidRange", 416, "The requested range is not satisfiable",
                      {"Content-Range": "bytes */%d" % size})
    if end < start:
        return None
    return start, min(end, size - 1)


def _int_param(req: S3Request, name: str, default: int, lo: int = 0, hi: int = MAX_KEYS) -> int:
    value = req.query.get(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", 400, "%s must be an integer" % name) from None
    if n < lo:
        raise S3Error("InvalidArgument", 400, "%s must be at least %d" % (name, lo))
    return min(n, hi)


def _copy_source(req: S3Request) -> Tuple[str, str]:
    value = unquote(req.header("x-amz-copy-source") or "")
    value = value.split("?versionId=", 1)[0].lstrip("/")
    bucket, _, key = value.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", 400, "Copy Source must mention the source bucket and key: "
                      "sourcebucket/sourcekey")
    return bucket, key


def _drain_body(req: S3Request) -> None:
    """Read and discard a body we do not use (CreateBucketConfiguration, ACL XML)."""
    length = int(req.header("Content-Length") or 0)
    if length:
        _read_small_body(req)


# --------------------------------------------------------------------------- bucket ops

def _list_buckets(req: S3Request) -> None:
    root = _root("ListAllMyBucketsResult")
    _owner(root)
    buckets = _sub(root, "Buckets")
    for name, created in req.state.store.list_buckets():
        b = _sub(buckets, "Bucket")
        _sub(b, "Name", name)
        _sub(b, "CreationDate", _iso(created))
    _send_xml(req, root)


def _head_bucket(req: S3Request) -> None:
    req.state.store.head_bucket(req.bucket)
    _send(req, 200, {"x-amz-bucket-region": "us-east-1", "Content-Length": "0"})


def _get_location(req: S3Request) -> None:
    req.state.store.head_bucket(req.bucket)
    # An empty LocationConstraint means us-east-1, the region every client can sign for.
    _send_xml(req, _root("LocationConstraint"))


def _get_versioning(req: S3Request) -> None:
    req.state.store.head_bucket(req.bucket)
    _send_xml(req, _root("VersioningConfiguration"))


def _acl_xml() -> ET.Element:
    root = _root("AccessControlPolicy")
    _owner(root)
    acl = _sub(root, "AccessControlList")
    grant = _sub(acl, "Grant")
    grantee = ET.SubElement(grant, "Grantee", {"xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
                                                "xsi:type": "CanonicalUser"})
    _sub(grantee, "ID", OWNER_ID)
    _sub(grantee, "DisplayName", OWNER_ID)
    _sub(grant, "Permission", "FULL_CONTROL")
    return root


def _get_bucket_acl(req: S3Request) -> None:
    req.state.store.head_bucket(req.bucket)
    _send_xml(req, _acl_xml())


def _put_bucket_acl(req: S3Request) -> None:
    # ACLs are not modelled: accept and ignore, so tools that set them keep working.
    _drain_body(req)
    req.state.store.head_bucket(req.bucket)
    _send(req, 200, {"Content-Length": "0"})


def _put_bucket(req: S3Request) -> None:
    _drain_body(req)
    req.state.store.create_bucket(req.bucket)
    _send(req, 200, {"Location": "/" + req.bucket, "Content-Length": "0"})


def _delete_bucket(req: S3Request) -> None:
    req.state.store.delete_bucket(req.bucket)
    _send(req, 204)


def _list_objects(req: S3Request, v2: bool) -> None:
    q = req.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    encoding = q.get("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", 400, "Invalid Encoding Method specified in Request")
    max_keys = _int_param(req, "max-keys", MAX_KEYS)
    if v2:
        token = q.get("continuation-token")
        start_after = q.get("start-after", "")
        if token is not None:
            try:
                marker = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
            except (ValueError, UnicodeError):
                raise S3Error("InvalidArgument", 400, "The continuation token provided is incorrect") from None
        else:
            marker = start_after
    else:
        marker = q.get("marker", "")
    records, prefixes, next_marker = req.state.store.list_objects(
        req.bucket, prefix, delimiter, marker, max_keys)

    def enc(s: str) -> str:
        return quote_plus(s, safe="/") if encoding == "url" else s

    root = _root("ListBucketResult")
    _sub(root, "Name", req.bucket)
    _sub(root, "Prefix", enc(prefix))
    if v2:
        if "continuation-token" in q:
            _sub(root, "ContinuationToken", q["continuation-token"])
        if "start-after" in q:
            _sub(root, "StartAfter", enc(q["start-after"]))
        _sub(root, "KeyCount", len(records) + len(prefixes))
    else:
        _sub(root, "Marker", enc(marker))
    _sub(root, "MaxKeys", max_keys)
    if delimiter:
        _sub(root, "Delimiter", enc(delimiter))
    if encoding:
        _sub(root, "EncodingType", encoding)
    _sub(root, "IsTruncated", "true" if next_marker is not None else "false")
    if next_marker is not None:
        if v2:
            _sub(root, "NextContinuationToken",
                 base64.urlsafe_b64encode(next_marker.encode("utf-8")).decode("ascii"))
        else:
            _sub(root, "NextMarker", enc(next_marker))
    fetch_owner = not v2 or q.get("fetch-owner") == "true"
    for rec in records:
        c = _sub(root, "Contents")
        _sub(c, "Key", enc(rec.key))
        _sub(c, "LastModified", _iso(rec.last_modified))
        _sub(c, "ETag", _quoted(rec.etag))
        _sub(c, "Size", rec.size)
        _sub(c, "StorageClass", "STANDARD")
        if fetch_owner:
            _owner(c)
    for p in prefixes:
        _sub(_sub(root, "CommonPrefixes"), "Prefix", enc(p))
    _send_xml(req, root)


def _delete_objects(req: S3Request) -> None:
    data = _read_small_body(req)
    root = _parse_xml(data)
    if root.tag != "Delete":
        raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed.")
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if len(objects) > 1000:
        raise S3Error("MalformedXML", 400, "A delete request may name at most 1000 keys.")
    out = _root("DeleteResult")
    store = req.state.store
    store.head_bucket(req.bucket)
    for obj in objects:
        key = obj.findtext("Key") or ""
        try:
            store.delete_object(req.bucket, key)
        except StoreError as e:
            code, _ = _S3_CODES.get(e.code, (e.code, e.status))
            err = _sub(out, "Error")
            _sub(err, "Key", key)
            _sub(err, "Code", code)
            _sub(err, "Message", e.message)
            continue
        if not quiet:
            _sub(_sub(out, "Deleted"), "Key", key)
    _send_xml(req, out)


# --------------------------------------------------------------------------- object ops

def _put_object(req: S3Request) -> None:
    md5 = _check_md5_syntax(req.header("Content-MD5"))
    reader, length = _body_reader(req)
    try:
        rec = req.state.store.put_object(req.bucket, req.key, reader, length, _content_type(req),
                                         _user_meta(req), _std_headers(req), content_md5=md5)
    except StoreError as e:
        if e.code == "InvalidDigest" and md5:
            raise S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
        raise
    _send(req, 200, {"ETag": _quoted(rec.etag), "Content-Length": "0"})


def _get_object(req: S3Request) -> None:
    store = req.state.store
    rec, f = store.open_object(req.bucket, req.key)
    with f:
        _check_conditions(rec, req.header, "", copy=False)
        headers = _object_headers(rec)
        for param, name in (("response-content-type", "Content-Type"),
                            ("response-content-language", "Content-Language"),
                            ("response-expires", "Expires"),
                            ("response-cache-control", "Cache-Control"),
                            ("response-content-disposition", "Content-Disposition"),
                            ("response-content-encoding", "Content-Encoding")):
            if param in req.query:
                headers[name] = req.query[param]
        rng = _parse_range(req.header("Range") or "", rec.size) if req.header("Range") else None
        if req.method == "HEAD" and rng is None:
            headers["Content-Length"] = str(rec.size)
            _send(req, 200, headers)
            return
        if rng is None:
            headers["Content-Length"] = str(rec.size)
            _send(req, 200, headers, f, length=rec.size)
            return
        start, end = rng
        f.seek(start)
        headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, rec.size)
        headers["Content-Length"] = str(end - start + 1)
        _send(req, 206, headers, f, length=end - start + 1)


def _delete_object(req: S3Request) -> None:
    req.state.store.delete_object(req.bucket, req.key)
    _send(req, 204)


def _copy_object(req: S3Request) -> None:
    store = req.state.store
    src_bucket, src_key = _copy_source(req)
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", 400, "Unknown metadata directive.")
    src = store.resolve(src_bucket, src_key)
    _check_conditions(src, req.header, "x-amz-copy-source-", copy=True)
    if directive == "COPY" and (src_bucket, src_key) == (req.bucket, req.key):
        raise S3Error("InvalidRequest", 400, "This copy request is illegal because it is trying to copy an "
                      "object to itself without changing the object's metadata, storage class, website "
                      "redirect location or encryption attributes.")
    replace = None
    if directive == "REPLACE":
        replace = (_content_type(req), _user_meta(req), _std_headers(req))
    if int(req.header("Content-Length") or 0):
        _read_small_body(req)
    rec = store.copy_object(src_bucket, src_key, req.bucket, req.key, replace)
    root = _root("CopyObjectResult")
    _sub(root, "LastModified", _iso(rec.last_modified))
    _sub(root, "ETag", _quoted(rec.etag))
    _send_xml(req, root)


def _get_object_acl(req: S3Request) -> None:
    req.state.store.head_object(req.bucket, req.key)
    _send_xml(req, _acl_xml())


def _put_object_acl(req: S3Request) -> None:
    _drain_body(req)
    req.state.store.head_object(req.bucket, req.key)
    _send(req, 200, {"Content-Length": "0"})


def _get_object_tagging(req: S3Request) -> None:
    req.state.store.head_object(req.bucket, req.key)
    root = _root("Tagging")
    _sub(root, "TagSet")
    _send_xml(req, root)


# --------------------------------------------------------------------------- multipart

def _initiate_upload(req: S3Request) -> None:
    if int(req.header("Content-Length") or 0):
        _read_small_body(req)
    upload_id = req.state.store.initiate_upload(req.bucket, req.key, _content_type(req),
                                                _user_meta(req), _std_headers(req))
    root = _root("InitiateMultipartUploadResult")
    _sub(root, "Bucket", req.bucket)
    _sub(root, "Key", req.key)
    _sub(root, "UploadId", upload_id)
    _send_xml(req, root)


def _part_number(req: S3Request) -> int:
    try:
        n = int(req.query.get("partNumber", ""))
    except ValueError:
        n = 0
    if not 1 <= n <= 10000:
        raise S3Error("InvalidArgument", 400, "Part number must be an integer between 1 and 10000, inclusive")
    return n


def _upload_part(req: S3Request) -> None:
    md5 = _check_md5_syntax(req.header("Content-MD5"))
    n = _part_number(req)
    reader, length = _body_reader(req)
    try:
        etag = req.state.store.upload_part(req.bucket, req.key, req.query["uploadId"], n,
                                           reader, length, content_md5=md5)
    except StoreError as e:
        if e.code == "InvalidDigest" and md5:
            raise S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
        raise
    _send(req, 200, {"ETag": _quoted(etag), "Content-Length": "0"})


def _upload_part_copy(req: S3Request) -> None:
    store = req.state.store
    n = _part_number(req)
    src_bucket, src_key = _copy_source(req)
    src = store.resolve(src_bucket, src_key)
    _check_conditions(src, req.header, "x-amz-copy-source-", copy=True)
    start = end = None
    rng = req.header("x-amz-copy-source-range")
    if rng:
        first, sep, last = rng.strip()[len("bytes="):].partition("-")
        try:
            if not rng.strip().startswith("bytes=") or not sep:
                raise ValueError
            start, end = int(first), int(last)
        except ValueError:
            raise S3Error("InvalidArgument", 400, "The x-amz-copy-source-range value must be of the form "
                          "bytes=first-last where first and last are the zero-based offsets of the first "
                          "and last bytes to copy") from None
    if int(req.header("Content-Length") or 0):
        _read_small_body(req)
    etag = store.upload_part_copy(req.bucket, req.key, req.query["uploadId"], n,
                                  src_bucket, src_key, start, end)
    root = _root("CopyPartResult")
    _sub(root, "LastModified", _iso(time.time()))
    _sub(root, "ETag", _quoted(etag))
    _send_xml(req, root)


def _complete_upload(req: S3Request) -> None:
    root = _parse_xml(_read_small_body(req))
    parts = []
    for p in root.findall("Part"):
        try:
            number = int((p.findtext("PartNumber") or "").strip())
        except ValueError:
            raise S3Error("MalformedXML", 400, "PartNumber is not a number.") from None
        parts.append((number, (p.findtext("ETag") or "").strip().strip('"')))
    rec = req.state.store.complete_upload(req.bucket, req.key, req.query["uploadId"], parts)
    out = _root("CompleteMultipartUploadResult")
    _sub(out, "Location", "/%s/%s" % (req.bucket, quote(req.key)))
    _sub(out, "Bucket", req.bucket)
    _sub(out, "Key", req.key)
    _sub(out, "ETag", _quoted(rec.etag))
    _send_xml(req, out)


def _abort_upload(req: S3Request) -> None:
    req.state.store.abort_upload(req.bucket, req.key, req.query["uploadId"])
    _send(req, 204)


def _list_parts(req: S3Request) -> None:
    upload_id = req.query["uploadId"]
    marker = _int_param(req, "part-number-marker", 0, hi=10000)
    max_parts = _int_param(req, "max-parts", 1000, lo=0, hi=1000)
    parts = [p for p in req.state.store.list_parts(req.bucket, req.key, upload_id)
             if p.part_number > marker]
    page, truncated = parts[:max_parts], len(parts) > max_parts
    root = _root("ListPartsResult")
    _sub(root, "Bucket", req.bucket)
    _sub(root, "Key", req.key)
    _sub(root, "UploadId", upload_id)
    _sub(root, "PartNumberMarker", marker)
    _sub(root, "NextPartNumberMarker", page[-1].part_number if page else marker)
    _sub(root, "MaxParts", max_parts)
    _sub(root, "IsTruncated", "true" if truncated else "false")
    _sub(root, "StorageClass", "STANDARD")
    _owner(root)
    for p in page:
        el = _sub(root, "Part")
        _sub(el, "PartNumber", p.part_number)
        _sub(el, "LastModified", _iso(p.last_modified))
        _sub(el, "ETag", _quoted(p.etag))
        _sub(el, "Size", p.size)
    _send_xml(req, root)


def _list_uploads(req: S3Request) -> None:
    q = req.query
    max_uploads = _int_param(req, "max-uploads", 1000)
    ups, truncated = req.state.store.list_uploads(req.bucket, q.get("prefix", ""), q.get("key-marker", ""),
                                                  q.get("upload-id-marker", ""), max_uploads)
    root = _root("ListMultipartUploadsResult")
    _sub(root, "Bucket", req.bucket)
    _sub(root, "KeyMarker", q.get("key-marker", ""))
    _sub(root, "UploadIdMarker", q.get("upload-id-marker", ""))
    _sub(root, "NextKeyMarker", ups[-1].key if ups else "")
    _sub(root, "NextUploadIdMarker", ups[-1].upload_id if ups else "")
    _sub(root, "Prefix", q.get("prefix", ""))
    _sub(root, "MaxUploads", max_uploads)
    _sub(root, "IsTruncated", "true" if truncated else "false")
    encode = q.get("encoding-type") == "url"
    if encode:
        _sub(root, "EncodingType", "url")
    for u in ups:
        el = _sub(root, "Upload")
        _sub(el, "Key", quote_plus(u.key, safe="/") if encode else u.key)
        _sub(el, "UploadId", u.upload_id)
        _owner(el)
        _sub(el, "StorageClass", "STANDARD")
        _sub(el, "Initiated", _iso(u.initiated))
    _send_xml(req, root)


def _unsupported(req: S3Request) -> None:
    raise S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is "
                  "not implemented.")


_ROUTES = {
    "ListBuckets": _list_buckets,
    "HeadBucket": _head_bucket,
    "GetBucketLocation": _get_location,
    "GetBucketVersioning": _get_versioning,
    "GetBucketAcl": _get_bucket_acl,
    "PutBucketAcl": _put_bucket_acl,
    "PutBucket": _put_bucket,
    "DeleteBucket": _delete_bucket,
    "ListObjects": lambda req: _list_objects(req, v2=False),
    "ListObjectsV2": lambda req: _list_objects(req, v2=True),
    "DeleteMultipleObjects": _delete_objects,
    "PutObject": _put_object,
    "GetObject": _get_object,
    "HeadObject": _get_object,
    "DeleteObject": _delete_object,
    "CopyObject": _copy_object,
    "GetObjectAcl": _get_object_acl,
    "PutObjectAcl": _put_object_acl,
    "GetObjectTagging": _get_object_tagging,
    "InitiateMultipartUpload": _initiate_upload,
    "UploadPart": _upload_part,
    "UploadPartCopy": _upload_part_copy,
    "CompleteMultipartUpload": _complete_upload,
    "AbortMultipartUpload": _abort_upload,
    "ListParts": _list_parts,
    "ListMultipartUploads": _list_uploads,
    "Unsupported": _unsupported,
}
