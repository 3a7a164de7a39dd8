"""The S3 face of ossfs-server, driven by boto3 (and oss2 for the other face).

Every test talks to a real ``ossfs-server`` subprocess over loopback: boto3 signs with
SigV4 exactly as S3 clients do, and oss2 reads the same bucket through the OSS face, so
the tests show that both faces see one object (metadata, ETag, body).
"""
import base64
import datetime
import hashlib
import io
import os
import time

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, HTTPClientError

from ossfs.server import auth_s3

MiB = 1 << 20


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def server(oss_server_session):
    # One server for the module's tests (each uses its own keys and counts deltas);
    # the fault test takes a server of its own.
    return oss_server_session


def _client(server, secret=None, key_id=None):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=key_id or server.access_key_id,
        aws_secret_access_key=secret or server.access_key_secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


@pytest.fixture
def s3(server):
    return _client(server)


@pytest.fixture
def oss(server):
    return server.oss_bucket()


def _code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def _status(exc_info) -> int:
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _requests(server):
    return server.stats()["requests"]


# --------------------------------------------------------------------------- buckets

def test_buckets_list_create_head_location_delete(server, s3):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert server.bucket in names
    s3.create_bucket(Bucket="fresh-bucket")
    assert "fresh-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="fresh-bucket")
    assert s3.get_bucket_location(Bucket="fresh-bucket")["LocationConstraint"] is None
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket="fresh-bucket")
    assert _code(ei) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="fresh-bucket", Key="k", Body=b"x")
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket="fresh-bucket")
    assert _code(ei) == "BucketNotEmpty"
    s3.delete_object(Bucket="fresh-bucket", Key="k")
    s3.delete_bucket(Bucket="fresh-bucket")
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket="fresh-bucket")
    assert _status(ei) == 404
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket="fresh-bucket")
    assert _code(ei) == "NoSuchBucket"
    counts = _requests(server)
    for op in ("ListBuckets", "PutBucket", "HeadBucket", "GetBucketLocation", "DeleteBucket"):
        assert counts.get(op, 0) >= 1, op


def test_acl_and_versioning_answered_minimally(server, s3):
    acl = s3.get_bucket_acl(Bucket=server.bucket)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_object(Bucket=server.bucket, Key="acl-obj", Body=b"1")
    assert s3.get_object_acl(Bucket=server.bucket, Key="acl-obj")["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_object_acl(Bucket=server.bucket, Key="acl-obj", ACL="private")
    assert "Status" not in s3.get_bucket_versioning(Bucket=server.bucket)


# --------------------------------------------------------------------------- objects

def test_put_get_head_round_trip(server, s3):
    body = os.urandom(100_000)
    r = s3.put_object(Bucket=server.bucket, Key="dir/obj.bin", Body=body, ContentType="image/png",
                      CacheControl="max-age=60", Metadata={"mode": "33188", "uid": "1000"})
    md5 = hashlib.md5(body).hexdigest()
    assert r["ETag"] == '"%s"' % md5          # lower-case, as S3 clients compare it
    got = s3.get_object(Bucket=server.bucket, Key="dir/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    assert got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"mode": "33188", "uid": "1000"}
    head = s3.head_object(Bucket=server.bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == '"%s"' % md5
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=server.bucket, Key="missing")
    assert (_code(ei), _status(ei)) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=server.bucket, Key="missing")
    assert _status(ei) == 404


def test_error_body_is_s3_error_xml(server):
    url = "%s/%s/no-such-key" % (server.endpoint, server.bucket)
    req = AWSRequest(method="GET", url=url, headers={"X-Amz-Content-SHA256": auth_s3.EMPTY_SHA256})
    S3SigV4Auth(Credentials(server.access_key_id, server.access_key_secret), "s3", "us-east-1").add_auth(req)
    r = requests.get(url, headers=dict(req.headers.items()), timeout=10)
    assert r.status_code == 404
    import xml.etree.ElementTree as ET
    root = ET.fromstring(r.content)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Resource") == "/%s/no-such-key" % server.bucket
    assert root.findtext("RequestId") and root.findtext("Message")


def test_content_md5_is_verified(server, s3):
    s3.put_object(Bucket=server.bucket, Key="md5", Body=b"original")
    good = base64.b64encode(hashlib.md5(b"new body").digest()).decode()
    s3.put_object(Bucket=server.bucket, Key="md5", Body=b"new body", ContentMD5=good)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=server.bucket, Key="md5", Body=b"corrupted", ContentMD5=wrong)
    assert (_code(ei), _status(ei)) == ("BadDigest", 400)
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=server.bucket, Key="md5", Body=b"corrupted", ContentMD5="not-base64!")
    assert (_code(ei), _status(ei)) == ("InvalidDigest", 400)
    assert s3.get_object(Bucket=server.bucket, Key="md5")["Body"].read() == b"new body"


def _signed_put(server, key, signed_body, sent_body):
    url = "%s/%s/%s" % (server.endpoint, server.bucket, key)
    req = AWSRequest(method="PUT", url=url, data=signed_body,
                     headers={"X-Amz-Content-SHA256": hashlib.sha256(signed_body).hexdigest()})
    S3SigV4Auth(Credentials(server.access_key_id, server.access_key_secret), "s3", "us-east-1").add_auth(req)
    return requests.put(url, data=sent_body, headers=dict(req.headers.items()), timeout=10)


def test_payload_sha256_is_verified_and_bad_body_not_stored(server, s3):
    r = _signed_put(server, "sha", b"A" * 5000, b"A" * 5000)
    assert r.status_code == 200, r.text
    r = _signed_put(server, "sha", b"B" * 5000, b"C" * 5000)
    assert r.status_code == 400 and b"XAmzContentSHA256Mismatch" in r.content
    assert s3.get_object(Bucket=server.bucket, Key="sha")["Body"].read() == b"A" * 5000


def _chunked_body(ctx, data, chunk=8192):
    """aws-chunked framing with chunk signatures (the algorithm checked in test_s3_auth)."""
    import hmac
    out, prev = [], ctx.seed_signature
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", ctx.amz_date, ctx.scope, prev,
                             auth_s3.EMPTY_SHA256, hashlib.sha256(piece).hexdigest()])
        prev = hmac.new(ctx.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), prev.encode(), piece))
    return b"".join(out)


def test_streaming_signed_payload_is_decoded(server, s3):
    data = os.urandom(50_000)
    url = "%s/%s/streamed" % (server.endpoint, server.bucket)
    headers = {"X-Amz-Content-SHA256": auth_s3.STREAMING_SIGNED, "Content-Encoding": "aws-chunked,gzip",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-meta-mode": "33188"}
    req = AWSRequest(method="PUT", url=url, headers=headers)

    class StreamingAuth(S3SigV4Auth):
        def payload(self, request):   # botocore itself never streams; sign the streaming marker
            return auth_s3.STREAMING_SIGNED

    StreamingAuth(Credentials(server.access_key_id, server.access_key_secret), "s3", "us-east-1").add_auth(req)
    sent = dict(req.headers.items())
    host = url.split("/")[2]
    ctx = auth_s3.verify_request("PUT", "/%s/streamed" % server.bucket, "",
                                 dict(sent, Host=host), {server.access_key_id: server.access_key_secret})
    body = _chunked_body(ctx, data)
    r = requests.put(url, data=body, headers=sent, timeout=10)
    assert r.status_code == 200, r.text
    got = s3.get_object(Bucket=server.bucket, Key="streamed")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"mode": "33188"}
    assert got["ContentEncoding"] == "gzip"      # aws-chunked is framing, not a stored encoding
    tampered = bytearray(body)
    tampered[len(body) // 2] ^= 1
    r = requests.put(url, data=bytes(tampered), headers=sent, timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    assert s3.get_object(Bucket=server.bucket, Key="streamed")["Body"].read() == data


def test_range_and_conditional_get(server, s3):
    body = bytes(range(256)) * 40
    etag = s3.put_object(Bucket=server.bucket, Key="r", Body=body)["ETag"]
    r = s3.get_object(Bucket=server.bucket, Key="r", Range="bytes=100-199")
    assert r["Body"].read() == body[100:200]
    assert r["ContentRange"] == "bytes 100-199/%d" % len(body)
    assert s3.get_object(Bucket=server.bucket, Key="r", Range="bytes=-10")["Body"].read() == body[-10:]
    assert s3.get_object(Bucket=server.bucket, Key="r", Range="bytes=10000-")["Body"].read() == body[10000:]
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=server.bucket, Key="r", Range="bytes=99999-")
    assert (_code(ei), _status(ei)) == ("InvalidRange", 416)
    assert s3.get_object(Bucket=server.bucket, Key="r", IfMatch=etag.upper())["Body"].read() == body
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=server.bucket, Key="r", IfMatch='"0123"')
    assert _status(ei) == 412
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=server.bucket, Key="r", IfNoneMatch=etag)
    assert _status(ei) == 304
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=server.bucket, Key="r", IfModifiedSince=datetime.datetime.now(datetime.timezone.utc))
    assert _status(ei) == 304
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=server.bucket, Key="r", IfUnmodifiedSince=time.time() - 3600)
    assert _status(ei) == 412


def test_delete_object_and_delete_objects(server, s3):
    before = _requests(server)
    for k in ("d/1", "d/2", "d/3"):
        s3.put_object(Bucket=server.bucket, Key=k, Body=b"x")
    s3.delete_object(Bucket=server.bucket, Key="d/1")
    s3.delete_object(Bucket=server.bucket, Key="d/never-existed")   # not an error, as in S3
    r = s3.delete_objects(Bucket=server.bucket, Delete={"Objects": [{"Key": "d/2"}, {"Key": "d/nope"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["d/2", "d/nope"]
    r = s3.delete_objects(Bucket=server.bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in r and "Errors" not in r
    assert s3.list_objects_v2(Bucket=server.bucket, Prefix="d/")["KeyCount"] == 0
    counts = _requests(server)
    assert counts["DeleteObject"] - before.get("DeleteObject", 0) == 2
    assert counts["DeleteMultipleObjects"] - before.get("DeleteMultipleObjects", 0) == 2


def test_copy_with_copy_and_replace_directives(server, s3):
    s3.put_object(Bucket=server.bucket, Key="src", Body=b"payload", ContentType="text/plain",
                  Metadata={"mode": "33188", "mtime": "1700000000"})
    r = s3.copy_object(Bucket=server.bucket, Key="dst-copy", CopySource={"Bucket": server.bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(b"payload").hexdigest()
    h = s3.head_object(Bucket=server.bucket, Key="dst-copy")
    assert h["Metadata"] == {"mode": "33188", "mtime": "1700000000"} and h["ContentType"] == "text/plain"
    s3.copy_object(Bucket=server.bucket, Key="src", CopySource="%s/src" % server.bucket,
                   MetadataDirective="REPLACE", Metadata={"mode": "33261"}, ContentType="text/x-sh")
    h = s3.head_object(Bucket=server.bucket, Key="src")
    assert h["Metadata"] == {"mode": "33261"} and h["ContentType"] == "text/x-sh"
    assert s3.get_object(Bucket=server.bucket, Key="src")["Body"].read() == b"payload"
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=server.bucket, Key="src", CopySource={"Bucket": server.bucket, "Key": "src"})
    assert (_code(ei), _status(ei)) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=server.bucket, Key="x", CopySource={"Bucket": server.bucket, "Key": "src"},
                       CopySourceIfMatch='"deadbeef"')
    assert _status(ei) == 412
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=server.bucket, Key="x", CopySource={"Bucket": server.bucket, "Key": "no-src"})
    assert _code(ei) == "NoSuchKey"


def test_listing_delimiter_pagination_and_url_encoding(server, s3):
    keys = ["list/a%d" % i for i in range(5)] + ["list/sub%d/x" % i for i in range(3)] \
        + ["list/with space+plus&amp", "list/\u00e9t\u00e9"]
    for k in keys:
        s3.put_object(Bucket=server.bucket, Key=k, Body=b"")
    # v1 with a delimiter, two entries a page (boto3 asks for encoding-type=url itself)
    pages = list(s3.get_paginator("list_objects").paginate(
        Bucket=server.bucket, Prefix="list/", Delimiter="/", PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 4
    got_keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    got_prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    assert sorted(got_keys) == sorted(k for k in keys if "/sub" not in k)
    assert got_prefixes == ["list/sub0/", "list/sub1/", "list/sub2/"]
    # v2 without a delimiter
    pages = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket=server.bucket, Prefix="list/", PaginationConfig={"PageSize": 3}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == \
        sorted(keys, key=lambda k: k.encode("utf-8"))
    assert all(p["KeyCount"] <= 3 for p in pages)
    r = s3.list_objects_v2(Bucket=server.bucket, Prefix="list/", StartAfter="list/sub9")
    assert [o["Key"] for o in r["Contents"]] == ["list/with space+plus&amp", "list/\u00e9t\u00e9"]
    r = s3.list_objects(Bucket=server.bucket, Prefix="list/", Marker="list/a3", MaxKeys=1)
    assert [o["Key"] for o in r["Contents"]] == ["list/a4"] and r["IsTruncated"]
    counts = _requests(server)
    assert counts["ListObjects"] >= 4 and counts["ListObjectsV2"] >= 2


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_keys_with_reserved_and_unicode_characters(server, signature_version):
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                      aws_access_key_id=server.access_key_id, aws_secret_access_key=server.access_key_secret,
                      config=Config(s3={"addressing_style": "path"}, signature_version=signature_version,
                                    retries={"max_attempts": 1}))
    key = "weird/%41 ?#&=+,;:@$!'()*[]~\u00e9\u4e2d"
    s3.put_object(Bucket=server.bucket, Key=key, Body=b"w")
    assert s3.get_object(Bucket=server.bucket, Key=key)["Body"].read() == b"w"
    s3.copy_object(Bucket=server.bucket, Key=key + "2", CopySource={"Bucket": server.bucket, "Key": key})
    up = s3.create_multipart_upload(Bucket=server.bucket, Key=key)["UploadId"]
    s3.upload_part_copy(Bucket=server.bucket, Key=key, UploadId=up, PartNumber=1,
                        CopySource={"Bucket": server.bucket, "Key": key + "2"})
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=server.bucket, Prefix="weird/")["Uploads"]] == [key]
    s3.abort_multipart_upload(Bucket=server.bucket, Key=key, UploadId=up)
    assert [o["Key"] for o in s3.list_objects(Bucket=server.bucket, Prefix="weird/")["Contents"]] == [key, key + "2"]
    s3.delete_objects(Bucket=server.bucket, Delete={"Objects": [{"Key": key}, {"Key": key + "2"}]})
    assert s3.list_objects_v2(Bucket=server.bucket, Prefix="weird/")["KeyCount"] == 0


def test_multipart_with_transfer_manager(server, s3):
    data = os.urandom(20 * MiB)
    before = _requests(server)
    s3.upload_fileobj(io.BytesIO(data), server.bucket, "big.bin", ExtraArgs={"Metadata": {"mode": "33188"}},
                      Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                                            max_concurrency=2))
    after = _requests(server)
    assert after["InitiateMultipartUpload"] - before.get("InitiateMultipartUpload", 0) == 1
    assert after["UploadPart"] - before.get("UploadPart", 0) == 4
    assert after["CompleteMultipartUpload"] - before.get("CompleteMultipartUpload", 0) == 1
    head = s3.head_object(Bucket=server.bucket, Key="big.bin")
    md5s = b"".join(hashlib.md5(data[i:i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB))
    assert head["ETag"] == '"%s-4"' % hashlib.md5(md5s).hexdigest()
    assert head["Metadata"] == {"mode": "33188"} and head["ContentLength"] == len(data)
    out = io.BytesIO()
    s3.download_fileobj(server.bucket, "big.bin", out,
                        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert out.getvalue() == data


def test_multipart_low_level_parts_copy_list_abort(server, s3):
    src = os.urandom(300_000)
    s3.put_object(Bucket=server.bucket, Key="mp-src", Body=src)
    up = s3.create_multipart_upload(Bucket=server.bucket, Key="mp", ContentType="text/plain",
                                    Metadata={"mode": "33152"})["UploadId"]
    p1 = s3.upload_part(Bucket=server.bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"a" * 200_000)["ETag"]
    p2 = s3.upload_part_copy(Bucket=server.bucket, Key="mp", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": server.bucket, "Key": "mp-src"},
                             CopySourceRange="bytes=1000-150999")["CopyPartResult"]["ETag"]
    parts = s3.list_parts(Bucket=server.bucket, Key="mp", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 200_000), (2, 150_000)]
    ups = s3.list_multipart_uploads(Bucket=server.bucket, Prefix="mp")["Uploads"]
    assert [u["UploadId"] for u in ups] == [up]
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=server.bucket, Key="mp", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]})
    assert _code(ei) == "InvalidPart"
    s3.complete_multipart_upload(Bucket=server.bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
    got = s3.get_object(Bucket=server.bucket, Key="mp")
    assert got["Body"].read() == b"a" * 200_000 + src[1000:151000]
    assert got["Metadata"] == {"mode": "33152"} and got["ContentType"] == "text/plain"
    up2 = s3.create_multipart_upload(Bucket=server.bucket, Key="mp2")["UploadId"]
    s3.abort_multipart_upload(Bucket=server.bucket, Key="mp2", UploadId=up2)
    with pytest.raises(ClientError) as ei:
        s3.list_parts(Bucket=server.bucket, Key="mp2", UploadId=up2)
    assert (_code(ei), _status(ei)) == ("NoSuchUpload", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=server.bucket, Prefix="mp")
    counts = _requests(server)
    for op in ("UploadPartCopy", "ListParts", "ListMultipartUploads", "AbortMultipartUpload"):
        assert counts.get(op, 0) >= 1, op


# --------------------------------------------------------------------------- auth

def test_wrong_secret_and_unknown_key(server):
    bad = _client(server, secret="not-the-secret")
    with pytest.raises(ClientError) as ei:
        bad.list_objects_v2(Bucket=server.bucket)
    assert (_code(ei), _status(ei)) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as ei:
        bad.put_object(Bucket=server.bucket, Key="forged", Body=b"x")
    assert _code(ei) == "SignatureDoesNotMatch"
    unknown = _client(server, key_id="NOSUCHKEYID")
    with pytest.raises(ClientError) as ei:
        unknown.list_buckets()
    assert (_code(ei), _status(ei)) == ("InvalidAccessKeyId", 403)
    with pytest.raises(ClientError) as ei:
        _client(server).head_object(Bucket=server.bucket, Key="forged")
    assert _status(ei) == 404


def test_presigned_urls(server, s3):
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                      aws_access_key_id=server.access_key_id, aws_secret_access_key=server.access_key_secret,
                      config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
    s3.put_object(Bucket=server.bucket, Key="pre sign", Body=b"shared")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": server.bucket, "Key": "pre sign"},
                                    ExpiresIn=60)
    assert requests.get(url, timeout=10).content == b"shared"
    assert requests.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"), timeout=10).status_code == 403
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": server.bucket, "Key": "uploaded"},
                                        ExpiresIn=60)
    assert requests.put(put_url, data=b"via url", timeout=10).status_code == 200
    assert s3.get_object(Bucket=server.bucket, Key="uploaded")["Body"].read() == b"via url"


def test_signature_version_2_clients(server):
    """boto3's default presigned URLs and legacy clients still sign with V2."""
    v2 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                      aws_access_key_id=server.access_key_id, aws_secret_access_key=server.access_key_secret,
                      config=Config(s3={"addressing_style": "path"}, signature_version="s3"))
    v2.put_object(Bucket=server.bucket, Key="v2 key+x", Body=b"v2 body", Metadata={"mode": "33188"})
    assert v2.get_object(Bucket=server.bucket, Key="v2 key+x")["Metadata"] == {"mode": "33188"}
    assert [o["Key"] for o in v2.list_objects(Bucket=server.bucket, Prefix="v2 ")["Contents"]] == ["v2 key+x"]
    up = v2.create_multipart_upload(Bucket=server.bucket, Key="v2mp")["UploadId"]
    etag = v2.upload_part(Bucket=server.bucket, Key="v2mp", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    v2.complete_multipart_upload(Bucket=server.bucket, Key="v2mp", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert v2.get_object(Bucket=server.bucket, Key="v2mp")["Body"].read() == b"p"
    url = _client(server).generate_presigned_url("get_object", Params={"Bucket": server.bucket,
                                                                       "Key": "v2 key+x"}, ExpiresIn=60)
    assert "AWSAccessKeyId=" in url
    assert requests.get(url, timeout=10).content == b"v2 body"
    assert requests.get(url.replace("v2%20key", "v3%20key"), timeout=10).status_code == 403
    bad = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id=server.access_key_id, aws_secret_access_key="nope",
                       config=Config(s3={"addressing_style": "path"}, signature_version="s3",
                                     retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as ei:
        bad.list_objects(Bucket=server.bucket)
    assert _code(ei) == "SignatureDoesNotMatch"


# --------------------------------------------------------------------------- both faces

def test_metadata_and_etag_shared_with_oss_face(server, s3, oss):
    s3.put_object(Bucket=server.bucket, Key="from-s3", Body=b"written by s3",
                  Metadata={"mode": "33188", "uid": "1000"}, ContentType="text/plain")
    h = oss.head_object("from-s3")
    assert h.headers["x-oss-meta-mode"] == "33188" and h.headers["x-oss-meta-uid"] == "1000"
    assert h.headers["Content-Type"] == "text/plain"
    assert h.etag.lower() == hashlib.md5(b"written by s3").hexdigest()
    assert oss.get_object("from-s3").read() == b"written by s3"

    oss.put_object("from-oss", b"written by oss", headers={"x-oss-meta-mode": "16877",
                                                           "x-oss-meta-mtime": "1700000000.5"})
    r = s3.get_object(Bucket=server.bucket, Key="from-oss")
    assert r["Body"].read() == b"written by oss"
    assert r["Metadata"] == {"mode": "16877", "mtime": "1700000000.5"}
    assert r["ETag"].strip('"') == oss.head_object("from-oss").etag.lower()


# --------------------------------------------------------------------------- checksums

@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_flexible_checksums_from_boto3_are_accepted(server, s3, algorithm):
    body = os.urandom(300_000)
    s3.put_object(Bucket=server.bucket, Key="ck", Body=body, ChecksumAlgorithm=algorithm)
    assert s3.get_object(Bucket=server.bucket, Key="ck")["Body"].read() == body


def _put_with_headers(server, key, body, headers):
    url = "%s/%s/%s" % (server.endpoint, server.bucket, key)
    req = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    S3SigV4Auth(Credentials(server.access_key_id, server.access_key_secret), "s3", "us-east-1").add_auth(req)
    return requests.put(url, data=body, headers=dict(req.headers.items()), timeout=10)


def test_crc32c_checksum_header_known_answer(server, s3):
    # CRC-32C of "123456789" is the catalogue check value 0xE3069283 (botocore needs
    # the optional CRT package to compute it, so the header is written by hand).
    r = _put_with_headers(server, "crc32c", b"123456789", {"x-amz-checksum-crc32c": "4waSgw=="})
    assert r.status_code == 200, r.text
    r = _put_with_headers(server, "crc32c", b"123456780", {"x-amz-checksum-crc32c": "4waSgw=="})
    assert r.status_code == 400 and b"BadDigest" in r.content
    assert s3.get_object(Bucket=server.bucket, Key="crc32c")["Body"].read() == b"123456789"


def test_wrong_checksum_header_is_bad_digest_and_not_stored(server, s3):
    s3.put_object(Bucket=server.bucket, Key="ck2", Body=b"good")
    wrong = base64.b64encode((12345).to_bytes(4, "big")).decode()
    r = _put_with_headers(server, "ck2", b"evil" * 1000, {"x-amz-checksum-crc32": wrong})
    assert r.status_code == 400 and b"<Code>BadDigest</Code>" in r.content
    assert s3.get_object(Bucket=server.bucket, Key="ck2")["Body"].read() == b"good"


# --------------------------------------------------------------------------- faults

def test_injected_faults_apply_to_the_s3_face(oss_server):
    server, s3 = oss_server, _client(oss_server)
    data = os.urandom(2 * MiB)
    s3.put_object(Bucket=server.bucket, Key="slow", Body=data)
    try:
        server.set_faults(drop_rate=1.0)
        with pytest.raises(HTTPClientError):      # the connection is cut mid-body
            s3.put_object(Bucket=server.bucket, Key="dropped", Body=data)
        server.set_faults()
        with pytest.raises(ClientError) as ei:
            s3.head_object(Bucket=server.bucket, Key="dropped")
        assert _status(ei) == 404          # a cut upload never becomes an object
        server.set_faults(bandwidth=2 * MiB)
        start = time.monotonic()
        assert s3.get_object(Bucket=server.bucket, Key="slow")["Body"].read() == data
        assert time.monotonic() - start >= 0.8
    finally:
        server.set_faults()
