"""OSS object calls against a real ossfs-server subprocess through the real oss2 SDK."""
import base64
import hashlib
import os
import time
import uuid

import oss2
import pytest
from oss2.utils import Crc64


@pytest.fixture
def bucket(oss_server_session):
    return oss_server_session.oss_bucket()


@pytest.fixture
def prefix():
    return "obj-%s/" % uuid.uuid4().hex[:8]


def crc64(data):
    c = Crc64()
    c.update(data)
    return c.crc


def test_put_get_head_delete_roundtrip_with_metadata(bucket, prefix):
    key = prefix + "file.bin"
    data = os.urandom(300_000)
    r = bucket.put_object(key, data, headers={
        "x-oss-meta-Mode": "33188", "x-oss-meta-uid": "1000", "Content-Type": "text/plain",
        "Cache-Control": "no-cache", "Content-Disposition": "attachment", "Content-Language": "en",
        "Content-Encoding": "identity", "Expires": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert r.etag == hashlib.md5(data).hexdigest().upper()
    assert r.crc == crc64(data)
    g = bucket.get_object(key)
    assert g.read() == data
    assert g.headers["x-oss-meta-mode"] == "33188"
    assert g.headers["x-oss-meta-uid"] == "1000"
    assert g.headers["Content-Type"] == "text/plain"
    assert g.headers["Cache-Control"] == "no-cache"
    assert g.headers["Content-Disposition"] == "attachment"
    assert g.headers["Content-Language"] == "en"
    assert g.headers["Expires"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert g.headers["x-oss-object-type"] == "Normal"
    assert g.headers["Accept-Ranges"] == "bytes"
    assert g.headers["x-oss-request-id"]
    h = bucket.head_object(key)
    assert h.content_length == len(data)
    assert h.etag == r.etag
    assert h.headers["x-oss-hash-crc64ecma"] == str(crc64(data))
    assert abs(h.last_modified - time.time()) < 60
    meta = bucket.get_object_meta(key)
    assert meta.etag == r.etag and meta.content_length == len(data)
    bucket.delete_object(key)
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object(key)
    with pytest.raises(oss2.exceptions.NotFound) as e:
        bucket.head_object(key)
    assert e.value.status == 404 and e.value.request_id
    bucket.delete_object(key)   # deleting a missing key is not an error


def test_default_content_type_and_empty_object(bucket, prefix):
    import requests
    key = prefix + "noext"
    bucket.put_object(key, b"")
    h = bucket.head_object(key)
    assert h.content_length == 0
    assert h.content_type == "application/octet-stream"
    assert bucket.get_object(key).read() == b""
    assert h.etag == hashlib.md5(b"").hexdigest().upper()


def test_ranges(bucket, prefix):
    key = prefix + "range"
    data = bytes(range(256)) * 40
    bucket.put_object(key, data)
    assert bucket.get_object(key, byte_range=(10, 19)).read() == data[10:20]
    r = bucket.get_object(key, byte_range=(10, None))
    assert r.read() == data[10:]
    assert r.status == 206
    assert bucket.get_object(key, byte_range=(None, 7)).read() == data[-7:]
    assert bucket.get_object(key, byte_range=(10000, 20000)).read() == data[10000:]
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.get_object(key, byte_range=(len(data), len(data) + 5))
    assert e.value.status == 416 and e.value.code == "InvalidRange"
    # a malformed range is ignored: the whole object, 200
    r = bucket.get_object(key, headers={"Range": "bytes=abc"})
    assert r.status == 200 and r.read() == data


def test_conditional_get(bucket, prefix):
    key = prefix + "cond"
    r = bucket.put_object(key, b"conditional")
    etag = '"%s"' % r.etag
    assert bucket.get_object(key, headers={"If-Match": etag}).read() == b"conditional"
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.get_object(key, headers={"If-Match": '"0000"'})
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.get_object(key, headers={"If-None-Match": etag})
    future = oss2.utils.http_date(int(time.time()) + 3600)
    past = oss2.utils.http_date(int(time.time()) - 3600)
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.get_object(key, headers={"If-Modified-Since": future})
    assert bucket.get_object(key, headers={"If-Modified-Since": past}).read() == b"conditional"
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.get_object(key, headers={"If-Unmodified-Since": past})
    assert bucket.get_object(key, headers={"If-Unmodified-Since": future}).read() == b"conditional"


def test_content_md5_checked(bucket, prefix):
    key = prefix + "md5"
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    bucket.put_object(key, b"payload", headers={"Content-MD5": good})
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_object(key + "2", b"payload", headers={"Content-MD5": bad})
    assert e.value.status == 400 and e.value.code == "InvalidDigest"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object(key + "2")
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.append_object(key + "3", 0, b"payload", headers={"Content-MD5": bad})
    assert e.value.code == "InvalidDigest"


def test_copy_object_directives_and_conditions(bucket, prefix):
    src = prefix + "src"
    r = bucket.put_object(src, b"copy me", headers={"x-oss-meta-a": "1", "Content-Type": "text/x-a"})
    bucket.copy_object(bucket.bucket_name, src, prefix + "dst")
    h = bucket.head_object(prefix + "dst")
    assert h.headers["x-oss-meta-a"] == "1" and h.content_type == "text/x-a" and h.etag == r.etag
    bucket.copy_object(bucket.bucket_name, src, prefix + "dst2",
                       headers={"x-oss-metadata-directive": "REPLACE", "x-oss-meta-b": "2",
                                "Content-Type": "text/x-b"})
    h = bucket.head_object(prefix + "dst2")
    assert "x-oss-meta-a" not in h.headers and h.headers["x-oss-meta-b"] == "2"
    assert h.content_type == "text/x-b"
    assert bucket.get_object(prefix + "dst2").read() == b"copy me"
    # metadata update in place: copy onto itself with REPLACE
    bucket.update_object_meta(src, {"x-oss-meta-mode": "33261"})
    assert bucket.head_object(src).headers["x-oss-meta-mode"] == "33261"
    assert bucket.get_object(src).read() == b"copy me"
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.copy_object(bucket.bucket_name, src, prefix + "dst3",
                           headers={"x-oss-copy-source-if-match": '"0123"'})
    bucket.copy_object(bucket.bucket_name, src, prefix + "dst3",
                       headers={"x-oss-copy-source-if-match": '"%s"' % r.etag})
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.copy_object(bucket.bucket_name, src, prefix + "dst4",
                           headers={"x-oss-copy-source-if-none-match": '"%s"' % r.etag})
    past = oss2.utils.http_date(int(time.time()) - 3600)
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.copy_object(bucket.bucket_name, src, prefix + "dst4",
                           headers={"x-oss-copy-source-if-unmodified-since": past})
    bucket.copy_object(bucket.bucket_name, src, prefix + "dst4",
                       headers={"x-oss-copy-source-if-modified-since": past})
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.copy_object(bucket.bucket_name, prefix + "missing", prefix + "dst5")
    # keys needing URL-encoding in x-oss-copy-source
    odd = prefix + "sp ace+%#?\u00e9"
    bucket.put_object(odd, b"odd")
    bucket.copy_object(bucket.bucket_name, odd, prefix + "odd-copy")
    assert bucket.get_object(prefix + "odd-copy").read() == b"odd"


def test_append_object(bucket, prefix):
    key = prefix + "append"
    r1 = bucket.append_object(key, 0, b"hello ")
    assert r1.next_position == 6
    assert r1.crc == crc64(b"hello ")
    r2 = bucket.append_object(key, 6, b"world", init_crc=r1.crc)
    assert r2.next_position == 11 and r2.crc == crc64(b"hello world")
    assert bucket.get_object(key).read() == b"hello world"
    h = bucket.head_object(key)
    assert h.object_type == "Appendable"
    assert h.headers["x-oss-next-append-position"] == "11"
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as e:
        bucket.append_object(key, 3, b"x")
    assert e.value.status == 409 and e.value.next_position == 11
    bucket.put_object(prefix + "normal", b"n")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        bucket.append_object(prefix + "normal", 1, b"x")


def test_symlink(bucket, prefix):
    bucket.put_object(prefix + "target", b"pointed at", headers={"x-oss-meta-k": "v"})
    bucket.put_symlink(prefix + "target", prefix + "link", headers={"x-oss-meta-l": "1"})
    res = bucket.get_symlink(prefix + "link")
    assert res.target_key == prefix + "target"
    assert bucket.get_object(prefix + "link").read() == b"pointed at"
    assert bucket.head_object(prefix + "link").content_length == len(b"pointed at")
    bucket.put_symlink("dangling/\u00e9 x", prefix + "dangling")
    assert bucket.get_symlink(prefix + "dangling").target_key == "dangling/\u00e9 x"
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.get_object(prefix + "dangling")
    assert e.value.status == 404 and e.value.code == "SymlinkTargetNotExist"
    with pytest.raises(oss2.exceptions.ServerError):
        bucket.get_symlink(prefix + "target")


def test_object_name_rules_and_no_escape(oss_server_session, bucket):
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_object("x" * 1024, b"too long")
    assert e.value.code == "InvalidObjectName"
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.put_object("\\leading-backslash", b"x")
    assert e.value.code == "InvalidObjectName"
    bucket.put_object("x" * 1023, b"longest")
    data_dir = oss_server_session.data_dir
    parent = os.path.dirname(data_dir)
    before = set(os.listdir(parent))
    for key in ("../../etc/x", "../outside", "a/../../b", "./."):
        bucket.put_object(key, b"inside")
        assert bucket.get_object(key).read() == b"inside"
    assert set(os.listdir(parent)) == before
    assert not os.path.exists("/etc/x")
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            assert ".." not in name and "etc" != name


def test_crc_checked_by_oss2_detects_corruption(oss_server, monkeypatch):
    """oss2 really compares x-oss-hash-crc64ecma: a wrong header makes it fail."""
    b = oss_server.oss_bucket()
    b.put_object("crc", b"checked")
    b.get_object("crc").read()   # passes with the server's real CRC
    # whatever class oss2 uses now (ossfs.store_oss may have swapped in a faster one)
    crc_class = oss2.utils.Crc64
    orig = crc_class.update

    def corrupt(self, data):
        orig(self, data + b"!")
    monkeypatch.setattr(crc_class, "update", corrupt)
    with pytest.raises(oss2.exceptions.InconsistentError):
        b.put_object("crc2", b"checked")


def test_buckets(oss_server):
    svc = oss_server.oss_service()
    names = [b.name for b in oss2.BucketIterator(svc)]
    assert names == [oss_server.bucket]
    nb = oss_server.oss_bucket("second-bucket")
    nb.create_bucket()
    with pytest.raises(oss2.exceptions.ServerError) as e:
        nb.create_bucket()
    assert e.value.status == 409 and e.value.code == "BucketAlreadyExists"
    assert sorted(b.name for b in oss2.BucketIterator(svc)) == ["ossfs-test", "second-bucket"]
    info = nb.get_bucket_info()
    assert info.name == "second-bucket" and info.location
    assert nb.get_bucket_location().location == "oss-cn-hangzhou"
    nb.put_object("k", b"v")
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        nb.delete_bucket()
    nb.delete_object("k")
    nb.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nb.get_bucket_info()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nb.put_object("k", b"v")
    # oss2 refuses bad names itself, so send the request by hand
    for bad in ("Bad_Name", "ab", "-abc", "abc-", "a" * 64):
        r = oss_server.signed_request("PUT", bad)
        assert r.status_code == 400, bad
        assert "<Code>InvalidBucketName</Code>" in r.text
    r = oss_server.signed_request("PUT", "good-name-123")
    assert r.status_code == 200 and r.headers["x-oss-request-id"]


def test_virtual_host_style(oss_server):
    """``Host: <bucket>.localhost:PORT`` selects the bucket from the host name."""
    b = oss_server.oss_bucket()
    b.put_object("dir/vh", b"virtual")
    r = oss_server.signed_request("GET", oss_server.bucket, "dir/vh", virtual_host=True)
    assert r.status_code == 200 and r.content == b"virtual"
    r = oss_server.signed_request("PUT", oss_server.bucket, "vh2", data=b"by host", virtual_host=True)
    assert r.status_code == 200
    assert b.get_object("vh2").read() == b"by host"
    # oss2 uses path style for an IP endpoint (how every test connects)
    assert b._make_url(oss_server.bucket, "k") == "%s/%s/k" % (oss_server.endpoint, oss_server.bucket)
