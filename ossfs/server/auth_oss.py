"""Verification of OSS request signatures (V1 and V4, header and presigned URL forms).

What it owns
    Rebuilding the string to sign exactly as the ``oss2`` SDK (``oss2/auth.py``) builds it
    and comparing signatures in constant time.

Contracts
    :func:`authenticate` returns the access key id or raises
    :class:`~ossfs.server.store.StoreError`: InvalidAccessKeyId (unknown key id),
    SignatureDoesNotMatch (bad signature), RequestTimeTooSkewed (Date / x-oss-date more
    than 15 minutes away), AccessDenied (expired presigned URL, malformed or missing
    authorization).  Messages never contain the secret or the expected signature.

    * V1 header: ``Authorization: OSS AKID:base64(HMAC-SHA1(secret, VERB\\nContent-MD5\\n
      Content-Type\\nDate\\n<x-oss-* headers sorted, lower-case>/<bucket>/<key>?<signed
      sub-resources>))``.
    * V1 URL: ``OSSAccessKeyId``, ``Expires`` (used in place of Date), ``Signature``.
    * V4 header: ``OSS4-HMAC-SHA256 Credential=AKID/DATE/REGION/oss/aliyun_v4_request,
      [AdditionalHeaders=a;b,] Signature=hex``; V4 URL: ``x-oss-signature-version``,
      ``x-oss-credential``, ``x-oss-date``, ``x-oss-expires``, ``x-oss-signature``.

Threads and locks
    Pure functions; no shared state.
"""
from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import logging
import time
from typing import Optional

from ossfs.server.store import StoreError

log = logging.getLogger(__name__)

MAX_SKEW = 15 * 60

# The sub-resources oss2 includes in the V1 canonical resource (oss2.auth.ProviderAuth).
SUBRESOURCES = frozenset([
    'response-content-type', 'response-content-language', 'response-cache-control', 'logging',
    'response-content-encoding', 'acl', 'uploadId', 'uploads', 'partNumber', 'group', 'link',
    'delete', 'website', 'location', 'objectInfo', 'objectMeta', 'response-expires',
    'response-content-disposition', 'cors', 'lifecycle', 'restore', 'qos', 'referer', 'stat',
    'bucketInfo', 'append', 'position', 'security-token', 'live', 'comp', 'status', 'vod',
    'startTime', 'endTime', 'x-oss-process', 'symlink', 'callback', 'callback-var', 'tagging',
    'encryption', 'versions', 'versioning', 'versionId', 'policy', 'requestPayment',
    'x-oss-traffic-limit', 'qosInfo', 'asyncFetch', 'x-oss-request-payer', 'sequential',
    'inventory', 'inventoryId', 'continuation-token', 'worm', 'wormId', 'wormExtend',
    'replication', 'replicationLocation', 'replicationProgress', 'transferAcceleration', 'cname',
    'metaQuery', 'x-oss-ac-source-ip', 'x-oss-ac-subnet-mask', 'x-oss-ac-vpc-id',
    'x-oss-ac-forward-allow', 'resourceGroup', 'style', 'styleName', 'x-oss-async-process',
    'regionList', 'x-oss-write-get-object-response', 'bucketArchiveDirectRead', 'httpsConfig',
    'redundancyTransition', 'x-oss-target-redundancy-type', 'x-oss-redundancy-transition-taskid',
    'accessPoint', 'accessPointPolicy', 'publicAccessBlock', 'x-oss-access-point-name',
    'requesterQosInfo', 'qosRequester', 'resourcePoolInfo', 'resourcePool', 'resourcePoolBuckets',
])
V4_DEFAULT_SIGNED = ("content-type", "content-md5")


def _denied(message: str) -> StoreError:
    return StoreError("AccessDenied", 403, message)


def _mismatch() -> StoreError:
    return StoreError("SignatureDoesNotMatch", 403,
                      "The request signature we calculated does not match the signature you provided. "
                      "Check your key and signing method.")


def _secret(state, key_id: str) -> str:
    secret = state.credentials.get(key_id)
    if secret is None:
        raise StoreError("InvalidAccessKeyId", 403, "The OSS Access Key Id you provided does not exist in our records.")
    return secret


def _check_skew(when: Optional[float]) -> None:
    if when is None:
        raise _denied("The request has no valid Date or x-oss-date header.")
    if abs(time.time() - when) > MAX_SKEW:
        raise StoreError("RequestTimeTooSkewed", 403,
                         "The difference between the request time and the current time is too large.")


def _parse_http_date(text: str) -> Optional[float]:
    try:
        t = email.utils.parsedate_tz(text)
    except (TypeError, ValueError):
        return None
    if t is None:
        return None
    return float(email.utils.mktime_tz(t))


def _parse_iso8601(text: str) -> Optional[float]:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except (TypeError, ValueError):
        return None


def _resource_v1(handler) -> str:
    bucket, key = handler.bucket, handler.key
    if not bucket:
        res = "/"
    else:
        res = "/%s/%s" % (bucket, key or "")
    subs = sorted((k, v) for k, v in handler.query.items() if k in SUBRESOURCES)
    if subs:
        res += "?" + "&".join(k + "=" + v if v else k for k, v in subs)
    return res


def _oss_headers_v1(handler) -> str:
    items = sorted((k.lower(), v) for k, v in handler.headers.items() if k.lower().startswith("x-oss-"))
    return "".join("%s:%s\n" % (k, v) for k, v in items)


def _sign_v1(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8", "surrogateescape"),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _v4_encode(text: str, keep_slash: bool) -> str:
    out = []
    for b in text.encode("utf-8", "surrogateescape"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "_-~."):
            out.append(c)
        elif keep_slash and c == "/":
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def _signing_key_v4(secret: str, date: str, region: str, product: str) -> bytes:
    k = hmac.new(("aliyun_v4" + secret).encode("utf-8"), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, product.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aliyun_v4_request", hashlib.sha256).digest()


def _canonical_request_v4(handler, additional, exclude_param: Optional[str], payload_hash: str) -> str:
    bucket, key = handler.bucket, handler.key
    uri = _v4_encode("/%s/%s" % (bucket, key or "") if bucket else "/", True)
    params = sorted((_v4_encode(k, False), _v4_encode(v, False))
                    for k, v in handler.query.items() if k != exclude_param)
    query = "&".join(k + "=" + v if v else k for k, v in params)
    signed = []
    for k, v in handler.headers.items():
        lk = k.lower()
        if lk.startswith("x-oss-") or lk in V4_DEFAULT_SIGNED or lk in additional:
            signed.append((lk, v))
    signed.sort(key=lambda x: x[0])
    headers = "".join("%s:%s\n" % (k, v) for k, v in signed)
    return "\n".join([handler.command, uri, query, headers, ";".join(sorted(additional)), payload_hash])


def _verify_v4(state, handler, credential: str, signature: str, date_time: str,
               additional, exclude_param: Optional[str], payload_hash: str) -> str:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aliyun_v4_request":
        raise _denied("Invalid credential in the authorization: %s" % "/".join(parts[1:]))
    key_id, date, region, product = parts[0], parts[1], parts[2], parts[3]
    secret = _secret(state, key_id)
    if date_time[:8] != date:
        raise _mismatch()
    canonical = _canonical_request_v4(handler, additional, exclude_param, payload_hash)
    string_to_sign = "\n".join(["OSS4-HMAC-SHA256", date_time, "%s/%s/%s/aliyun_v4_request" % (date, region, product),
                                hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()])
    expected = hmac.new(_signing_key_v4(secret, date, region, product), string_to_sign.encode("utf-8"),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        log.debug("V4 signature mismatch for key id %s", key_id)
        raise _mismatch()
    return key_id


def _parse_v4_header(value: str) -> dict:
    fields = {}
    for item in value[len("OSS4-HMAC-SHA256"):].split(","):
        name, _, val = item.strip().partition("=")
        if name:
            fields[name.strip()] = val.strip()
    return fields


def authenticate(handler, state) -> str:
    """Check the request's OSS signature; return the access key id (see module docstring)."""
    auth = handler.headers.get("Authorization") or ""
    q = handler.query
    if auth.startswith("OSS "):
        key_id, sep, signature = auth[4:].strip().rpartition(":")
        if not sep or not key_id:
            raise _denied("The authorization header is malformed.")
        secret = _secret(state, key_id)
        date = handler.headers.get("x-oss-date") or handler.headers.get("Date") or ""
        _check_skew(_parse_http_date(date))
        sts = "\n".join([handler.command, handler.headers.get("Content-MD5", ""),
                         handler.headers.get("Content-Type", ""), date,
                         _oss_headers_v1(handler) + _resource_v1(handler)])
        if not hmac.compare_digest(_sign_v1(secret, sts), signature.strip()):
            log.debug("V1 signature mismatch for key id %s", key_id)
            raise _mismatch()
        return key_id
    if auth.startswith("OSS4-HMAC-SHA256"):
        fields = _parse_v4_header(auth)
        if "Credential" not in fields or "Signature" not in fields:
            raise _denied("The authorization header is malformed.")
        date_time = handler.headers.get("x-oss-date") or ""
        _check_skew(_parse_iso8601(date_time))
        additional = [h.lower() for h in fields.get("AdditionalHeaders", "").split(";") if h]
        payload = handler.headers.get("x-oss-content-sha256") or "UNSIGNED-PAYLOAD"
        return _verify_v4(state, handler, fields["Credential"], fields["Signature"], date_time,
                          additional, None, payload)
    if "OSSAccessKeyId" in q:
        key_id = q["OSSAccessKeyId"]
        secret = _secret(state, key_id)
        expires = q.get("Expires", "")
        try:
            if int(expires) < time.time():
                raise _denied("Request has expired.")
        except ValueError:
            raise _denied("Invalid Expires in the query string.")
        sts = "\n".join([handler.command, handler.headers.get("Content-MD5", ""),
                         handler.headers.get("Content-Type", ""), expires,
                         _oss_headers_v1(handler) + _resource_v1(handler)])
        if not hmac.compare_digest(_sign_v1(secret, sts), q.get("Signature", "")):
            raise _mismatch()
        return key_id
    if q.get("x-oss-signature-version") == "OSS4-HMAC-SHA256":
        date_time = q.get("x-oss-date", "")
        start = _parse_iso8601(date_time)
        try:
            expires = int(q.get("x-oss-expires", ""))
        except ValueError:
            raise _denied("Invalid x-oss-expires in the query string.")
        if start is None:
            raise _denied("Invalid x-oss-date in the query string.")
        if start + expires < time.time():
            raise _denied("Request has expired.")
        if start > time.time() + MAX_SKEW:
            raise StoreError("RequestTimeTooSkewed", 403,
                             "The difference between the request time and the current time is too large.")
        additional = [h.lower() for h in q.get("x-oss-additional-headers", "").split(";") if h]
        return _verify_v4(state, handler, q.get("x-oss-credential", ""), q.get("x-oss-signature", ""),
                          date_time, additional, "x-oss-signature", "UNSIGNED-PAYLOAD")
    raise _denied("AccessDenied: anonymous access is not allowed.")
