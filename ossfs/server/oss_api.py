"""The OSS REST API face of ossfs-server.

What it owns
    Mapping OSS requests (as the ``oss2`` SDK and ossfs 1.x send them) onto
    :class:`~ossfs.server.store.Store` calls and answering in OSS's XML and headers:
    service/bucket calls, objects (with ranges and conditions), copy, append, symlinks,
    listings v1/v2, multipart uploads.

Contracts
    * :func:`handle` is called by the dispatcher (:mod:`ossfs.server.httpd`) for requests
      carrying an OSS signature.  It names the operation first (``route``), counts it in
      ``state.stats`` under the OSS operation name, then verifies the signature
      (:mod:`ossfs.server.auth_oss`), then runs it.  Errors are raised as
      :class:`~ossfs.server.store.StoreError`; the dispatcher writes the XML error.
    * Every response carries ``x-oss-request-id``; object responses carry ``ETag``
      (quoted upper-case hex), ``x-oss-hash-crc64ecma`` (decimal), ``Last-Modified``,
      ``x-oss-object-type``, ``Accept-Ranges``.
    * User metadata names come back lower-case (``x-oss-meta-<name>``), values as sent.

Threads and locks
    Stateless; all shared state is in the store and the server state.
"""
from __future__ import annotations

import email.utils
import logging
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from ossfs.server import auth_oss
from ossfs.server.httputil import BadRequest, read_body, send_response, xml_response
from ossfs.server.store import (HEADER_NAMES, MAX_COPY_SIZE, ObjectRecord, StoreError,
                                validate_bucket_name)

log = logging.getLogger(__name__)

OWNER_ID = "ossfs-server"
MAX_LIST = 1000
PRESIGN_PARAMS = frozenset(["OSSAccessKeyId", "Expires", "Signature", "security-token",
                            "x-oss-signature-version", "x-oss-credential", "x-oss-date",
                            "x-oss-expires", "x-oss-signature", "x-oss-additional-headers",
                            "x-oss-security-token"])
DEFAULT_LIST = 100


# ---------------------------------------------------------------------- helpers
def iso8601(t: float) -> str:
    # oss2 parses exactly ".000Z" (oss2.utils.iso8601_to_unixtime)
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _x(text) -> str:
    return escape(str(text))


def _enc(text: str, url: bool) -> str:
    """A listing value, url-encoded when the client asked for ``encoding-type=url``."""
    if url:
        return quote(text.encode("utf-8", "surrogatepass"), safe="/")
    return escape(text)


def request_metadata(handler) -> Tuple[Optional[str], Dict[str, str], Dict[str, str]]:
    """(content_type, user_meta, headers) from the request's headers."""
    meta = {}
    headers = {}
    for k, v in handler.headers.items():
        lk = k.lower()
        if lk.startswith("x-oss-meta-"):
            meta[lk[len("x-oss-meta-"):]] = v
        elif lk in HEADER_NAMES:
            headers[lk] = v
    return handler.headers.get("Content-Type"), meta, headers


def object_headers(rec: ObjectRecord) -> Dict[str, str]:
    h = {
        "Content-Type": rec.content_type,
        "ETag": '"%s"' % rec.etag,
        "Last-Modified": http_date(rec.last_modified),
        "Accept-Ranges": "bytes",
        "x-oss-object-type": rec.object_type,
        "x-oss-storage-class": rec.headers.get("x-oss-storage-class", "Standard"),
        "x-oss-hash-crc64ecma": str(rec.crc64),
    }
    for k, v in rec.headers.items():
        if k == "x-oss-storage-class":
            continue
        h["-".join(p.capitalize() for p in k.split("-"))] = v
    for k, v in rec.user_meta.items():
        h["x-oss-meta-" + k] = v
    if rec.object_type == "Appendable":
        h["x-oss-next-append-position"] = str(rec.size)
    return h


def _parse_date(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    t = email.utils.parsedate_tz(text)
    return float(email.utils.mktime_tz(t)) if t else None


def _etag_matches(header: str, etag: str) -> bool:
    for item in header.split(","):
        item = item.strip()
        if item == "*" or item.strip('"').upper() == etag.upper():
            return True
    return False


def check_conditions(headers, rec: ObjectRecord, prefix: str = "") -> Optional[int]:
    """Evaluate If-* (or x-oss-copy-source-if-*) headers: None, 304 or raise 412."""
    lm = int(rec.last_modified)
    im = headers.get(prefix + "If-Match")
    if im is not None and not _etag_matches(im, rec.etag):
        raise StoreError("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold.")
    ius = _parse_date(headers.get(prefix + "If-Unmodified-Since"))
    if ius is not None and lm > ius:
        raise StoreError("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold.")
    inm = headers.get(prefix + "If-None-Match")
    if inm is not None and _etag_matches(inm, rec.etag):
        return 304
    ims = _parse_date(headers.get(prefix + "If-Modified-Since"))
    if ims is not None and inm is None and lm <= ims:
        return 304
    return None


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """(start, end_inclusive) of a single ``bytes=`` range, None for the whole object.

    A syntactically invalid or multi-range header is ignored (whole object), as OSS
    does; an unsatisfiable one raises InvalidRange (416).
    """
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    a, _, b = spec.partition("-")
    a, b = a.strip(), b.strip()
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise ValueError
            if size == 0:
                raise StoreError("InvalidRange", 416, "The requested range cannot be satisfied.",
                                 {"Content-Range": "bytes */%d" % size})
            return max(0, size - n), size - 1
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start < 0 or (b and end < start):
        return None
    if start >= size:
        raise StoreError("InvalidRange", 416, "The requested range cannot be satisfied.",
                         {"Content-Range": "bytes */%d" % size})
    return start, min(end, size - 1)


def _int_param(q, name, default, lo, hi, code="InvalidArgument"):
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise StoreError(code, 400, "Argument %s is not an integer." % name)
    if not lo <= n <= hi:
        raise StoreError(code, 400, "Argument %s must be between %d and %d." % (name, lo, hi))
    return n


def _need_key(handler) -> str:
    if handler.key is None:
        raise StoreError("InvalidObjectName", 400, "The object name is missing.")
    return handler.key


def _parse_copy_source(value: str) -> Tuple[str, str]:
    src = unquote(value.split("?", 1)[0], errors="surrogateescape")
    if src.startswith("/"):
        src = src[1:]
    bucket, _, key = src.partition("/")
    if not bucket or not key:
        raise StoreError("InvalidArgument", 400, "x-oss-copy-source is not of the form /bucket/key.")
    return bucket, key


def _xml_root(body: bytes):
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise StoreError("MalformedXML", 400, "The XML you provided was not well-formed.")


# ---------------------------------------------------------------------- routing
def route(handler) -> str:
    """The OSS operation name of the request (raises MethodNotAllowed / NotImplemented)."""
    m, bucket, key = handler.command, handler.bucket, handler.key
    # presigned-URL parameters say nothing about the operation
    q = {k: v for k, v in handler.query.items() if k not in PRESIGN_PARAMS}
    if not bucket:
        if m == "GET":
            return "ListBuckets"
    elif key is None:
        if m == "PUT" and not q:
            return "PutBucket"
        if m == "DELETE" and not q:
            return "DeleteBucket"
        if m == "GET":
            if "bucketInfo" in q:
                return "GetBucketInfo"
            if "location" in q:
                return "GetBucketLocation"
            if "stat" in q:
                return "GetBucketStat"
            if "uploads" in q:
                return "ListMultipartUploads"
            if q.get("list-type") == "2":
                return "ListObjectsV2"
            if not set(q) - {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}:
                return "ListObjects"
        if m == "HEAD" and not q:
            return "HeadBucket"
        if m == "POST" and "delete" in q:
            return "DeleteMultipleObjects"
    else:
        if m == "PUT":
            if "partNumber" in q and "uploadId" in q:
                return "UploadPartCopy" if handler.headers.get("x-oss-copy-source") else "UploadPart"
            if "symlink" in q:
                return "PutSymlink"
            if not q:
                return "CopyObject" if handler.headers.get("x-oss-copy-source") else "PutObject"
        if m == "POST":
            if "uploads" in q:
                return "InitiateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            if "append" in q:
                return "AppendObject"
        if m == "GET":
            if "symlink" in q:
                return "GetSymlink"
            if "uploadId" in q:
                return "ListParts"
            if "objectMeta" in q:
                return "GetObjectMeta"
            return "GetObject"
        if m == "HEAD":
            return "GetObjectMeta" if "objectMeta" in q else "HeadObject"
        if m == "DELETE":
            if "uploadId" in q:
                return "AbortMultipartUpload"
            if not q:
                return "DeleteObject"
    if m not in ("GET", "PUT", "POST", "DELETE", "HEAD"):
        raise StoreError("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
    raise StoreError("NotImplemented", 501, "This operation is not implemented by ossfs-server.")


def handle(handler, state) -> None:
    """Serve one OSS request (see the module docstring)."""
    try:
        op = route(handler)
    except StoreError:
        state.stats.count("Unsupported")
        auth_oss.authenticate(handler, state)
        raise
    state.stats.count(op)
    auth_oss.authenticate(handler, state)
    if handler.bucket is not None:
        validate_bucket_name(handler.bucket)
    OPS[op](handler, state)


# ---------------------------------------------------------------------- service and buckets
def list_buckets(handler, state):
    q = handler.query
    prefix = q.get("prefix", "")
    marker = q.get("marker", "")
    max_keys = _int_param(q, "max-keys", 100, 1, 1000)
    names = [(n, c) for n, c in state.store.list_buckets() if n.startswith(prefix) and n > marker]
    page, truncated = names[:max_keys], len(names) > max_keys
    items = "".join(
        "<Bucket><CreationDate>%s</CreationDate><ExtranetEndpoint>%s</ExtranetEndpoint>"
        "<IntranetEndpoint>%s</IntranetEndpoint><Location>%s</Location><Name>%s</Name>"
        "<Region>%s</Region><StorageClass>Standard</StorageClass></Bucket>"
        % (iso8601(c), _x(handler.headers.get("Host", "")), _x(handler.headers.get("Host", "")),
           _x(state.region), _x(n), _x(state.region.replace("oss-", "", 1))) for n, c in page)
    extra = ""
    if prefix or marker or truncated or "max-keys" in q:
        extra = "<Prefix>%s</Prefix><Marker>%s</Marker><MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>" % (
            _x(prefix), _x(marker), max_keys, "true" if truncated else "false")
        if truncated:
            extra += "<NextMarker>%s</NextMarker>" % _x(page[-1][0])
    xml_response(handler, 200, "<ListAllMyBucketsResult><Owner><ID>%s</ID><DisplayName>%s</DisplayName></Owner>"
                 "%s<Buckets>%s</Buckets></ListAllMyBucketsResult>" % (OWNER_ID, OWNER_ID, extra, items))


def put_bucket(handler, state):
    read_body(handler).read_all(1 << 20)
    state.store.create_bucket(handler.bucket)
    send_response(handler, 200, {"Location": "/" + handler.bucket})


def delete_bucket(handler, state):
    state.store.delete_bucket(handler.bucket)
    send_response(handler, 204, {})


def head_bucket(handler, state):
    state.store.head_bucket(handler.bucket)
    send_response(handler, 200, {})


def get_bucket_info(handler, state):
    created = state.store.head_bucket(handler.bucket)
    host = _x(handler.headers.get("Host", ""))
    xml_response(handler, 200,
                 "<BucketInfo><Bucket><AccessMonitor>Disabled</AccessMonitor>"
                 "<CreationDate>%s</CreationDate><ExtranetEndpoint>%s</ExtranetEndpoint>"
                 "<IntranetEndpoint>%s</IntranetEndpoint><Location>%s</Location>"
                 "<StorageClass>Standard</StorageClass><TransferAcceleration>Disabled</TransferAcceleration>"
                 "<CrossRegionReplication>Disabled</CrossRegionReplication><DataRedundancyType>LRS</DataRedundancyType>"
                 "<Name>%s</Name><Owner><DisplayName>%s</DisplayName><ID>%s</ID></Owner>"
                 "<AccessControlList><Grant>private</Grant></AccessControlList>"
                 "<ServerSideEncryptionRule><SSEAlgorithm>None</SSEAlgorithm></ServerSideEncryptionRule>"
                 "<Versioning>Disabled</Versioning></Bucket></BucketInfo>"
                 % (iso8601(created), host, host, _x(state.region), _x(handler.bucket), OWNER_ID, OWNER_ID))


def get_bucket_location(handler, state):
    state.store.head_bucket(handler.bucket)
    xml_response(handler, 200, "<LocationConstraint>%s</LocationConstraint>" % _x(state.region))


def get_bucket_stat(handler, state):
    n, size = state.store.count_objects(handler.bucket)
    _, truncated = state.store.list_uploads(handler.bucket, max_uploads=1000000)
    ups = len(state.store.list_uploads(handler.bucket, max_uploads=1000000)[0])
    xml_response(handler, 200, "<BucketStat><Storage>%d</Storage><ObjectCount>%d</ObjectCount>"
                 "<MultipartUploadCount>%d</MultipartUploadCount></BucketStat>" % (size, n, ups))


# ---------------------------------------------------------------------- listing
def _contents(rec: ObjectRecord, url: bool, owner: bool = True) -> str:
    o = ("<Owner><ID>%s</ID><DisplayName>%s</DisplayName></Owner>" % (OWNER_ID, OWNER_ID)) if owner else ""
    return ("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>"
            "<Type>%s</Type><Size>%d</Size><StorageClass>Standard</StorageClass>%s</Contents>"
            % (_enc(rec.key, url), iso8601(rec.last_modified), rec.etag, rec.object_type, rec.size, o))


def _encoding(q) -> bool:
    et = q.get("encoding-type")
    if et not in (None, "", "url"):
        raise StoreError("InvalidArgument", 400, "The encoding-type must be url.")
    return et == "url"


def list_objects(handler, state):
    q = handler.query
    url = _encoding(q)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    max_keys = _int_param(q, "max-keys", DEFAULT_LIST, 0, MAX_LIST)
    if max_keys == 0:
        recs, cps, nxt = [], [], None
    else:
        recs, cps, nxt = state.store.list_objects(handler.bucket, prefix, delimiter, marker, max_keys)
    parts = ["<ListBucketResult><Name>%s</Name><Prefix>%s</Prefix><Marker>%s</Marker><MaxKeys>%d</MaxKeys>"
             "<Delimiter>%s</Delimiter>" % (_x(handler.bucket), _enc(prefix, url), _enc(marker, url),
                                            max_keys, _enc(delimiter, url))]
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append("<IsTruncated>%s</IsTruncated>" % ("true" if nxt is not None else "false"))
    if nxt is not None:
        parts.append("<NextMarker>%s</NextMarker>" % _enc(nxt, url))
    parts.extend(_contents(r, url) for r in recs)
    parts.extend("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % _enc(p, url) for p in cps)
    parts.append("</ListBucketResult>")
    xml_response(handler, 200, "".join(parts))


def list_objects_v2(handler, state):
    q = handler.query
    url = _encoding(q)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    token, start_after = q.get("continuation-token"), q.get("start-after", "")
    max_keys = _int_param(q, "max-keys", DEFAULT_LIST, 0, MAX_LIST)
    fetch_owner = q.get("fetch-owner", "false").lower() == "true"
    # the continuation token is the last key or prefix returned (opaque to clients)
    marker = token if token else start_after
    if token is not None and token and start_after and start_after > token:
        marker = start_after
    if max_keys == 0:
        recs, cps, nxt = [], [], None
    else:
        recs, cps, nxt = state.store.list_objects(handler.bucket, prefix, delimiter, marker, max_keys)
    parts = ["<ListBucketResult><Name>%s</Name><Prefix>%s</Prefix><MaxKeys>%d</MaxKeys>"
             "<Delimiter>%s</Delimiter>" % (_x(handler.bucket), _enc(prefix, url), max_keys, _enc(delimiter, url))]
    if start_after:
        parts.append("<StartAfter>%s</StartAfter>" % _enc(start_after, url))
    if token is not None:
        parts.append("<ContinuationToken>%s</ContinuationToken>" % _enc(token, url))
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append("<IsTruncated>%s</IsTruncated>" % ("true" if nxt is not None else "false"))
    if nxt is not None:
        parts.append("<NextContinuationToken>%s</NextContinuationToken>" % _enc(nxt, url))
    parts.append("<KeyCount>%d</KeyCount>" % (len(recs) + len(cps)))
    parts.extend(_contents(r, url, fetch_owner) for r in recs)
    parts.extend("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % _enc(p, url) for p in cps)
    parts.append("</ListBucketResult>")
    xml_response(handler, 200, "".join(parts))


# ---------------------------------------------------------------------- objects
def _content_length(handler) -> Optional[int]:
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        return None
    cl = handler.headers.get("Content-Length")
    if cl is None:
        return 0
    try:
        return int(cl)
    except ValueError:
        raise BadRequest("bad Content-Length")


def _check_length(length: Optional[int]) -> None:
    if length is not None and length > 5 << 30:
        raise StoreError("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size.")


def put_object(handler, state):
    key = _need_key(handler)
    length = _content_length(handler)
    _check_length(length)
    ctype, meta, headers = request_metadata(handler)
    if handler.headers.get("x-oss-forbid-overwrite", "").lower() == "true":
        try:
            state.store.head_object(handler.bucket, key)
            raise StoreError("FileAlreadyExists", 409, "The object you specified already exists and can not be overwritten.")
        except StoreError as e:
            if e.code != "NoSuchKey":
                raise
    rec = state.store.put_object(handler.bucket, key, read_body(handler), length, ctype, meta, headers,
                                 handler.headers.get("Content-MD5"))
    send_response(handler, 200, {"ETag": '"%s"' % rec.etag, "x-oss-hash-crc64ecma": str(rec.crc64),
                                 "Content-MD5": _md5_b64(rec.etag)})


def _md5_b64(etag_hex: str) -> str:
    import base64
    return base64.b64encode(bytes.fromhex(etag_hex)).decode()


def append_object(handler, state):
    key = _need_key(handler)
    q = handler.query
    try:
        position = int(q.get("position", ""))
        if position < 0:
            raise ValueError
    except ValueError:
        raise StoreError("InvalidArgument", 400, "Argument position must be a non-negative integer.")
    length = _content_length(handler)
    _check_length(length)
    ctype, meta, headers = request_metadata(handler)
    rec = state.store.append_object(handler.bucket, key, position, read_body(handler), length, ctype, meta,
                                    headers, handler.headers.get("Content-MD5"))
    send_response(handler, 200, {"ETag": '"%s"' % rec.etag, "x-oss-hash-crc64ecma": str(rec.crc64),
                                 "x-oss-next-append-position": str(rec.size)})


def _get_or_head(handler, state, body: bool):
    key = _need_key(handler)
    rec, f = state.store.open_object(handler.bucket, key)
    with f:
        headers = object_headers(rec)
        status304 = check_conditions(handler.headers, rec)
        if status304:
            keep = {k: headers[k] for k in ("ETag", "Last-Modified", "x-oss-object-type", "x-oss-hash-crc64ecma")}
            send_response(handler, 304, keep, b"", length=0)
            return
        q = handler.query
        for name in ("content-type", "content-language", "expires", "cache-control",
                     "content-disposition", "content-encoding"):
            v = q.get("response-" + name)
            if v is not None:
                headers["-".join(p.capitalize() for p in name.split("-"))] = v
        rng = parse_range(handler.headers.get("Range"), rec.size) if body or handler.headers.get("Range") else None
        if rng is None:
            send_response(handler, 200, headers, f if body else None, length=rec.size)
            return
        start, end = rng
        headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, rec.size)
        f.seek(start)
        send_response(handler, 206, headers, f if body else None, length=end - start + 1)


def get_object(handler, state):
    _get_or_head(handler, state, True)


def head_object(handler, state):
    _get_or_head(handler, state, False)


def get_object_meta(handler, state):
    rec = state.store.resolve(handler.bucket, _need_key(handler))
    send_response(handler, 200, {"ETag": '"%s"' % rec.etag, "Last-Modified": http_date(rec.last_modified),
                                 "x-oss-hash-crc64ecma": str(rec.crc64), "Content-Length": str(rec.size)},
                  None, length=0)


def delete_object(handler, state):
    state.store.delete_object(handler.bucket, _need_key(handler))
    send_response(handler, 204, {})


def delete_multiple(handler, state):
    url = _encoding(handler.query)
    body = read_body(handler).read_all(4 << 20)
    md5 = handler.headers.get("Content-MD5")
    if md5:
        import base64
        import hashlib
        if base64.b64encode(hashlib.md5(body).digest()).decode() != md5.strip():
            raise StoreError("InvalidDigest", 400, "The Content-MD5 you specified did not match what we received.")
    root = _xml_root(body)
    quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
    keys = [o.findtext("Key") or "" for o in root.findall("Object")]
    if len(keys) > 1000:
        raise StoreError("MalformedXML", 400, "At most 1000 keys can be deleted at once.")
    state.store.head_bucket(handler.bucket)
    deleted = []
    for key in keys:
        state.store.delete_object(handler.bucket, key)
        deleted.append(key)
    parts = ["<DeleteResult>"]
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    if not quiet:
        parts.extend("<Deleted><Key>%s</Key></Deleted>" % _enc(k, url) for k in deleted)
    parts.append("</DeleteResult>")
    xml_response(handler, 200, "".join(parts))


def copy_object(handler, state):
    key = _need_key(handler)
    src_bucket, src_key = _parse_copy_source(handler.headers["x-oss-copy-source"])
    src = state.store.resolve(src_bucket, src_key)
    if check_conditions(handler.headers, src, "x-oss-copy-source-"):
        send_response(handler, 304, {}, b"", length=0)
        return
    if src.size > MAX_COPY_SIZE:
        raise StoreError("InvalidArgument", 400, "The source object is larger than 1GB; use UploadPartCopy.")
    directive = (handler.headers.get("x-oss-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise StoreError("InvalidArgument", 400, "x-oss-metadata-directive must be COPY or REPLACE.")
    replace = request_metadata(handler) if directive == "REPLACE" else None
    rec = state.store.copy_object(src_bucket, src_key, handler.bucket, key, replace)
    xml_response(handler, 200, "<CopyObjectResult><ETag>&quot;%s&quot;</ETag><LastModified>%s</LastModified>"
                 "</CopyObjectResult>" % (rec.etag, iso8601(rec.last_modified)),
                 {"ETag": '"%s"' % rec.etag, "x-oss-hash-crc64ecma": str(rec.crc64)})


def put_symlink(handler, state):
    key = _need_key(handler)
    target = handler.headers.get("x-oss-symlink-target")
    if not target:
        raise StoreError("InvalidArgument", 400, "x-oss-symlink-target is missing.")
    target = unquote(target, errors="surrogateescape")
    ctype, meta, headers = request_metadata(handler)
    rec = state.store.put_symlink(handler.bucket, key, target, meta, ctype, headers)
    send_response(handler, 200, {"ETag": '"%s"' % rec.etag})


def get_symlink(handler, state):
    rec = state.store.head_object(handler.bucket, _need_key(handler))
    if rec.object_type != "Symlink":
        raise StoreError("NotSymlink", 400, "The specified object is not a symlink.")
    h = {"x-oss-symlink-target": quote(rec.symlink_target.encode("utf-8", "surrogatepass"), safe=""),
         "ETag": '"%s"' % rec.etag, "Last-Modified": http_date(rec.last_modified)}
    for k, v in rec.user_meta.items():
        h["x-oss-meta-" + k] = v
    send_response(handler, 200, h)


# ---------------------------------------------------------------------- multipart
def initiate_upload(handler, state):
    key = _need_key(handler)
    ctype, meta, headers = request_metadata(handler)
    upload_id = state.store.initiate_upload(handler.bucket, key, ctype, meta, headers)
    url = _encoding(handler.query)
    xml_response(handler, 200, "<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key>"
                 "%s<UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                 % (_x(handler.bucket), _enc(key, url), "<EncodingType>url</EncodingType>" if url else "", upload_id))


def _part_number(q) -> int:
    return _int_param(q, "partNumber", None, 1, 10000)


def upload_part(handler, state):
    key = _need_key(handler)
    length = _content_length(handler)
    _check_length(length)
    etag = state.store.upload_part(handler.bucket, key, handler.query["uploadId"], _part_number(handler.query),
                                   read_body(handler), length, handler.headers.get("Content-MD5"))
    parts = state.store.list_parts(handler.bucket, key, handler.query["uploadId"])
    crc = next((p.crc64 for p in parts if p.etag == etag), None)
    h = {"ETag": '"%s"' % etag}
    if crc is not None:
        h["x-oss-hash-crc64ecma"] = str(crc)
    send_response(handler, 200, h)


def upload_part_copy(handler, state):
    key = _need_key(handler)
    src_bucket, src_key = _parse_copy_source(handler.headers["x-oss-copy-source"])
    src = state.store.resolve(src_bucket, src_key)
    if check_conditions(handler.headers, src, "x-oss-copy-source-"):
        send_response(handler, 304, {}, b"", length=0)
        return
    rng = handler.headers.get("x-oss-copy-source-range")
    start = end = None
    if rng:
        r = parse_range(rng, src.size)
        if r is None:
            raise StoreError("InvalidArgument", 400, "x-oss-copy-source-range is not valid.")
        start, end = r
    etag = state.store.upload_part_copy(handler.bucket, key, handler.query["uploadId"],
                                        _part_number(handler.query), src_bucket, src_key, start, end)
    xml_response(handler, 200, "<CopyPartResult><LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>"
                 "</CopyPartResult>" % (iso8601(time.time()), etag), {"ETag": '"%s"' % etag})


def complete_upload(handler, state):
    key = _need_key(handler)
    upload_id = handler.query["uploadId"]
    url = _encoding(handler.query)
    body = read_body(handler).read_all(4 << 20)
    if handler.headers.get("x-oss-complete-all", "").lower() == "yes":
        if body.strip():
            raise StoreError("InvalidArgument", 400, "x-oss-complete-all does not take a part list.")
        parts = [(p.part_number, p.etag) for p in state.store.list_parts(handler.bucket, key, upload_id)]
    else:
        root = _xml_root(body)
        parts = []
        for node in root.findall("Part"):
            try:
                parts.append((int(node.findtext("PartNumber") or ""), (node.findtext("ETag") or "").strip()))
            except ValueError:
                raise StoreError("MalformedXML", 400, "PartNumber is not an integer.")
    rec = state.store.complete_upload(handler.bucket, key, upload_id, parts)
    xml_response(handler, 200, "<CompleteMultipartUploadResult>%s<Location>%s/%s/%s</Location>"
                 "<Bucket>%s</Bucket><Key>%s</Key><ETag>&quot;%s&quot;</ETag></CompleteMultipartUploadResult>"
                 % ("<EncodingType>url</EncodingType>" if url else "", _x(handler.headers.get("Host", "")),
                    _x(handler.bucket), _enc(key, True), _x(handler.bucket), _enc(key, url), rec.etag),
                 {"ETag": '"%s"' % rec.etag, "x-oss-hash-crc64ecma": str(rec.crc64)})


def abort_upload(handler, state):
    state.store.abort_upload(handler.bucket, _need_key(handler), handler.query["uploadId"])
    send_response(handler, 204, {})


def list_parts(handler, state):
    key = _need_key(handler)
    q = handler.query
    url = _encoding(q)
    upload_id = q["uploadId"]
    max_parts = _int_param(q, "max-parts", 1000, 1, 1000)
    marker = _int_param(q, "part-number-marker", 0, 0, 10000)
    parts = [p for p in state.store.list_parts(handler.bucket, key, upload_id) if p.part_number > marker]
    page, truncated = parts[:max_parts], len(parts) > max_parts
    out = ["<ListPartsResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
           "<PartNumberMarker>%d</PartNumberMarker><NextPartNumberMarker>%d</NextPartNumberMarker>"
           "<MaxParts>%d</MaxParts><IsTruncated>%s</IsTruncated>"
           % (_x(handler.bucket), _enc(key, url), upload_id, marker, page[-1].part_number if page else marker,
              max_parts, "true" if truncated else "false")]
    if url:
        out.append("<EncodingType>url</EncodingType>")
    out.extend("<Part><PartNumber>%d</PartNumber><LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>"
               "<HashCrc64ecma>%d</HashCrc64ecma><Size>%d</Size></Part>"
               % (p.part_number, iso8601(p.last_modified), p.etag, p.crc64, p.size) for p in page)
    out.append("</ListPartsResult>")
    xml_response(handler, 200, "".join(out))


def list_uploads(handler, state):
    q = handler.query
    url = _encoding(q)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    max_uploads = _int_param(q, "max-uploads", 1000, 1, 1000)
    ups, truncated = state.store.list_uploads(handler.bucket, prefix, key_marker, id_marker, max_uploads)
    prefixes: List[str] = []
    shown = []
    if delimiter:
        for u in ups:
            rest = u.key[len(prefix):]
            i = rest.find(delimiter)
            if i >= 0:
                cp = prefix + rest[:i + len(delimiter)]
                if cp not in prefixes:
                    prefixes.append(cp)
            else:
                shown.append(u)
    else:
        shown = ups
    out = ["<ListMultipartUploadsResult><Bucket>%s</Bucket><KeyMarker>%s</KeyMarker>"
           "<UploadIdMarker>%s</UploadIdMarker><NextKeyMarker>%s</NextKeyMarker>"
           "<NextUploadIdMarker>%s</NextUploadIdMarker><Delimiter>%s</Delimiter><Prefix>%s</Prefix>"
           "<MaxUploads>%d</MaxUploads><IsTruncated>%s</IsTruncated>"
           % (_x(handler.bucket), _enc(key_marker, url), _x(id_marker),
              _enc(ups[-1].key, url) if ups else "", ups[-1].upload_id if ups else "",
              _enc(delimiter, url), _enc(prefix, url), max_uploads, "true" if truncated else "false")]
    if url:
        out.append("<EncodingType>url</EncodingType>")
    out.extend("<Upload><Key>%s</Key><UploadId>%s</UploadId><StorageClass>Standard</StorageClass>"
               "<Initiated>%s</Initiated></Upload>" % (_enc(u.key, url), u.upload_id, iso8601(u.initiated))
               for u in shown)
    out.extend("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % _enc(p, url) for p in prefixes)
    out.append("</ListMultipartUploadsResult>")
    xml_response(handler, 200, "".join(out))


OPS = {
    "ListBuckets": list_buckets, "PutBucket": put_bucket, "DeleteBucket": delete_bucket,
    "HeadBucket": head_bucket, "GetBucketInfo": get_bucket_info, "GetBucketLocation": get_bucket_location,
    "GetBucketStat": get_bucket_stat, "ListObjects": list_objects, "ListObjectsV2": list_objects_v2,
    "PutObject": put_object, "AppendObject": append_object, "GetObject": get_object,
    "HeadObject": head_object, "GetObjectMeta": get_object_meta, "DeleteObject": delete_object,
    "DeleteMultipleObjects": delete_multiple, "CopyObject": copy_object, "PutSymlink": put_symlink,
    "GetSymlink": get_symlink, "InitiateMultipartUpload": initiate_upload, "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy, "CompleteMultipartUpload": complete_upload,
    "AbortMultipartUpload": abort_upload, "ListParts": list_parts, "ListMultipartUploads": list_uploads,
}
