"""AWS request signatures (V4, and legacy V2) for the S3 face of ossfs-server.

Owns: checking a request's SigV4 signature (``Authorization: AWS4-HMAC-SHA256 ...`` or a
presigned URL carrying ``X-Amz-Algorithm``) or SigV2 signature (``Authorization: AWS
AKID:SIG`` or ``AWSAccessKeyId``/``Signature``/``Expires`` in the query: boto3's default
presigned URLs, ``s3fs -o sigv2``) against the server's credentials, and the body
readers that enforce what ``x-amz-content-sha256`` promised:

* a hex SHA-256: :class:`Sha256Reader` hashes while the body streams and fails at the
  end of the body, before the store commits anything, if the digest differs;
* ``UNSIGNED-PAYLOAD``: the body is passed through;
* ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: :class:`AwsChunkedReader` decodes the
  ``aws-chunked`` framing and verifies every chunk signature (each chunk is signed over
  the previous signature, so chunks cannot be dropped, reordered or altered);
* ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: the same framing without chunk signatures,
  followed by trailer headers (checksums) which are read and ignored;
* an ``x-amz-checksum-crc32|crc32c|sha1|sha256`` header (boto3 sends CRC32 by
  default): :class:`ChecksumReader` checks it the same way (BadDigest).

Contracts: :func:`verify_request` (and :func:`verify_request_v2`) either returns a :class:`SigV4Context` or raises
:class:`S3AuthError` carrying the S3 error code and HTTP status (InvalidAccessKeyId,
SignatureDoesNotMatch, RequestTimeTooSkewed, AccessDenied for expired presigned URLs,
AuthorizationHeaderMalformed, ...).  Any region is accepted; the service must be ``s3``.
Secrets and signatures never appear in exception text or logs.

No shared state: every function works on its arguments only, so no lock is needed.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import email.message
import email.utils
import hashlib
import hmac
import logging
import re
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Optional
from urllib.parse import quote, unquote

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# AWS refuses requests whose clock differs from the server's by more than 15 minutes.
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
# A chunk header is "<hex size>;chunk-signature=<64 hex>\r\n"; anything longer is garbage.
_MAX_CHUNK_HEADER = 4096

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class S3AuthError(Exception):
    """An authentication or payload-integrity failure, as an S3 error code + status."""

    def __init__(self, code: str, message: str, status: int = 403):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SigV4Context:
    """What a verified request tells the body readers."""

    access_key_id: str
    payload: str            # the x-amz-content-sha256 value (or UNSIGNED-PAYLOAD)
    amz_date: str           # 20240101T000000Z
    scope: str              # DATE/REGION/s3/aws4_request
    signing_key: bytes
    seed_signature: str     # the request signature, first link of the chunk chain

    @property
    def streaming(self) -> bool:
        return self.payload in (STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER)


def is_sigv4(headers: Mapping[str, str], query: str) -> bool:
    """True if the request is meant for this module (the dispatcher's test)."""
    auth = headers.get("Authorization") or ""
    return auth.startswith(ALGORITHM) or "X-Amz-Algorithm=" in (query or "")


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except (TypeError, ValueError):
        raise S3AuthError("AccessDenied", "X-Amz-Date is missing or not in ISO 8601 basic format") from None


def _as_message(headers):
    """``headers`` with the case-insensitive lookups HTTP headers need: an
    ``email.message.Message`` (as ``http.server`` gives) is returned as it is, a plain
    mapping is copied into one."""
    if hasattr(headers, "get_all"):
        return headers
    message = email.message.Message()
    for name, value in headers.items():
        message[name] = value
    return message


def _parse_query(query: str) -> list:
    """Decoded (name, value) pairs in wire order; a bare ``name`` has value ``""``."""
    pairs = []
    for item in (query or "").split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def _uri_encode(s: str) -> str:
    # AWS canonical form: everything but unreserved characters is %XX-encoded.
    return quote(s, safe="-_.~")


def canonical_query(pairs: list, exclude: str = "") -> str:
    encoded = sorted((_uri_encode(n), _uri_encode(v)) for n, v in pairs if n != exclude)
    return "&".join("%s=%s" % nv for nv in encoded)


def _canonical_header_value(values: list) -> str:
    return ",".join(" ".join(v.split()) for v in values)


def _header_values(headers, name: str) -> Optional[list]:
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        return get_all(name)
    v = headers.get(name)
    return None if v is None else [v]


def _canonical_paths(raw_path: str) -> list:
    """Candidate canonical URIs: the path as sent, then the path re-encoded the AWS way.

    S3 signs the path without normalisation, single-encoded.  Clients differ in which
    reserved characters they escape on the wire (``+``, ``=``, ``,``...); trying both
    forms accepts each of them without weakening the check (a forger still needs the key).
    """
    raw = raw_path or "/"
    normal = quote(unquote(raw), safe="/-_.~")
    return [raw] if normal == raw else [raw, normal]


def _parse_authorization(value: str) -> dict:
    if not value.startswith(ALGORITHM + " "):
        raise S3AuthError("AuthorizationHeaderMalformed", "unsupported authorization algorithm", 400)
    fields = {}
    for part in value[len(ALGORITHM) + 1:].split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise S3AuthError("AuthorizationHeaderMalformed",
                              "the authorization header lacks %s" % required, 400)
    return fields


def _split_credential(credential: str):
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise S3AuthError("AuthorizationHeaderMalformed", "malformed credential scope", 400)
    akid, date, region, service, _ = parts
    if service != "s3":
        raise S3AuthError("AuthorizationHeaderMalformed", "credential scope service must be s3", 400)
    return akid, date, region


def verify_request(method: str, raw_path: str, query: str, headers,
                   credentials: Mapping[str, str], now: Optional[float] = None) -> SigV4Context:
    """Check a SigV4 request (header or presigned form); return its context or raise.

    ``raw_path`` and ``query`` are the request target as received (still %-encoded);
    ``headers`` is an ``email.message.Message`` (as ``http.server`` gives) or a mapping.
    """
    now = time.time() if now is None else now
    headers = _as_message(headers)
    pairs = _parse_query(query)
    qdict = dict(pairs)
    presigned = "X-Amz-Algorithm" in qdict
    if presigned:
        if qdict["X-Amz-Algorithm"] != ALGORITHM:
            raise S3AuthError("AuthorizationQueryParametersError", "unsupported X-Amz-Algorithm", 400)
        for required in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
            if required not in qdict:
                raise S3AuthError("AuthorizationQueryParametersError", "query lacks %s" % required, 400)
        credential = qdict["X-Amz-Credential"]
        signed_headers = qdict["X-Amz-SignedHeaders"]
        signature = qdict["X-Amz-Signature"]
        amz_date = qdict["X-Amz-Date"]
        payload = (headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD).strip()
    else:
        fields = _parse_authorization(headers.get("Authorization") or "")
        credential = fields["Credential"]
        signed_headers = fields["SignedHeaders"]
        signature = fields["Signature"]
        amz_date = (headers.get("x-amz-date") or "").strip()
        payload = (headers.get("x-amz-content-sha256") or "").strip()
        if not payload:
            raise S3AuthError("InvalidRequest", "missing required header x-amz-content-sha256", 400)

    akid, date, region = _split_credential(credential)
    secret = credentials.get(akid)
    if secret is None:
        raise S3AuthError("InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.")
    if not amz_date and not presigned:
        # SigV4 allows Date instead of X-Amz-Date only in RFC 1123 form; no client of
        # ours sends that, so require the ISO form.
        raise S3AuthError("AccessDenied", "X-Amz-Date header is required")
    request_time = _parse_amz_date(amz_date)
    if amz_date[:8] != date:
        raise S3AuthError("SignatureDoesNotMatch", "credential date does not match X-Amz-Date")
    if presigned:
        try:
            expires = int(qdict.get("X-Amz-Expires", "0"))
        except ValueError:
            raise S3AuthError("AuthorizationQueryParametersError", "X-Amz-Expires is not a number", 400) from None
        if not 0 < expires <= MAX_PRESIGN_EXPIRES:
            raise S3AuthError("AuthorizationQueryParametersError", "X-Amz-Expires out of range", 400)
        if now > request_time + expires:
            raise S3AuthError("AccessDenied", "Request has expired")
        if request_time - now > MAX_SKEW_SECONDS:
            raise S3AuthError("RequestTimeTooSkewed",
                              "The difference between the request time and the current time is too large.")
    elif abs(now - request_time) > MAX_SKEW_SECONDS:
        raise S3AuthError("RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.")
    if payload not in (UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER) \
            and not _HEX64.match(payload):
        raise S3AuthError("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD or a hex SHA-256", 400)

    names = [h for h in signed_headers.lower().split(";") if h]
    if "host" not in names:
        raise S3AuthError("AccessDenied", "the host header must be signed")
    lines = []
    for name in names:
        values = _header_values(headers, name)
        if values is None:
            raise S3AuthError("AccessDenied", "signed header %s is missing" % name)
        lines.append("%s:%s\n" % (name, _canonical_header_value(values)))
    cquery = canonical_query(pairs, exclude="X-Amz-Signature" if presigned else "")
    scope = "%s/%s/s3/aws4_request" % (date, region)
    key = signing_key(secret, date, region)
    for path in _canonical_paths(raw_path):
        creq = "\n".join([method, path, cquery, "".join(lines), ";".join(names), payload])
        to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])
        expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature.lower()):
            return SigV4Context(akid, payload, amz_date, scope, key, expected)
    log.debug("SigV4 mismatch for %s %s (signed headers %s)", method, raw_path, ";".join(names))
    raise S3AuthError("SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")


# --- Signature Version 2 (legacy: boto3's default presigned URLs, s3fs -o sigv2) ---

# Query parameters that are part of a V2 canonical resource (from the S3 documentation).
_V2_SUBRESOURCES = frozenset((
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
    "policy", "requestPayment", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId",
    "versioning", "versions", "website"))


def verify_request_v2(method: str, raw_path: str, query: str, headers, credentials: Mapping[str, str],
                      bucket_prefix: str = "", now: Optional[float] = None) -> SigV4Context:
    """Check an ``Authorization: AWS AKID:SIG`` or ``AWSAccessKeyId=..&Signature=..`` request.

    ``bucket_prefix`` is ``/bucket`` for virtual-host requests (their canonical resource
    starts with the bucket).  Returns a context with ``UNSIGNED-PAYLOAD``: V2 does not
    sign the body (Content-MD5, when sent, is checked by the store).
    """
    now = time.time() if now is None else now
    headers = _as_message(headers)
    pairs = _parse_query(query)
    qdict = dict(pairs)
    if "AWSAccessKeyId" in qdict:
        akid, signature = qdict["AWSAccessKeyId"], qdict.get("Signature", "")
        try:
            expires = int(qdict.get("Expires", ""))
        except ValueError:
            raise S3AuthError("AccessDenied", "Expires is missing or not a number") from None
        if now > expires:
            raise S3AuthError("AccessDenied", "Request has expired")
        date_field = str(expires)
    else:
        auth = headers.get("Authorization") or ""
        akid, sep, signature = auth[len("AWS "):].strip().rpartition(":")
        if not auth.startswith("AWS ") or not sep or not akid:
            raise S3AuthError("AccessDenied", "malformed Signature Version 2 authorization header")
        stamp = headers.get("x-amz-date") or headers.get("Date") or ""
        parsed = email.utils.parsedate_tz(stamp) if stamp else None
        if parsed is None:
            raise S3AuthError("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        if abs(now - email.utils.mktime_tz(parsed)) > MAX_SKEW_SECONDS:
            raise S3AuthError("RequestTimeTooSkewed",
                              "The difference between the request time and the current time is too large.")
        date_field = "" if headers.get("x-amz-date") else stamp
    secret = credentials.get(akid)
    if secret is None:
        raise S3AuthError("InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.")
    amz = {}
    for name in set(k.lower() for k in headers.keys()):
        if name.startswith("x-amz-"):
            amz[name] = _canonical_header_value(_header_values(headers, name))
    sub = sorted((n, v) for n, v in pairs if n in _V2_SUBRESOURCES)
    subresource = "&".join(n if v == "" else "%s=%s" % (n, v) for n, v in sub)
    paths = _canonical_paths(raw_path)
    if not bucket_prefix and raw_path.count("/") == 1 and raw_path != "/":
        # A bucket-level request ("/bkt"): AWS's canonical resource is "/bkt/", which is
        # what botocore signs.
        paths.append(raw_path + "/")
    for path in paths:
        resource = bucket_prefix + path + ("?" + subresource if subresource else "")
        to_sign = "\n".join([method, headers.get("Content-MD5") or "", headers.get("Content-Type") or "",
                             date_field]) + "\n" + "".join("%s:%s\n" % kv for kv in sorted(amz.items())) + resource
        expected = base64.b64encode(hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"),
                                             hashlib.sha1).digest()).decode("ascii")
        if hmac.compare_digest(expected, signature):
            return SigV4Context(akid, UNSIGNED_PAYLOAD, "", "", b"", "")
    raise S3AuthError("SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")


# --- body readers -------------------------------------------------------------------

class Sha256Reader:
    """File-like reader over exactly ``length`` bytes that checks their SHA-256.

    The mismatch is raised by the ``read`` that reaches the end of the body, so a store
    that writes to a temp file and commits only after reading everything never commits
    a corrupted body.
    """

    def __init__(self, read: Callable[[int], bytes], length: int, expected_hex: str):
        self._read = read
        self._left = length
        self._hash = hashlib.sha256()
        self._expected = expected_hex.lower()
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            self._check()
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._read(want)
        if not data:
            raise S3AuthError("IncompleteBody", "the request body ended early", 400)
        self._left -= len(data)
        self._hash.update(data)
        if self._left <= 0:
            self._check()
        return data

    def _check(self) -> None:
        if not self._checked:
            self._checked = True
            if not hmac.compare_digest(self._hash.hexdigest(), self._expected):
                raise S3AuthError("XAmzContentSHA256Mismatch",
                                  "The provided 'x-amz-content-sha256' header does not match what was computed.",
                                  400)


def _crc_factory(fn):
    class _Crc:
        def __init__(self):
            self.value = 0

        def update(self, data):
            self.value = fn(data, self.value)

        def digest(self):
            return self.value.to_bytes(4, "big")
    return _Crc


def _crc32c():
    import crcmod.predefined   # a dependency of ossfs (CRC-64 of OSS); C-accelerated
    return crcmod.predefined.Crc("crc-32c")


# x-amz-checksum-<name>: base64 of the big-endian digest, as the flexible-checksum SDKs send.
CHECKSUMS = {
    "crc32": _crc_factory(zlib.crc32),
    "crc32c": _crc32c,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}


class ChecksumReader:
    """Checks an ``x-amz-checksum-*`` header over a body of ``length`` bytes (None: to EOF).

    Like :class:`Sha256Reader`, the mismatch (BadDigest) is raised by the read that
    delivers the last bytes, before the store can commit them.
    """

    def __init__(self, inner, length: Optional[int], algorithm: str, expected_b64: str):
        try:
            self._expected = base64.b64decode(expected_b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise S3AuthError("InvalidRequest", "Value for x-amz-checksum-%s header is invalid." % algorithm,
                              400) from None
        self._inner = inner
        self._left = length
        self._algorithm = algorithm
        self._hash = CHECKSUMS[algorithm]()
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._hash.update(data)
            if self._left is not None:
                self._left -= len(data)
        if not data or self._left == 0:
            self._check()
        return data

    def _check(self) -> None:
        if not self._checked:
            self._checked = True
            if not hmac.compare_digest(self._hash.digest(), self._expected):
                raise S3AuthError("BadDigest", "The %s you specified did not match the calculated checksum."
                                  % self._algorithm.upper(), 400)


class AwsChunkedReader:
    """Decodes an ``aws-chunked`` body, verifying chunk signatures when the payload is signed.

    ``decoded_length`` is ``x-amz-decoded-content-length``; the reader fails if the
    chunks carry a different number of bytes.  ``read`` never returns more than the
    current chunk's remainder, which keeps memory bounded by the client's chunk size.
    """

    def __init__(self, read: Callable[[int], bytes], readline: Callable[[int], bytes],
                 ctx: SigV4Context, decoded_length: int):
        self._read = read
        self._readline = readline
        self._ctx = ctx
        self._signed = ctx.payload == STREAMING_SIGNED
        self._prev = ctx.seed_signature
        self._expected_total = decoded_length
        self._total = 0
        self._chunk_left = 0
        self._chunk_hash = None
        self._chunk_sig = ""
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and self._chunk_left == 0:
            self._next_chunk()
        if self._done:
            return b""
        want = self._chunk_left if n is None or n < 0 else min(n, self._chunk_left)
        data = self._read(want)
        if not data:
            raise S3AuthError("IncompleteBody", "the request body ended early", 400)
        self._chunk_left -= len(data)
        self._total += len(data)
        if self._chunk_hash is not None:
            self._chunk_hash.update(data)
        if self._chunk_left == 0:
            self._end_chunk()
            if self._total >= self._expected_total:
                # Readers that stop after the announced length (the store does) must
                # still see the final chunk's signature checked: read it now.
                self._next_chunk()
                if not self._done:
                    raise S3AuthError("IncompleteBody", "aws-chunked body is longer than "
                                      "x-amz-decoded-content-length", 400)
        return data

    def _line(self) -> bytes:
        line = self._readline(_MAX_CHUNK_HEADER)
        if not line.endswith(b"\n"):
            raise S3AuthError("IncompleteBody", "malformed aws-chunked body", 400)
        return line.rstrip(b"\r\n")

    def _next_chunk(self) -> None:
        header = self._line().decode("latin-1")
        size_s, _, ext = header.partition(";")
        try:
            size = int(size_s, 16)
        except ValueError:
            raise S3AuthError("IncompleteBody", "malformed aws-chunked chunk size", 400) from None
        self._chunk_sig = ""
        if self._signed:
            name, _, sig = ext.partition("=")
            if name.strip() != "chunk-signature" or not sig:
                raise S3AuthError("SignatureDoesNotMatch", "chunk signature missing")
            self._chunk_sig = sig.strip().lower()
            self._chunk_hash = hashlib.sha256()
        self._chunk_left = size
        if size == 0:
            self._verify_chunk()
            self._finish()

    def _end_chunk(self) -> None:
        self._verify_chunk()
        if self._line():  # the CRLF that closes the chunk data must be empty
            raise S3AuthError("IncompleteBody", "malformed aws-chunked body", 400)

    def _verify_chunk(self) -> None:
        if not self._signed:
            return
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self._ctx.amz_date, self._ctx.scope,
                             self._prev, EMPTY_SHA256, self._chunk_hash.hexdigest()])
        expected = hmac.new(self._ctx.signing_key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._chunk_sig):
            raise S3AuthError("SignatureDoesNotMatch", "a chunk signature does not match")
        self._prev = expected

    def _finish(self) -> None:
        # After the zero chunk: optional trailer lines, then an empty line.
        for _ in range(64):
            line = self._readline(_MAX_CHUNK_HEADER)
            if not line or line in (b"\r\n", b"\n"):
                break
        self._done = True
        if self._total != self._expected_total:
            raise S3AuthError("IncompleteBody",
                              "aws-chunked body carried %d bytes, x-amz-decoded-content-length says %d"
                              % (self._total, self._expected_total), 400)
