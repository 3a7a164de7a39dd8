"""Unit tests of SigV4 verification (ossfs.server.auth_s3), with botocore as the signer.

botocore is the reference implementation clients use, so a request it signs must pass
and any change to what it signed must fail.  The aws-chunked test replays the worked
example of AWS's documentation ("Signature Calculations for the Authorization Header:
Transferring Payload in Multiple Chunks"), whose signatures were computed by AWS.
"""
import calendar
import hashlib
import io
import time
from email.message import Message
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ossfs.server import auth_s3
from ossfs.server.auth_s3 import AwsChunkedReader, S3AuthError, Sha256Reader, verify_request

AKID = "AKIDEXAMPLE"
SECRET = "s3cr3t/Key+example"
CREDS = {AKID: SECRET}


def _message(headers):
    m = Message()
    for k, v in headers.items():
        m[k] = v
    return m


def _sign(method, url, body=b"", headers=None, secret=SECRET, akid=AKID, payload=None):
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if payload is not None:
        req.headers["X-Amz-Content-SHA256"] = payload
    S3SigV4Auth(Credentials(akid, secret), "s3", "us-west-7").add_auth(req)
    parts = urlsplit(req.url)
    # botocore signs the Host header from the URL; http.client sends it the same way.
    return parts.path, parts.query, _message(dict(req.headers.items(), Host=parts.netloc))


def _presign(method, url, expires=60, secret=SECRET):
    req = AWSRequest(method=method, url=url, headers={})
    S3SigV4QueryAuth(Credentials(AKID, secret), "s3", "cn-hangzhou", expires=expires).add_auth(req)
    parts = urlsplit(req.url)
    return parts.path, parts.query, _message({"Host": parts.netloc})


def test_signed_header_request_verifies_and_yields_payload_hash():
    body = b"hello world"
    path, query, headers = _sign("PUT", "http://127.0.0.1:9000/bkt/dir/a%20b%2Bc%C3%A9.txt", body)
    ctx = verify_request("PUT", path, query, headers, CREDS)
    assert ctx.access_key_id == AKID
    assert ctx.payload == hashlib.sha256(body).hexdigest()
    assert not ctx.streaming


def test_query_parameters_are_part_of_the_signature():
    path, query, headers = _sign("GET", "http://127.0.0.1:9000/bkt?list-type=2&prefix=a%2Fb&delimiter=%2F")
    verify_request("GET", path, query, headers, CREDS)
    with pytest.raises(S3AuthError) as ei:
        verify_request("GET", path, query.replace("prefix=a%2Fb", "prefix=zzz"), headers, CREDS)
    assert (ei.value.code, ei.value.status) == ("SignatureDoesNotMatch", 403)


def test_wrong_secret_is_signature_does_not_match_and_hides_the_secret():
    path, query, headers = _sign("GET", "http://127.0.0.1:9000/bkt/key", secret="wrong-secret")
    with pytest.raises(S3AuthError) as ei:
        verify_request("GET", path, query, headers, CREDS)
    assert (ei.value.code, ei.value.status) == ("SignatureDoesNotMatch", 403)
    assert SECRET not in str(ei.value) and "wrong-secret" not in str(ei.value)


def test_unknown_key_id_is_invalid_access_key_id():
    path, query, headers = _sign("GET", "http://127.0.0.1:9000/bkt/key", akid="NOBODY")
    with pytest.raises(S3AuthError) as ei:
        verify_request("GET", path, query, headers, CREDS)
    assert (ei.value.code, ei.value.status) == ("InvalidAccessKeyId", 403)


def test_tampered_signed_header_fails():
    path, query, headers = _sign("PUT", "http://127.0.0.1:9000/bkt/key", b"x",
                                 headers={"x-amz-meta-mode": "33188"})
    verify_request("PUT", path, query, headers, CREDS)
    headers.replace_header("x-amz-meta-mode", "33261")
    with pytest.raises(S3AuthError) as ei:
        verify_request("PUT", path, query, headers, CREDS)
    assert ei.value.code == "SignatureDoesNotMatch"


def test_clock_skew_is_request_time_too_skewed():
    path, query, headers = _sign("GET", "http://127.0.0.1:9000/bkt/key")
    with pytest.raises(S3AuthError) as ei:
        verify_request("GET", path, query, headers, CREDS, now=time.time() + 3600)
    assert (ei.value.code, ei.value.status) == ("RequestTimeTooSkewed", 403)


def test_presigned_url_verifies_and_expires():
    path, query, headers = _presign("GET", "http://127.0.0.1:9000/bkt/some%20key", expires=60)
    ctx = verify_request("GET", path, query, headers, CREDS)
    assert ctx.payload == auth_s3.UNSIGNED_PAYLOAD
    with pytest.raises(S3AuthError) as ei:
        verify_request("GET", path, query, headers, CREDS, now=time.time() + 120)
    assert (ei.value.code, ei.value.status) == ("AccessDenied", 403)
    with pytest.raises(S3AuthError) as ei:
        verify_request("PUT", path, query, headers, CREDS)
    assert ei.value.code == "SignatureDoesNotMatch"


def test_sha256_reader_passes_good_body_and_rejects_bad_one_at_the_end():
    body = b"0123456789" * 1000
    good = Sha256Reader(io.BytesIO(body).read, len(body), hashlib.sha256(body).hexdigest())
    assert b"".join(iter(lambda: good.read(777), b"")) == body
    bad = Sha256Reader(io.BytesIO(body).read, len(body), hashlib.sha256(b"other").hexdigest())
    got = []
    with pytest.raises(S3AuthError) as ei:
        for _ in range(100):
            chunk = bad.read(4096)
            if not chunk:
                break
            got.append(chunk)
    assert (ei.value.code, ei.value.status) == ("XAmzContentSHA256Mismatch", 400)
    # The failure comes with the last bytes, before the reader reports end of body.
    assert sum(map(len, got)) < len(body)


# The worked example of AWS's SigV4 streaming documentation.
_AWS_EXAMPLE_HEADERS = {
    "Host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                     "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                     "x-amz-decoded-content-length;x-amz-storage-class,"
                     "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "Content-Length": "66824",
}
_AWS_EXAMPLE_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536 + b"\r\n"
    + b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024 + b"\r\n"
    + b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
)
_AWS_EXAMPLE_NOW = calendar.timegm(time.strptime("20130524T000010Z", "%Y%m%dT%H%M%SZ"))
_AWS_EXAMPLE_CREDS = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def _drain(reader, size=5000):
    out = bytearray()
    for _ in range(10000):
        chunk = reader.read(size)
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("reader did not end")


def _aws_example_ctx():
    return verify_request("PUT", "/examplebucket/chunkObject.txt", "", _message(_AWS_EXAMPLE_HEADERS),
                          _AWS_EXAMPLE_CREDS, now=_AWS_EXAMPLE_NOW)


def test_aws_chunked_example_from_aws_documentation_decodes():
    assert len(_AWS_EXAMPLE_BODY) == 66824
    ctx = _aws_example_ctx()
    assert ctx.streaming
    f = io.BytesIO(_AWS_EXAMPLE_BODY)
    assert _drain(AwsChunkedReader(f.read, f.readline, ctx, 66560)) == b"a" * 66560


@pytest.mark.parametrize("offset", [200, 65536 + 100, 66000])
def test_aws_chunked_tampered_byte_fails_chunk_signature(offset):
    body = bytearray(_AWS_EXAMPLE_BODY)
    body[offset] = ord("b")
    f = io.BytesIO(bytes(body))
    with pytest.raises(S3AuthError) as ei:
        _drain(AwsChunkedReader(f.read, f.readline, _aws_example_ctx(), 66560))
    assert ei.value.code == "SignatureDoesNotMatch"


def test_aws_chunked_dropped_chunk_fails():
    first_end = _AWS_EXAMPLE_BODY.index(b"400;")
    last = _AWS_EXAMPLE_BODY.index(b"0;chunk-signature=b6")
    body = _AWS_EXAMPLE_BODY[:first_end] + _AWS_EXAMPLE_BODY[last:]
    f = io.BytesIO(body)
    with pytest.raises(S3AuthError) as ei:
        _drain(AwsChunkedReader(f.read, f.readline, _aws_example_ctx(), 65536))
    assert ei.value.code == "SignatureDoesNotMatch"


def test_unsigned_trailer_chunks_decode_and_length_is_checked():
    ctx = auth_s3.SigV4Context(AKID, auth_s3.STREAMING_UNSIGNED_TRAILER, "20240101T000000Z",
                               "20240101/us-east-1/s3/aws4_request", b"k", "seed")
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    f = io.BytesIO(body)
    assert _drain(AwsChunkedReader(f.read, f.readline, ctx, 11)) == b"hello world"
    f = io.BytesIO(body)
    with pytest.raises(S3AuthError) as ei:
        _drain(AwsChunkedReader(f.read, f.readline, ctx, 12))
    assert ei.value.code == "IncompleteBody"


# --- Signature Version 2 (botocore's HmacV1 signers) ---

def _sign_v2(method, url, headers=None, secret=SECRET):
    from botocore.auth import HmacV1Auth
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    HmacV1Auth(Credentials(AKID, secret)).add_auth(req)
    parts = urlsplit(req.url)
    return parts.path, parts.query, _message(dict(req.headers.items(), Host=parts.netloc))


def test_v2_header_signature_with_subresources_and_amz_headers():
    path, query, headers = _sign_v2("PUT", "http://127.0.0.1:9000/bkt/a%20key?partNumber=2&uploadId=XYZ",
                                    {"x-amz-meta-mode": "33188", "Content-Type": "text/plain"})
    ctx = auth_s3.verify_request_v2("PUT", path, query, headers, CREDS)
    assert ctx.access_key_id == AKID and ctx.payload == auth_s3.UNSIGNED_PAYLOAD
    headers.replace_header("x-amz-meta-mode", "33261")
    with pytest.raises(S3AuthError) as ei:
        auth_s3.verify_request_v2("PUT", path, query, headers, CREDS)
    assert ei.value.code == "SignatureDoesNotMatch"
    path, query, headers = _sign_v2("GET", "http://127.0.0.1:9000/bkt/k", secret="bad")
    with pytest.raises(S3AuthError) as ei:
        auth_s3.verify_request_v2("GET", path, query, headers, CREDS)
    assert ei.value.code == "SignatureDoesNotMatch"


def test_v2_presigned_query_and_expiry():
    from botocore.auth import HmacV1QueryAuth
    req = AWSRequest(method="GET", url="http://127.0.0.1:9000/bkt/k%2Bplus", headers={})
    HmacV1QueryAuth(Credentials(AKID, SECRET), expires=60).add_auth(req)
    parts = urlsplit(req.url)
    headers = _message({"Host": parts.netloc})
    auth_s3.verify_request_v2("GET", parts.path, parts.query, headers, CREDS)
    with pytest.raises(S3AuthError) as ei:
        auth_s3.verify_request_v2("GET", parts.path, parts.query, headers, CREDS, now=time.time() + 120)
    assert (ei.value.code, ei.value.status) == ("AccessDenied", 403)
