"""Listing (v1, v2, delimiter, url encoding, byte order) and multipart uploads via oss2."""
import hashlib
import os
import uuid

import oss2
import pytest
from oss2.utils import Crc64

from ossfs.server.store import multipart_etag


@pytest.fixture
def bucket(oss_server_session):
    return oss_server_session.oss_bucket()


@pytest.fixture
def prefix():
    return "lst-%s/" % uuid.uuid4().hex[:8]


def test_order_is_utf8_bytes(bucket, prefix):
    keys = ["a", "Z", "\u00e9", "\U0001f600", "\uff21", "a/b", "a0", "\u4e2d\u6587", "~"]
    for k in keys:
        bucket.put_object(prefix + k, b"x")
    got = [o.key for o in oss2.ObjectIterator(bucket, prefix=prefix)]
    expected = sorted((prefix + k for k in keys), key=lambda s: s.encode("utf-8"))
    assert got == expected
    # UTF-16 order (Java, JavaScript) differs for astral characters: bytes order is what OSS uses
    assert expected != sorted((prefix + k for k in keys), key=lambda s: s.encode("utf-16-be"))
    got2 = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix=prefix)]
    assert got2 == expected


def test_encoding_type_url_with_odd_keys(bucket, prefix):
    odd = ["sp ace", "plus+sign", "per%cent", "hash#", "quest?ion", "new\nline", "amp&lt;", "tab\tx",
           "dir one/child"]
    for k in odd:
        bucket.put_object(prefix + k, b"odd")
    r = bucket.list_objects(prefix=prefix, delimiter="/", max_keys=1000)   # oss2 asks encoding-type=url
    assert sorted(o.key for o in r.object_list) == sorted(prefix + k for k in odd if "/" not in k)
    assert r.prefix_list == [prefix + "dir one/"]
    r2 = bucket.list_objects_v2(prefix=prefix, max_keys=1000)
    assert sorted(o.key for o in r2.object_list) == sorted(prefix + k for k in odd)
    for k in odd:
        assert bucket.get_object(prefix + k).read() == b"odd"
    # deleting them in one batch, verbose, with encoding-type=url
    res = bucket.batch_delete_objects([prefix + k for k in odd])
    assert sorted(res.deleted_keys) == sorted(prefix + k for k in odd)
    assert list(oss2.ObjectIterator(bucket, prefix=prefix)) == []


def test_raw_listing_with_and_without_encoding(oss_server_session, prefix):
    s = oss_server_session
    s.oss_bucket().put_object(prefix + "a b&c", b"1")
    r = s.signed_request("GET", s.bucket, params={"prefix": prefix})
    assert r.status_code == 200
    assert "<Key>%sa b&amp;c</Key>" % prefix in r.text
    assert "<MaxKeys>100</MaxKeys>" in r.text
    r = s.signed_request("GET", s.bucket, params={"prefix": prefix, "encoding-type": "url"})
    assert "<EncodingType>url</EncodingType>" in r.text and "a%20b%26c</Key>" in r.text
    r = s.signed_request("GET", s.bucket, params={"max-keys": "1001"})
    assert r.status_code == 400
    r = s.signed_request("GET", s.bucket, params={"list-type": "2", "prefix": prefix, "fetch-owner": "true"})
    assert "<Owner>" in r.text and "<KeyCount>1</KeyCount>" in r.text


def test_2500_keys_paginated_v1_v2_with_delimiter(tmp_path):
    """2500 keys listed through the server; they are written with the server's own Store
    before it starts (2500 signed PUTs through oss2 would dominate the suite's run time)."""
    import io

    from conftest import OssServer
    from ossfs.server.store import Store
    prefix = "big/"
    keys = ["%sd%02d/f%04d" % (prefix, i % 25, i) for i in range(2400)] + \
           ["%sfile%03d" % (prefix, i) for i in range(100)]
    data_dir = str(tmp_path / "data")
    store = Store(data_dir)
    store.create_bucket("ossfs-test")
    for k in keys:
        store.put_object("ossfs-test", k, io.BytesIO(b""), 0)
    store.close()
    s = OssServer(data_dir)
    try:
        s.start()
        _check_2500(s, prefix, keys)
    finally:
        s.stop()


def _check_2500(s, prefix, keys):
    b = s.oss_bucket()
    want = sorted(keys, key=lambda k: k.encode())
    assert [o.key for o in oss2.ObjectIterator(b, prefix=prefix, max_keys=1000)] == want
    assert [o.key for o in oss2.ObjectIteratorV2(b, prefix=prefix, max_keys=333)] == want
    # pages of 100 by default
    r = b.list_objects(prefix=prefix)
    assert len(r.object_list) == 100 and r.is_truncated
    # with a delimiter: 25 directories, 100 files, across pages of 7
    seen_keys, seen_prefixes, pages = [], [], 0
    marker = ""
    while True:
        r = b.list_objects(prefix=prefix, delimiter="/", marker=marker, max_keys=7)
        pages += 1
        assert len(r.object_list) + len(r.prefix_list) <= 7
        seen_keys += [o.key for o in r.object_list]
        seen_prefixes += r.prefix_list
        if not r.is_truncated:
            break
        marker = r.next_marker
    assert seen_prefixes == ["%sd%02d/" % (prefix, i) for i in range(25)]
    assert seen_keys == ["%sfile%03d" % (prefix, i) for i in range(100)]
    assert pages == 18
    v2 = list(oss2.ObjectIteratorV2(b, prefix=prefix, delimiter="/", max_keys=9))
    assert [o.key for o in v2] == seen_prefixes + seen_keys
    r = b.list_objects_v2(prefix=prefix, delimiter="/", start_after=prefix + "d24/", max_keys=1000)
    assert r.prefix_list == [] and len(r.object_list) == 100
    r = b.list_objects_v2(prefix=prefix + "d03/", max_keys=1000)
    assert len(r.object_list) == 96 and not r.is_truncated


MIN = 100 * 1024


def crc64(data):
    c = Crc64()
    c.update(data)
    return c.crc


def test_multipart_upload_complete(bucket, prefix):
    key = prefix + "mp"
    parts_data = [os.urandom(MIN + 1), os.urandom(MIN), os.urandom(1234)]
    up = bucket.init_multipart_upload(key, headers={"x-oss-meta-mode": "33188", "Content-Type": "text/x-mp"})
    parts = []
    for i, d in enumerate(parts_data, 1):
        r = bucket.upload_part(key, up.upload_id, i, d)
        assert r.crc == crc64(d)
        parts.append(oss2.models.PartInfo(i, r.etag, size=len(d), part_crc=r.crc))
    listed = bucket.list_parts(key, up.upload_id)
    assert [(p.part_number, p.etag, p.size) for p in listed.parts] == [(p.part_number, p.etag, p.size) for p in parts]
    ups = bucket.list_multipart_uploads(prefix=prefix)
    assert [(u.key, u.upload_id) for u in ups.upload_list] == [(key, up.upload_id)]
    res = bucket.complete_multipart_upload(key, up.upload_id, parts)
    whole = b"".join(parts_data)
    assert res.crc == crc64(whole)   # oss2 also compared it with the combined part CRCs
    assert res.etag == multipart_etag([hashlib.md5(d).hexdigest().upper() for d in parts_data])
    assert res.etag.endswith("-3")
    g = bucket.get_object(key)
    assert g.read() == whole
    assert g.headers["x-oss-meta-mode"] == "33188" and g.headers["Content-Type"] == "text/x-mp"
    assert g.headers["x-oss-object-type"] == "Multipart"
    assert bucket.list_multipart_uploads(prefix=prefix).upload_list == []
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part(key, up.upload_id, 4, b"late")


def test_multipart_errors(oss_server_session, bucket, prefix):
    key = prefix + "mperr"
    up = bucket.init_multipart_upload(key)
    r1 = bucket.upload_part(key, up.upload_id, 1, b"small")
    r2 = bucket.upload_part(key, up.upload_id, 2, b"x" * MIN)
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.complete_multipart_upload(key, up.upload_id, [oss2.models.PartInfo(1, r1.etag),
                                                             oss2.models.PartInfo(2, r2.etag)])
    assert e.value.code == "EntityTooSmall" and e.value.status == 400
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.complete_multipart_upload(key, up.upload_id, [oss2.models.PartInfo(1, "0" * 32)])
    assert e.value.code == "InvalidPart"
    # oss2 sorts the parts itself: send a descending list by hand
    body = ("<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>\"%s\"</ETag></Part>"
            "<Part><PartNumber>1</PartNumber><ETag>\"%s\"</ETag></Part></CompleteMultipartUpload>"
            % (r2.etag, r1.etag)).encode()
    r = oss_server_session.signed_request("POST", oss_server_session.bucket, key,
                                          params={"uploadId": up.upload_id}, data=body)
    assert r.status_code == 400 and "<Code>InvalidPartOrder</Code>" in r.text
    bad_md5 = "AAAAAAAAAAAAAAAAAAAAAA=="
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.upload_part(key, up.upload_id, 3, b"data", headers={"Content-MD5": bad_md5})
    assert e.value.code == "InvalidDigest"
    # a single small part is fine (the last part may be small)
    res = bucket.complete_multipart_upload(key, up.upload_id, [oss2.models.PartInfo(1, r1.etag)])
    assert bucket.get_object(key).read() == b"small" and res.etag.endswith("-1")
    up2 = bucket.init_multipart_upload(key)
    bucket.abort_multipart_upload(key, up2.upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts(key, up2.upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.abort_multipart_upload(key, "NOSUCHUPLOADID")


def test_upload_part_copy_and_complete_all(bucket, prefix):
    src = prefix + "copysrc"
    data = os.urandom(3 * MIN)
    bucket.put_object(src, data)
    key = prefix + "copied"
    up = bucket.init_multipart_upload(key)
    r1 = bucket.upload_part_copy(bucket.bucket_name, src, (0, MIN), key, up.upload_id, 1)
    r2 = bucket.upload_part_copy(bucket.bucket_name, src, (MIN + 1, 3 * MIN - 1), key, up.upload_id, 2)
    assert r1.etag == hashlib.md5(data[:MIN + 1]).hexdigest().upper()
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bucket.upload_part_copy(bucket.bucket_name, src, (3 * MIN, 3 * MIN + 10), key, up.upload_id, 3)
    assert e.value.status == 416
    bucket.complete_multipart_upload(key, up.upload_id, None, headers={"x-oss-complete-all": "yes"})
    assert bucket.get_object(key).read() == data
    assert r2.etag


def test_resumable_upload_and_download_with_crc(bucket, prefix, tmp_path):
    data = os.urandom(3 * MIN + 17)
    path = tmp_path / "src"
    path.write_bytes(data)
    oss2.resumable_upload(bucket, prefix + "resumable", str(path), multipart_threshold=MIN,
                          part_size=MIN, num_threads=3, store=oss2.ResumableStore(root=str(tmp_path)))
    out = tmp_path / "out"
    oss2.resumable_download(bucket, prefix + "resumable", str(out), multiget_threshold=MIN, part_size=MIN,
                            num_threads=3, store=oss2.ResumableDownloadStore(root=str(tmp_path)))
    assert out.read_bytes() == data
    assert bucket.head_object(prefix + "resumable").headers["x-oss-hash-crc64ecma"] == str(crc64(data))
