"""The ObjectStore contract: one suite that every store passes.

Parametrized over ``MemoryStore`` (the in-memory fake the filesystem core is tested
on) and ``OssStore`` talking to a real ``ossfs-server`` over loopback with the oss2 SDK.
Each OSS test works under its own fresh key prefix of one shared server, which also
exercises the mount-prefix handling on every call; ``test_prefix_mount_*`` checks the
prefix against the raw bucket.
"""
from __future__ import annotations

import hashlib
import io
import re
import uuid

import pytest

from ossfs.errors import NotFound, PreconditionFailed, StoreError
from ossfs.store import ListPage, ObjectInfo, PartInfo

KiB = 1024
PART = 100 * KiB  # the smallest non-last part OSS accepts
HEX32 = re.compile(r"^[0-9A-F]{32}$")
MULTIPART_ETAG = re.compile(r"^[0-9A-F]{32}-(\d+)$")


def md5_upper(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


def make_oss_store(server, prefix="", **kw):
    from ossfs.store_oss import OssStore
    kw.setdefault("retries", 2)
    return OssStore(server.endpoint, server.bucket, (server.access_key_id, server.access_key_secret),
                    prefix=prefix, **kw)


@pytest.fixture(params=["memory", "oss"])
def store(request):
    if request.param == "memory":
        from ossfs.store_mem import MemoryStore
        return MemoryStore(bucket="b")
    server = request.getfixturevalue("oss_server_session")
    return make_oss_store(server, prefix="contract-%s/" % uuid.uuid4().hex[:12])


def all_pages(store, prefix, delimiter="/", max_keys=1000):
    objects, prefixes, pages = [], [], 0
    token = None
    while True:
        page = store.list(prefix, delimiter=delimiter, token=token, max_keys=max_keys)
        assert isinstance(page, ListPage)
        pages += 1
        assert len(page.objects) + len(page.prefixes) <= max_keys
        objects += [o.key for o in page.objects]
        prefixes += page.prefixes
        for o in page.objects:
            assert o.meta is None  # LIST carries no user metadata
        token = page.next_token
        if token is None:
            return objects, prefixes, pages
        assert pages < 100


# --------------------------------------------------------------------------- objects

def test_put_head_round_trip_meta_and_etag(store):
    body = b"hello world\n"
    info = store.put("dir/file", body, meta={"mode": "33188", "uid": "1000", "Mtime": "1700000000"},
                     content_type="text/plain")
    assert isinstance(info, ObjectInfo)
    assert info.key == "dir/file" and info.size == len(body)
    assert info.etag == md5_upper(body) and HEX32.match(info.etag)
    head = store.head("dir/file")
    assert head.key == "dir/file"
    assert head.size == len(body)
    assert head.etag == info.etag
    assert head.content_type == "text/plain"
    # names lower-case, without the x-oss-meta- prefix
    assert head.meta == {"mode": "33188", "uid": "1000", "mtime": "1700000000"}
    assert head.last_modified > 1.6e9
    assert head.object_type == "Normal"


def test_put_file_object_and_empty_body(store):
    data = bytes(range(256)) * 1000
    f = io.BytesIO(b"skipped" + data)
    f.seek(7)  # the body is what follows the current position
    info = store.put("blob", f)
    assert info.size == len(data) and info.etag == md5_upper(data)
    assert store.get_range("blob", 0, len(data) + 10) == data
    empty = store.put("empty", b"")
    assert empty.size == 0 and empty.etag == md5_upper(b"")
    assert store.head("empty").size == 0
    assert store.get_range("empty", 0, 10) == b""


def test_head_and_get_missing_raise_not_found(store):
    with pytest.raises(NotFound):
        store.head("no/such/key")
    with pytest.raises(NotFound):
        store.get_range("no/such/key", 0, 1)
    with pytest.raises(NotFound):
        store.get_to_file("no/such/key", io.BytesIO())


def test_get_range_bounds(store):
    data = b"0123456789" * 10
    store.put("r", data)
    assert store.get_range("r", 0, 10) == data[:10]
    assert store.get_range("r", 37, 5) == data[37:42]
    assert store.get_range("r", 95, 50) == data[95:]  # fewer at the end
    assert store.get_range("r", 100, 10) == b""  # at the end: nothing
    assert store.get_range("r", 3, 0) == b""


def test_get_first_answers_like_head_with_the_first_bytes(store):
    data = hashlib.sha256(b"y").digest() * 4000  # 128000 bytes
    store.put("big", data, meta={"mode": "33188", "uid": "7"}, content_type="text/plain")
    store.put("small", b"tiny", meta={"gid": "9"})
    store.put("empty", b"", meta={"mode": "33261"})
    for key, want, n in (("big", data[:1000], 1000), ("small", b"tiny", 1000), ("empty", b"", 1000),
                         ("big", data, len(data)), ("big", data, len(data) + 1)):
        info, got = store.get_first(key, n)
        assert got == want, key
        head = store.head(key)
        assert (info.key, info.size, info.etag, info.last_modified, info.content_type, info.meta) == \
            (head.key, head.size, head.etag, head.last_modified, head.content_type, head.meta), key
    with pytest.raises(NotFound):
        store.get_first("no/such/key", 10)


def test_get_first_checks_the_crc_of_a_whole_object(oss_server_session, monkeypatch):
    """A small object that arrives whole is checked against x-oss-hash-crc64ecma."""
    import oss2
    from ossfs.errors import IntegrityError
    store = make_oss_store(oss_server_session, prefix="contract-%s/" % uuid.uuid4().hex[:12], retries=1)
    store.put("whole", b"checked bytes")
    assert store.get_first("whole", 1000)[1] == b"checked bytes"
    crc_class = oss2.utils.Crc64
    orig = crc_class.update
    monkeypatch.setattr(crc_class, "update", lambda self, data: orig(self, data + b"!"))
    with pytest.raises(IntegrityError):
        store.get_first("whole", 1000)
    assert store.get_first("whole", 4)[1] == b"chec"  # a part of an object has no CRC to check


def test_get_to_file_writes_at_current_position(store):
    data = hashlib.sha256(b"x").digest() * 5000  # 160000 bytes
    store.put("g", data)
    out = io.BytesIO()
    out.write(b"HEAD")
    n = store.get_to_file("g", out)
    assert n == len(data)
    assert out.getvalue() == b"HEAD" + data
    part = io.BytesIO()
    assert store.get_to_file("g", part, start=1000, length=5000) == 5000
    assert part.getvalue() == data[1000:6000]
    tail = io.BytesIO()
    assert store.get_to_file("g", tail, start=len(data) - 10) == 10
    assert tail.getvalue() == data[-10:]


def test_if_match_preconditions(store):
    info = store.put("p", b"version 1")
    assert store.get_range("p", 0, 100, if_match=info.etag) == b"version 1"
    store.put("p", b"version 2")
    with pytest.raises(PreconditionFailed):
        store.get_range("p", 0, 100, if_match=info.etag)
    with pytest.raises(PreconditionFailed):
        store.get_to_file("p", io.BytesIO(), if_match=info.etag)
    with pytest.raises(PreconditionFailed):
        store.copy("p", "p2", if_match=info.etag)
    with pytest.raises(NotFound):
        store.head("p2")


def test_put_if_match(store):
    first = store.put("pm", b"one")
    second = store.put("pm", b"two", if_match=first.etag)
    assert store.get_range("pm", 0, 10) == b"two"
    with pytest.raises(PreconditionFailed):
        store.put("pm", b"three", if_match=first.etag)
    assert store.head("pm").etag == second.etag


def test_copy_keeps_or_replaces_meta(store):
    body = b"payload" * 100
    src = store.put("src", body, meta={"mode": "33188", "uid": "7"}, content_type="text/plain")
    kept = store.copy("src", "dst-copy")
    assert kept.key == "dst-copy" and kept.size == len(body) and kept.etag == src.etag
    head = store.head("dst-copy")
    assert head.meta == {"mode": "33188", "uid": "7"}
    assert head.content_type == "text/plain"
    assert store.get_range("dst-copy", 0, len(body)) == body

    replaced = store.copy("src", "dst-replace", meta={"mode": "33261"}, content_type="application/x-sh",
                          if_match=src.etag)
    assert replaced.size == len(body)
    head = store.head("dst-replace")
    assert head.meta == {"mode": "33261"}
    assert head.content_type == "application/x-sh"
    assert store.get_range("dst-replace", 0, len(body)) == body

    # metadata update in place: copy onto itself with REPLACE
    store.copy("src", "src", meta={"mode": "33279", "ctime": "1700000001"}, content_type="text/plain")
    assert store.head("src").meta == {"mode": "33279", "ctime": "1700000001"}
    assert store.get_range("src", 0, len(body)) == body

    with pytest.raises(NotFound):
        store.copy("missing", "x")


def test_copy_with_a_known_source(store):
    """``source=`` (what a LIST or HEAD told) gives the same copies; a source that
    changed since is copied as it is now, unless ``if_match`` pins it."""
    old = store.put("ks", b"one" * 50, meta={"mode": "33188"}, content_type="text/plain")
    listed = next(o for o in store.list("", delimiter="/").objects if o.key == "ks")
    kept = store.copy("ks", "ks-kept", source=listed)
    assert kept.etag == old.etag and kept.size == 150
    head = store.head("ks-kept")
    assert head.meta == {"mode": "33188"} and head.content_type == "text/plain"
    replaced = store.copy("ks", "ks", meta={"mode": "33261"}, content_type="text/plain", if_match=old.etag,
                          source=store.head("ks"))
    assert replaced.meta == {"mode": "33261"} and store.head("ks").meta == {"mode": "33261"}

    new = store.put("ks", b"two" * 70, meta={"mode": "33152"})
    moved = store.copy("ks", "ks-moved", source=listed)          # listed is stale now
    assert moved.etag == new.etag and moved.size == 210
    assert store.get_range("ks-moved", 0, 210) == b"two" * 70 and store.head("ks-moved").meta == {"mode": "33152"}
    with pytest.raises(PreconditionFailed):
        store.copy("ks", "ks-pinned", meta={"mode": "1"}, if_match=old.etag, source=listed)
    store.delete("ks")
    with pytest.raises(NotFound):
        store.copy("ks", "ks-gone", source=listed)


def test_copy_with_a_known_source_sends_no_head(oss_server_session):
    """The OSS store skips its HEAD when it is told the source; a copy that replaces
    the headers, or is made in parts, still asks for them when the source came from a
    LIST (which carries neither user metadata nor the standard headers to keep)."""
    store = make_oss_store(oss_server_session, prefix="copysrc-%s/" % uuid.uuid4().hex[:8],
                           copy_limit=200 * 1024, copy_part_size=100 * 1024)
    body = bytes(range(256)) * 1000      # 256,000 bytes: above copy_limit
    store.put("small", b"s" * 10, meta={"mode": "33188"})
    store.put("big", body, meta={"mode": "33261"})
    listing = {o.key: o for o in store.list("", delimiter="/").objects}

    def heads():
        return oss_server_session.stats()["requests"].get("HeadObject", 0)

    known = {k: store.head(k) for k in ("small", "big")}
    before = heads()
    store.copy("small", "small-2", source=listing["small"])
    store.copy("small", "small", meta={"mode": "33152"}, if_match=known["small"].etag, source=known["small"])
    store.copy("big", "big-replaced", meta={"mode": "33279"}, source=known["big"])
    assert heads() == before
    relisted = {o.key: o for o in store.list("", delimiter="/").objects}
    before = heads()
    store.copy("small-2", "small-2", meta={"mode": "33261"}, source=relisted["small-2"])  # headers unknown: HEAD
    assert heads() == before + 1 and store.head("small-2").meta == {"mode": "33261"}
    store.copy("small-2", "small-2", meta={"mode": "33188"}, source=store.head("small-2"))  # back, for below
    assert store.head("small-2").meta == {"mode": "33188"}
    assert store.get_range("big-replaced", 0, len(body)) == body
    before = heads()
    store.copy("big", "big-kept", source=listing["big"])       # headers unknown: HEAD
    assert heads() == before + 1
    assert store.head("big-kept").meta == {"mode": "33261"}
    assert store.get_range("big-kept", 0, len(body)) == body


def test_header_rewrites_and_copies_in_parts_keep_the_standard_headers(oss_server_session):
    """Cache-Control, Content-Encoding, Content-Disposition, Content-Language and
    Expires, set by another tool, survive a copy that replaces the headers (chmod,
    chown, touch, setxattr) and a copy in parts (a large rename): OSS drops them
    there unless they are sent again."""
    prefix = "kept-%s/" % uuid.uuid4().hex[:8]
    store = make_oss_store(oss_server_session, prefix=prefix, copy_limit=200 * KiB, copy_part_size=PART)
    bucket = oss_server_session.oss_bucket()
    kept = {"Cache-Control": "max-age=60", "Content-Encoding": "gzip", "Content-Language": "de",
            "Content-Disposition": 'attachment; filename="a.gz"', "Expires": "Wed, 21 Oct 2026 07:28:00 GMT"}
    want = {k.lower(): v for k, v in kept.items()}
    for name, size in (("small", 10), ("big", 256000)):            # big: above copy_limit
        bucket.put_object(prefix + name, b"z" * size, headers=dict(kept, **{"x-oss-meta-mode": "33188"}))
    listing = {o.key: o for o in store.list("", delimiter="/").objects}
    for name in ("small", "big"):
        assert listing[name].headers is None                       # a LIST does not tell
        head = store.head(name)
        assert head.headers == want
        store.copy(name, name, meta={"mode": "33261"}, source=listing[name])   # asks for them first
        assert store.head(name).headers == want and store.head(name).meta == {"mode": "33261"}
        info = store.copy(name, name, meta={"mode": "33152"}, source=store.head(name))
        assert info.headers == want and store.head(name).headers == want
        store.copy(name, name + "-moved", source=store.head(name))            # kept as they are
        moved = store.head(name + "-moved")
        assert moved.headers == want and moved.meta == {"mode": "33152"}
        assert store.get_range(name + "-moved", 0, 300000) == b"z" * head.size


def test_delete_and_delete_many(store):
    for i in range(12):
        store.put("del/%02d" % i, b"x")
    store.delete("del/00")
    store.delete("del/00")  # missing: not an error
    with pytest.raises(NotFound):
        store.head("del/00")
    store.delete_many(["del/%02d" % i for i in range(1, 10)] + ["del/never-existed"])
    objects, _, _ = all_pages(store, "del/")
    assert objects == ["del/10", "del/11"]
    store.delete_many([])


def test_list_pagination_with_delimiter(store):
    keys = ["a/1", "a/2", "a/sub/x", "b", "c/", "c/d", "d/e/f", "e", "f\u00fc\u00df", "g\x01ctl", "h z"]
    for k in keys:
        store.put(k, b"1")
    objects, prefixes, pages = all_pages(store, "", max_keys=3)
    assert objects == ["b", "e", "f\u00fc\u00df", "g\x01ctl", "h z"]
    assert prefixes == ["a/", "c/", "d/"]
    assert pages >= 3

    objects, prefixes, _ = all_pages(store, "a/", max_keys=2)
    assert objects == ["a/1", "a/2"] and prefixes == ["a/sub/"]

    objects, prefixes, _ = all_pages(store, "c/")
    assert objects == ["c/", "c/d"] and prefixes == []

    objects, prefixes, _ = all_pages(store, "", delimiter="", max_keys=4)
    assert objects == sorted(keys, key=lambda k: k.encode()) and prefixes == []

    page = store.list("", max_keys=1000)
    assert page.next_token is None
    entry = [o for o in page.objects if o.key == "b"][0]
    assert entry.size == 1 and entry.etag == md5_upper(b"1") and entry.last_modified > 1.6e9

    assert all_pages(store, "nothing-here/") == ([], [], 1)


# --------------------------------------------------------------------------- multipart

def test_multipart_upload_list_and_complete(store):
    p1 = b"a" * PART
    p2 = b"b" * PART
    p3 = b"tail"
    upload_id = store.initiate_multipart("mp/obj", meta={"mode": "33188"}, content_type="application/x-test")
    assert isinstance(upload_id, str) and upload_id
    assert [(u.key, u.upload_id) for u in store.list_multipart_uploads("mp/")] == [("mp/obj", upload_id)]
    assert store.list_multipart_uploads("other/") == []

    parts = [store.upload_part("mp/obj", upload_id, 1, p1),
             store.upload_part("mp/obj", upload_id, 2, io.BytesIO(p2)),
             store.upload_part("mp/obj", upload_id, 3, p3)]
    assert all(isinstance(p, PartInfo) for p in parts)
    assert [(p.part_number, p.etag, p.size) for p in parts] == [
        (1, md5_upper(p1), PART), (2, md5_upper(p2), PART), (3, md5_upper(p3), 4)]
    listed = store.list_parts("mp/obj", upload_id)
    assert [(p.part_number, p.etag, p.size) for p in listed] == [(p.part_number, p.etag, p.size) for p in parts]

    info = store.complete_multipart("mp/obj", upload_id, parts)
    assert info.size == 2 * PART + 4
    m = MULTIPART_ETAG.match(info.etag)
    assert m and m.group(1) == "3"
    head = store.head("mp/obj")
    assert head.etag == info.etag and head.size == info.size
    assert head.meta == {"mode": "33188"} and head.content_type == "application/x-test"
    assert store.get_range("mp/obj", PART - 2, 4) == b"aabb"
    assert store.get_range("mp/obj", 2 * PART, 10) == b"tail"
    assert store.list_multipart_uploads("mp/") == []
    with pytest.raises(NotFound):
        store.list_parts("mp/obj", upload_id)


def test_upload_part_copy(store):
    src = bytes(range(256)) * 1600  # 409600 bytes
    src_info = store.put("pc/src", src)
    upload_id = store.initiate_multipart("pc/dst")
    parts = [store.upload_part_copy("pc/dst", upload_id, 1, "pc/src", 0, 2 * PART, if_match=src_info.etag),
             store.upload_part("pc/dst", upload_id, 2, b"N" * PART),
             store.upload_part_copy("pc/dst", upload_id, 3, "pc/src", 3 * PART, PART)]
    assert parts[0].size == 2 * PART and parts[0].etag == md5_upper(src[:2 * PART])
    info = store.complete_multipart("pc/dst", upload_id, parts)
    expected = src[:2 * PART] + b"N" * PART + src[3 * PART:4 * PART]
    assert info.size == len(expected)
    assert store.get_range("pc/dst", 0, len(expected) + 1) == expected

    upload_id = store.initiate_multipart("pc/dst2")
    with pytest.raises(PreconditionFailed):
        store.upload_part_copy("pc/dst2", upload_id, 1, "pc/src", 0, PART, if_match=md5_upper(b"other"))
    store.abort_multipart("pc/dst2", upload_id)


def test_abort_and_unknown_upload(store):
    upload_id = store.initiate_multipart("ab/obj")
    store.upload_part("ab/obj", upload_id, 1, b"x" * 10)
    store.abort_multipart("ab/obj", upload_id)
    assert store.list_multipart_uploads("ab/") == []
    with pytest.raises(NotFound):
        store.abort_multipart("ab/obj", upload_id)
    with pytest.raises(NotFound):
        store.upload_part("ab/obj", upload_id, 2, b"y")
    with pytest.raises(NotFound):
        store.head("ab/obj")


def test_complete_refuses_small_middle_part(store):
    upload_id = store.initiate_multipart("small/obj")
    parts = [store.upload_part("small/obj", upload_id, 1, b"too small"),
             store.upload_part("small/obj", upload_id, 2, b"last")]
    with pytest.raises(StoreError) as err:
        store.complete_multipart("small/obj", upload_id, parts)
    assert not isinstance(err.value, NotFound)
    store.abort_multipart("small/obj", upload_id)


# --------------------------------------------------------------------------- OSS only

def test_prefix_mount_adds_and_strips_prefix(oss_server_session):
    root = make_oss_store(oss_server_session)
    base = "pfx-%s" % uuid.uuid4().hex[:8]
    mounted = make_oss_store(oss_server_session, prefix="/%s/sub/" % base)
    mounted.put("file", b"1", meta={"mode": "33188"})
    mounted.put("dir/child", b"2")
    assert root.head("%s/sub/file" % base).meta == {"mode": "33188"}
    page = mounted.list("")
    assert [o.key for o in page.objects] == ["file"] and page.prefixes == ["dir/"]
    assert [o.key for o in mounted.list("dir/").objects] == ["dir/child"]
    assert mounted.head("dir/child").key == "dir/child"
    mounted.copy("file", "file2")
    assert root.get_range("%s/sub/file2" % base, 0, 10) == b"1"
    upload_id = mounted.initiate_multipart("big")
    assert [(u.key, u.upload_id) for u in mounted.list_multipart_uploads("")] == [("big", upload_id)]
    mounted.abort_multipart("big", upload_id)
    mounted.delete_many(["file", "file2", "dir/child"])
    assert root.list("%s/" % base, delimiter="").objects == []


def test_large_copy_switches_to_part_copy(oss_server_session):
    store = make_oss_store(oss_server_session, prefix="bigcopy-%s/" % uuid.uuid4().hex[:8],
                           copy_limit=300 * KiB, copy_part_size=PART)
    data = bytes(range(251)) * 1700  # 426700 bytes: 5 parts of 100 KiB
    src = store.put("src", data, meta={"mode": "33188"}, content_type="text/plain")
    before = oss_server_session.stats()["requests"]
    info = store.copy("src", "dst", meta={"mode": "33261"})
    after = oss_server_session.stats()["requests"]
    assert after.get("UploadPartCopy", 0) - before.get("UploadPartCopy", 0) == 5
    assert after.get("CopyObject", 0) == before.get("CopyObject", 0)
    assert info.size == len(data) and MULTIPART_ETAG.match(info.etag)
    head = store.head("dst")
    assert head.meta == {"mode": "33261"}
    assert store.get_range("dst", 0, len(data)) == data
    assert src.crc64 is not None and head.crc64 == src.crc64


def test_list_objects_v2_pages_like_v1(oss_server_session):
    prefix = "v2-%s/" % uuid.uuid4().hex[:8]
    v1 = make_oss_store(oss_server_session, prefix=prefix)
    v2 = make_oss_store(oss_server_session, prefix=prefix, list_v2=True)
    for k in ["a/1", "a/2", "b", "c/d", "e\x02ctl", "f"]:
        v1.put(k, b"1")
    before = oss_server_session.stats()["requests"].get("ListObjectsV2", 0)
    assert all_pages(v2, "", max_keys=2)[:2] == all_pages(v1, "", max_keys=2)[:2] == (
        ["b", "e\x02ctl", "f"], ["a/", "c/"])
    assert oss_server_session.stats()["requests"].get("ListObjectsV2", 0) > before


def test_fast_crc64_is_bit_identical_to_oss2s_crc64():
    """The CRC-64 oss2 checks uploads and downloads with runs on fastcrc when it is
    installed; every value (incremental, continued from a CRC, combined) equals crcmod's."""
    pytest.importorskip("fastcrc")
    import os

    import oss2

    from ossfs.store_oss import FastCrc64, _Crc64Oss2, combine_crc64

    assert oss2.utils.Crc64 is FastCrc64
    data = os.urandom(200_003)
    for init in (0, 1, 0x1234_5678_9ABC_DEF0, (1 << 64) - 1):
        ref = _Crc64Oss2(init)
        ref.update(data)
        fast = FastCrc64(init)
        fast(data[:7])
        fast.update(memoryview(data)[7:100_000])
        fast.update(bytearray(data[100_000:]))
        assert fast.crc == ref.crc, init
    head, tail = FastCrc64(), FastCrc64()
    head.update(data[:4096])
    tail.update(data[4096:])
    whole = _Crc64Oss2()
    whole.update(data)
    assert FastCrc64().combine(head.crc, tail.crc, len(data) - 4096) == whole.crc
    parts = [PartInfo(1, "e1", 4096, head.crc), PartInfo(2, "e2", len(data) - 4096, tail.crc)]
    assert combine_crc64(parts) == whole.crc
    adapter = oss2.utils.make_crc_adapter(data)
    assert adapter.read() == data and adapter.crc == whole.crc


def test_proxy_settings_are_read_once_from_the_environment(monkeypatch):
    """Requests do not consult the environment each time; the daemon's proxy and CA
    bundle variables, read when the store is built, still apply (the bundle only to
    an https endpoint)."""
    from ossfs.store_oss import OssStore

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/example.pem")
    store = OssStore("http://oss.example.invalid", "bkt", ("id", "secret"))
    session = store._session.session
    assert session.trust_env is False
    assert session.proxies.get("http") == "http://proxy.invalid:3128"
    assert session.verify is True
    assert OssStore("https://oss.example.invalid", "bkt", ("id", "secret"))._session.session.verify == \
        "/etc/ssl/certs/example.pem"
    monkeypatch.setenv("NO_PROXY", "oss.example.invalid")
    assert "http" not in OssStore("http://oss.example.invalid", "bkt", ("id", "secret"))._session.session.proxies


def test_delete_many_of_keys_xml_cannot_carry(store):
    """A CR turns into LF inside XML and control characters are not allowed at all:
    delete_many still deletes exactly the keys it was given, and nothing else."""
    keys = ["ctl/cr\r", "ctl/x\x01y", "ctl/tab\tz", "ctl/plain"]
    for k in keys + ["ctl/cr\n"]:
        store.put(k, b"x")
    store.delete_many(keys)
    assert all_pages(store, "ctl/", delimiter="")[0] == ["ctl/cr\n"]
