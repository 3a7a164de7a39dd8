"""Completed multipart objects are manifests of their part files (ossfs/server/store.py).

Everything here goes through the real oss2 SDK (``enable_crc=True``, so full GETs are
CRC-checked by the client) against a real server subprocess, except the CRC-combination
check and the race of a part uploaded again during a complete, which use the store's
functions directly.  Segment files live in ``<data_dir>/parts``, single-file bodies in
``<data_dir>/blobs``.
"""
import hashlib
import io
import json
import os
import sqlite3
import time
import uuid

import boto3
import crcmod
import oss2
import pytest
from botocore.config import Config
from oss2.utils import mkCombineFun

from ossfs.server import store as store_mod
from ossfs.server.store import Store, StoreError, multipart_etag

MIN = 100 * 1024
_POLY, _XOROUT = 0x142F0E1EBA9EA3693, 0xFFFFFFFFFFFFFFFF
_crc = crcmod.mkCrcFun(_POLY, initCrc=0, rev=True, xorOut=_XOROUT)


def crc64(data):
    return _crc(data)


def md5(data):
    return hashlib.md5(data).hexdigest().upper()


def files(server, sub):
    return sorted(os.listdir(os.path.join(server.data_dir, sub)))


def upload(bucket, key, parts_data, extra=()):
    """Multipart upload of ``parts_data`` (and of ``extra`` parts left out of the complete)."""
    up = bucket.init_multipart_upload(key, headers={"Content-Type": "text/x-mp", "x-oss-meta-k": "v"})
    infos = []
    for i, d in enumerate(parts_data, 1):
        infos.append(oss2.models.PartInfo(i, bucket.upload_part(key, up.upload_id, i, d).etag))
    for j, d in enumerate(extra, len(parts_data) + 1):
        bucket.upload_part(key, up.upload_id, j, d)
    return bucket.complete_multipart_upload(key, up.upload_id, infos)


@pytest.fixture
def prefix():
    return "manifest-%s/" % uuid.uuid4().hex[:8]


# ------------------------------------------------------------------ CRC combination

def test_crc64_combine_matches_oss2_and_the_crc_of_the_concatenation():
    oss2_combine = mkCombineFun(_POLY, initCrc=0, rev=True, xorOut=_XOROUT)
    rnd = __import__("random").Random(7)
    for n in [1, 2, 7, 8, 9, 63, 64, 65, 1000, MIN, 10 << 20, (1 << 32) + 5, 5 << 40]:
        a, b = rnd.getrandbits(64), rnd.getrandbits(64)
        assert store_mod.crc64_combine(a, b, n) == oss2_combine(a, b, n), n
    for _ in range(50):
        x = os.urandom(rnd.randrange(0, 3000))
        y = os.urandom(rnd.randrange(1, 3000))
        assert store_mod.crc64_combine(crc64(x), crc64(y), len(y)) == crc64(x + y)
    assert store_mod.crc64_combine(12345, 0, 0) == 12345


def test_client_and_server_crc_agree_whichever_module_is_imported_first():
    """The client installs its fastcrc class as ``oss2.utils.Crc64``; the server's CRC
    must not depend on that, nor the client's combine differ from the server's."""
    import subprocess
    import sys
    code = (
        "import ossfs.store_oss as c, ossfs.server.store as s, crcmod, os\n"
        "f = crcmod.mkCrcFun(%d, initCrc=0, rev=True, xorOut=%d)\n"
        "x, y = os.urandom(5000), os.urandom(777)\n"
        "acc = s.new_crc64(); acc.update(x + y)\n"
        "assert s.crc64_update(x + y) == acc.crcValue == f(x + y)\n"
        "part = lambda d: c.PartInfo(part_number=1, etag='', size=len(d), crc64=f(d))\n"
        "assert c.combine_crc64([part(x), part(y)]) == f(x + y)\n"
        "print('ok')\n" % (_POLY, _XOROUT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------ reading

def test_reads_whole_and_by_ranges_across_segments(oss_server_session, prefix):
    b = oss_server_session.oss_bucket()
    key = prefix + "mp"
    sizes = [MIN + 1, 3 * MIN + 17, 2 * MIN, 12345]
    parts_data = [os.urandom(z) for z in sizes]
    data = b"".join(parts_data)
    res = upload(b, key, parts_data)
    etag = multipart_etag([md5(d) for d in parts_data])
    assert res.etag == etag and res.crc == crc64(data)

    g = b.get_object(key)                     # oss2 checks the CRC of a full GET
    assert g.read() == data
    assert g.headers["Content-Length"] == str(len(data))
    assert g.headers["x-oss-hash-crc64ecma"] == str(crc64(data))
    h = b.head_object(key)
    assert (h.etag, h.content_length, h.object_type, h.content_type) == (etag, len(data), "Multipart",
                                                                          "text/x-mp")
    assert h.headers["x-oss-hash-crc64ecma"] == str(crc64(data)) and h.headers["x-oss-meta-k"] == "v"

    bounds = [0]
    for z in sizes:
        bounds.append(bounds[-1] + z)
    b1, b2, b3, end = bounds[1:]
    ranges = [(0, 0), (0, b1 - 1), (b1 - 1, b1), (b1, b1), (b1, b2 - 1), (b1 - 10, b1 + 10),
              (b1 - 1, b3), (5, end - 6), (b2, end - 1), (b3 - 1, b3 - 1), (b3, end - 1),
              (end - 1, end - 1), (0, end - 1), (MIN, 5 * MIN)]
    for lo, hi in ranges:
        r = b.get_object(key, byte_range=(lo, hi))
        assert r.status == 206 and r.headers["Content-Range"] == "bytes %d-%d/%d" % (lo, hi, end)
        assert r.read() == data[lo:hi + 1], (lo, hi)
    assert b.get_object(key, byte_range=(None, 12346)).read() == data[-12346:]   # suffix
    assert b.get_object(key, byte_range=(b2 + 3, None)).read() == data[b2 + 3:]  # open end

    # the S3 face streams through the same reader
    s3 = boto3.client("s3", endpoint_url=oss_server_session.endpoint, region_name="us-east-1",
                      aws_access_key_id=oss_server_session.access_key_id,
                      aws_secret_access_key=oss_server_session.access_key_secret,
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    r = s3.get_object(Bucket=oss_server_session.bucket, Key=key, Range="bytes=%d-%d" % (b1 - 3, b3 + 3))
    assert r["Body"].read() == data[b1 - 3:b3 + 4]
    assert s3.get_object(Bucket=oss_server_session.bucket, Key=key)["Body"].read() == data

    # OSS refuses to append to a Multipart object
    with pytest.raises(oss2.exceptions.ServerError) as e:
        b.append_object(key, end, b"more")
    assert (e.value.status, e.value.code) == (409, "ObjectNotAppendable")
    assert b.get_object(key).read() == data


def test_copy_and_upload_part_copy_from_a_multipart_object(oss_server_session, prefix):
    b = oss_server_session.oss_bucket()
    src = prefix + "src"
    parts_data = [os.urandom(MIN + 5), os.urandom(2 * MIN + 3), os.urandom(777)]
    data = b"".join(parts_data)
    upload(b, src, parts_data)
    src_head = b.head_object(src)

    b.copy_object(b.bucket_name, src, prefix + "copy")
    g = b.get_object(prefix + "copy")
    assert g.read() == data and g.headers["x-oss-hash-crc64ecma"] == str(crc64(data))
    assert b.head_object(prefix + "copy").etag == src_head.etag

    # a part copied from a range that crosses both segment boundaries
    key = prefix + "fromcopy"
    up = b.init_multipart_upload(key)
    lo, hi = MIN, len(data) - 100
    r1 = b.upload_part_copy(b.bucket_name, src, (lo, hi), key, up.upload_id, 1)
    assert r1.etag == md5(data[lo:hi + 1])
    r2 = b.upload_part(key, up.upload_id, 2, b"tail")
    b.complete_multipart_upload(key, up.upload_id, [oss2.models.PartInfo(1, r1.etag),
                                                    oss2.models.PartInfo(2, r2.etag)])
    assert b.get_object(key).read() == data[lo:hi + 1] + b"tail"

    # the copy owns its data: deleting or overwriting the source leaves it intact
    b.delete_object(src)
    assert b.get_object(prefix + "copy").read() == data
    b.copy_object(b.bucket_name, prefix + "copy", prefix + "copy")   # copy onto itself
    b.put_object(prefix + "copy2", b"x")
    b.copy_object(b.bucket_name, prefix + "copy", prefix + "copy2")  # overwrite single -> manifest
    b.delete_object(prefix + "copy")
    assert b.get_object(prefix + "copy2").read() == data


# ------------------------------------------------------------------ files on disk

def test_overwrite_and_delete_leave_no_segment_files(oss_server):
    b = oss_server.oss_bucket()
    parts_data = [os.urandom(MIN), os.urandom(MIN + 1), os.urandom(10)]
    upload(b, "a", parts_data, extra=[b"left out"])
    data = b"".join(parts_data)
    # the three chosen parts are the object's data; the part left out is gone
    assert len(files(oss_server, "parts")) == 3 and files(oss_server, "blobs") == []

    b.copy_object(b.bucket_name, "a", "b")
    assert len(files(oss_server, "parts")) == 6
    b.put_object("a", b"single")                      # manifest overwritten by a single file
    assert len(files(oss_server, "parts")) == 3 and len(files(oss_server, "blobs")) == 1
    assert b.get_object("b").read() == data

    parts2 = [os.urandom(MIN), os.urandom(3)]
    upload(b, "b", parts2)                            # manifest overwritten by a manifest
    assert len(files(oss_server, "parts")) == 2
    assert b.get_object("b").read() == b"".join(parts2)
    upload(b, "a", [b"one small part"])               # single file overwritten by a manifest
    assert len(files(oss_server, "parts")) == 3 and files(oss_server, "blobs") == []

    b.delete_object("a")
    b.batch_delete_objects(["b"])
    assert files(oss_server, "parts") == [] and files(oss_server, "blobs") == []
    assert files(oss_server, "tmp") == []
    # an aborted upload leaves nothing either
    up = b.init_multipart_upload("c")
    b.upload_part("c", up.upload_id, 1, b"x" * MIN)
    b.abort_multipart_upload("c", up.upload_id)
    assert files(oss_server, "parts") == []


def test_reader_keeps_reading_a_version_deleted_under_it(oss_server):
    """Segments are opened lazily; delete during a GET must not cut the body, and the
    files must go once the GET is over."""
    b = oss_server.oss_bucket()
    part = 8 << 20
    parts_data = [os.urandom(part) for _ in range(4)]
    data = b"".join(parts_data)
    upload(b, "big", parts_data)
    g = b.get_object("big")
    head = g.read(1 << 20)        # the server cannot have got past segment 2 yet (socket buffers)
    other = oss_server.oss_bucket()
    other.delete_object("big")
    upload(other, "big", [b"new version"])           # and the key gets a new version
    assert other.get_object("big").read() == b"new version"
    rest = g.read()               # oss2 checks the CRC of the whole body here
    assert head + rest == data
    deadline = time.monotonic() + 10
    while len(files(oss_server, "parts")) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(files(oss_server, "parts")) == 1      # only the new version's segment


# ------------------------------------------------------------------ restart and old indexes

def test_restart_serves_manifest_and_collects_only_orphans(oss_server):
    b = oss_server.oss_bucket()
    parts_data = [os.urandom(MIN + 3), os.urandom(200)]
    data = b"".join(parts_data)
    upload(b, "mp", parts_data)
    segments = files(oss_server, "parts")
    assert len(segments) == 2
    for sub in ("parts", "blobs"):        # files a crash could leave
        with open(os.path.join(oss_server.data_dir, sub, "orphan." + uuid.uuid4().hex), "wb") as f:
            f.write(b"junk")
    oss_server.restart()
    b = oss_server.oss_bucket()
    assert files(oss_server, "parts") == segments and files(oss_server, "blobs") == []
    g = b.get_object("mp")
    assert g.read() == data and g.headers["x-oss-object-type"] == "Multipart"
    assert b.get_object("mp", byte_range=(MIN, MIN + 10)).read() == data[MIN:MIN + 11]
    assert b.head_object("mp").etag == multipart_etag([md5(d) for d in parts_data])


def test_index_from_before_manifests_still_opens(tmp_path):
    """A data directory whose objects table has no manifest column (the schema before
    manifests) opens, serves its objects and takes multipart uploads."""
    from conftest import OssServer
    data_dir = tmp_path / "data"
    for sub in ("blobs", "parts", "tmp"):
        (data_dir / sub).mkdir(parents=True)
    body = os.urandom(5000)
    (data_dir / "blobs" / "old.blob").write_bytes(body)
    db = sqlite3.connect(str(data_dir / "index.sqlite"))
    db.executescript("""
        CREATE TABLE buckets (name TEXT PRIMARY KEY, created REAL);
        CREATE TABLE objects (
            bucket TEXT, key BLOB, size INTEGER, etag TEXT, crc64 TEXT, mtime REAL,
            content_type TEXT, meta TEXT, headers TEXT, object_type TEXT,
            symlink_target TEXT, blob TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
        CREATE TABLE uploads (
            upload_id TEXT PRIMARY KEY, bucket TEXT, key BLOB, initiated REAL,
            content_type TEXT, meta TEXT, headers TEXT);
        CREATE INDEX uploads_by_key ON uploads (bucket, key, upload_id);
        CREATE TABLE parts (
            upload_id TEXT, part_number INTEGER, etag TEXT, size INTEGER, crc64 TEXT,
            mtime REAL, blob TEXT, PRIMARY KEY (upload_id, part_number));
    """)
    db.execute("INSERT INTO buckets VALUES ('ossfs-test', 0)")
    db.execute("INSERT INTO objects VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
               ("ossfs-test", b"old", len(body), md5(body), str(crc64(body)), time.time(),
                "application/octet-stream", "{}", "{}", "Normal", None, "old.blob"))
    db.commit()
    db.close()
    s = OssServer(str(data_dir))
    try:
        s.start()
        b = s.oss_bucket()
        assert b.get_object("old").read() == body
        parts_data = [os.urandom(MIN), b"end"]
        upload(b, "new", parts_data)
        assert b.get_object("new").read() == b"".join(parts_data)
        assert b.get_object("old").read() == body
    finally:
        s.stop()
    db = sqlite3.connect(str(data_dir / "index.sqlite"))
    manifest = db.execute("SELECT manifest FROM objects WHERE key=?", (b"new",)).fetchone()[0]
    db.close()
    assert [z for _, z in json.loads(manifest)] == [MIN, 3]


# ------------------------------------------------------------------ a part uploaded again during a complete

def test_part_uploaded_again_during_complete(tmp_path, monkeypatch):
    """complete_upload combines CRCs outside the lock; a chosen part uploaded again
    meanwhile (its old file deleted) must not end up in the manifest."""
    st = Store(str(tmp_path / "data"))
    try:
        st.create_bucket("bkt")
        p1, p2 = os.urandom(MIN), os.urandom(MIN + 9)
        uid = st.initiate_upload("bkt", "k")
        e1 = st.upload_part("bkt", "k", uid, 1, io.BytesIO(p1), len(p1))
        e2 = st.upload_part("bkt", "k", uid, 2, io.BytesIO(p2), len(p2))
        real = store_mod.crc64_combine
        calls = []

        def racing_combine(c1, c2, n):
            if not calls:     # same bytes again: same ETag, a new file, the old one deleted
                st.upload_part("bkt", "k", uid, 2, io.BytesIO(p2), len(p2))
            calls.append(n)
            return real(c1, c2, n)
        monkeypatch.setattr(store_mod, "crc64_combine", racing_combine)
        rec = st.complete_upload("bkt", "k", uid, [(1, e1), (2, e2)])
        assert len(calls) == 2     # validated and combined a second time
        _, f = st.open_object("bkt", "k")
        with f:
            assert f.read() == p1 + p2
        assert rec.crc64 == crc64(p1 + p2)
        assert sorted(os.listdir(st.part_dir)) == sorted(n for n, _ in rec.segments)

        # bytes that differ: the ETag no longer matches
        uid = st.initiate_upload("bkt", "k2")
        e1 = st.upload_part("bkt", "k2", uid, 1, io.BytesIO(p1), len(p1))
        e2 = st.upload_part("bkt", "k2", uid, 2, io.BytesIO(p2), len(p2))
        calls.clear()

        def changing_combine(c1, c2, n):
            if not calls:
                st.upload_part("bkt", "k2", uid, 2, io.BytesIO(b"other"), 5)
            calls.append(n)
            return real(c1, c2, n)
        monkeypatch.setattr(store_mod, "crc64_combine", changing_combine)
        with pytest.raises(StoreError) as e:
            st.complete_upload("bkt", "k2", uid, [(1, e1), (2, e2)])
        assert e.value.code == "InvalidPart"
    finally:
        st.close()
