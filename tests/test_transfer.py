"""Uploads and downloads of staged files, and the store's failure handling, against a
real ``ossfs-server`` over loopback (oss2 SDK, real HTTP, injected faults).

Request counts come from the server's own counters, so "resumed without re-sending"
and "copied server-side" are checked on the wire, not on our bookkeeping.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
import uuid
from dataclasses import replace

import pytest

from ossfs.errors import AccessDenied, NoSuchBucket, NotFound, PreconditionFailed, StoreError, Unreachable
from ossfs.store_mem import crc64
from ossfs.store_oss import OssStore
from ossfs.transfer import (BaseObject, Downloader, UploadCheckpoint, Uploader, abort_incomplete,
                            file_fingerprint, list_incomplete)

KiB = 1024
MiB = 1024 * KiB
PART = 256 * KiB


class Interrupted(Exception):
    """Stands for a crash of the process in the middle of an upload."""


@pytest.fixture
def server(oss_server_session):
    yield oss_server_session
    oss_server_session.set_faults()  # never leak faults into the next test


@pytest.fixture
def store(server):
    return make_store(server, prefix="transfer-%s/" % uuid.uuid4().hex[:10])


def make_store(server, prefix="", secret=None, key_id=None, endpoint=None, bucket=None, **kw):
    kw.setdefault("retries", 3)
    return OssStore(endpoint or server.endpoint, bucket or server.bucket,
                    (key_id or server.access_key_id, secret or server.access_key_secret), prefix=prefix, **kw)


class Counter:
    """Deltas of the server's request counters around a block."""

    def __init__(self, server):
        self.server = server
        self.before = dict(server.stats()["requests"])

    def delta(self) -> dict:
        after = self.server.stats()["requests"]
        return {k: v - self.before.get(k, 0) for k, v in after.items() if v - self.before.get(k, 0)}


def write_file(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read_object(store, key) -> bytes:
    info = store.head(key)
    return store.get_range(key, 0, info.size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- uploads

def test_single_put_below_threshold(store, server, tmp_path):
    data = os.urandom(50 * KiB)
    path = write_file(tmp_path / "small", data)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=2)
    progress = []
    counter = Counter(server)
    info = up.upload("small", path, meta={"mode": "33188"}, content_type="text/plain",
                     on_progress=lambda done, total: progress.append((done, total)))
    assert counter.delta() == {"PutObject": 1}
    assert info.etag == hashlib.md5(data).hexdigest().upper() and info.size == len(data)
    assert info.crc64 == crc64(data)
    assert progress == [(len(data), len(data))]
    assert read_object(store, "small") == data
    assert store.head("small").meta == {"mode": "33188"}
    up.close()


def test_multipart_upload_parts_checkpoints_and_crc(store, server, tmp_path):
    data = os.urandom(5 * PART + 1234)
    path = write_file(tmp_path / "big", data)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=3)
    checkpoints, progress = [], []
    counter = Counter(server)
    info = up.upload("big", path, meta={"mode": "33188"}, on_checkpoint=checkpoints.append,
                     on_progress=lambda done, total: progress.append(done))
    delta = counter.delta()
    assert delta == {"InitiateMultipartUpload": 1, "UploadPart": 6, "CompleteMultipartUpload": 1}
    assert info.etag.endswith("-6") and info.size == len(data)
    assert info.crc64 == crc64(data)
    assert read_object(store, "big") == data
    assert store.head("big").meta == {"mode": "33188"}
    # one checkpoint after initiate, then one per acknowledged part
    assert len(checkpoints) == 7
    assert checkpoints[0].parts == {} and len(checkpoints[-1].parts) == 6
    assert all(isinstance(c, UploadCheckpoint) for c in checkpoints)
    assert sorted(progress)[-1] == len(data)
    assert list_incomplete(store) == []
    up.close()


def test_resume_after_interruption_sends_only_missing_parts(store, server, tmp_path):
    data = os.urandom(8 * PART)
    path = write_file(tmp_path / "f", data)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=3)
    saved = {}

    def crash_after_two(cp):
        if len(cp.parts) >= 2:
            raise Interrupted()
        saved["cp"] = cp

    with pytest.raises(Interrupted):
        up.upload("f", path, meta={}, on_checkpoint=crash_after_two)
    cp = saved["cp"]
    assert cp.upload_id and len(cp.parts) == 1  # the last checkpoint the caller managed to persist
    # the upload is left on the server for a later resume, not aborted
    assert [u.upload_id for u in list_incomplete(store)] == [cp.upload_id]

    # Parts the server acknowledged after the last persisted checkpoint (and those in
    # flight) are on the server too; they are adopted after checking their MD5.
    on_server = store.list_parts("f", cp.upload_id)
    assert len(on_server) > len(cp.parts)
    counter = Counter(server)
    info = up.upload("f", path, meta={}, checkpoint=cp)
    delta = counter.delta()
    assert delta.get("InitiateMultipartUpload", 0) == 0
    assert delta["ListParts"] == 1
    assert delta["UploadPart"] == 8 - len(on_server)
    assert read_object(store, "f") == data and info.crc64 == crc64(data)
    assert list_incomplete(store) == []
    up.close()


def test_resume_from_json_checkpoint_after_store_failure(store, server, tmp_path):
    """The store's retries exhausted mid-upload: the checkpoint still resumes, also
    after a JSON round trip (string part numbers, lists instead of tuples)."""
    import json
    from dataclasses import asdict

    data = os.urandom(6 * PART)
    path = write_file(tmp_path / "j", data)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=1)
    saved = []
    sent = []
    real_upload_part = store.upload_part

    def failing_upload_part(key, upload_id, number, body):
        if len(sent) == 4:
            raise StoreError("simulated: retries exhausted")
        sent.append(number)
        return real_upload_part(key, upload_id, number, body)

    store.upload_part = failing_upload_part
    with pytest.raises(StoreError):
        up.upload("j", path, meta={}, on_checkpoint=lambda cp: saved.append(json.dumps(asdict(cp))))
    store.upload_part = real_upload_part
    cp = UploadCheckpoint(**json.loads(saved[-1]))
    assert len(cp.parts) == 4
    counter = Counter(server)
    up.upload("j", path, meta={}, checkpoint=cp)
    assert counter.delta()["UploadPart"] == 2
    assert read_object(store, "j") == data
    up.close()


def test_stale_checkpoint_starts_over(store, server, tmp_path):
    data = os.urandom(4 * PART)
    path = write_file(tmp_path / "s", data)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=1)
    saved = []

    def crash(cp):
        saved.append(cp)
        if len(cp.parts) == 2:
            raise Interrupted()

    with pytest.raises(Interrupted):
        up.upload("s", path, meta={}, on_checkpoint=crash)
    old = saved[-1]
    data2 = os.urandom(4 * PART)
    write_file(path, data2)  # the file changed since: its old parts must not be reused
    os.utime(path, ns=(1, 1))
    counter = Counter(server)
    up.upload("s", path, meta={}, checkpoint=old)
    delta = counter.delta()
    assert delta["InitiateMultipartUpload"] == 1 and delta["UploadPart"] == 4
    assert delta["AbortMultipartUpload"] == 1
    assert read_object(store, "s") == data2
    assert list_incomplete(store) == []

    # a checkpoint of the current content whose upload the server no longer knows
    # (aborted above) also starts over
    forgotten = replace(old, fingerprint=file_fingerprint(path))
    counter = Counter(server)
    up.upload("s", path, meta={}, checkpoint=forgotten)
    delta = counter.delta()
    assert delta["ListParts"] == 1 and "AbortMultipartUpload" not in delta
    assert delta["InitiateMultipartUpload"] == 1 and delta["UploadPart"] == 4
    assert read_object(store, "s") == data2
    up.close()


def test_edited_in_place_copies_clean_parts(store, server, tmp_path):
    original = os.urandom(5 * PART)
    base_info = store.put("log", original)
    staged = bytearray(original)
    staged[2 * PART + 10:2 * PART + 20] = b"X" * 10  # part 3 edited
    staged += b"appended line\n"  # a sixth, short part
    path = write_file(tmp_path / "log", bytes(staged))
    dirty = [(2 * PART + 10, 10), (len(original), 14)]
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=3)
    counter = Counter(server)
    info = up.upload("log", path, meta={"mode": "33188"},
                     base=BaseObject(key="log", etag=base_info.etag, size=base_info.size), dirty_ranges=dirty)
    delta = counter.delta()
    assert delta["UploadPartCopy"] == 4  # parts 1, 2, 4 and 5 never leave the server
    assert delta["UploadPart"] == 2  # the edited part 3 and the appended part 6
    assert read_object(store, "log") == bytes(staged)
    assert info.size == len(staged)
    up.close()


def test_edited_in_place_refuses_a_replaced_base(store, tmp_path):
    original = os.urandom(5 * PART)
    base_info = store.put("doc", original)
    store.put("doc", os.urandom(5 * PART))  # someone else replaced it
    path = write_file(tmp_path / "doc", original[:-1] + b"!")
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=2)
    saved = []
    with pytest.raises(PreconditionFailed):
        up.upload("doc", path, meta={}, base=BaseObject("doc", base_info.etag, base_info.size),
                  dirty_ranges=[(len(original) - 1, 1)], on_checkpoint=saved.append)
    assert saved and saved[-1].upload_id
    assert abort_incomplete(store) and list_incomplete(store) == []
    up.close()


def test_faults_and_dropped_connections_still_give_intact_objects(server, tmp_path):
    store = make_store(server, prefix="faults-%s/" % uuid.uuid4().hex[:8], retries=8)
    big = os.urandom(6 * PART + 99)
    small = os.urandom(80 * KiB)
    big_path = write_file(tmp_path / "big", big)
    small_path = write_file(tmp_path / "small", small)
    up = Uploader(store, multipart_threshold=MiB, part_size=PART, parallel=3)
    down = Downloader(store, parallel=3, chunk_size=200 * KiB)
    server.set_faults(fault_rate=0.2, drop_rate=0.1)
    try:
        counter = Counter(server)
        big_info = up.upload("big", big_path, meta={})
        small_info = up.upload("small", small_path, meta={})
        out = str(tmp_path / "out")
        down.fetch("big", big_info.etag, out, [(0, len(big))])
        down.fetch("small", small_info.etag, str(tmp_path / "out-small"), [(0, len(small))])
        whole = store.get_range("big", 0, len(big))
    finally:
        server.set_faults()
    delta = counter.delta()
    # the faults did happen and were retried (for ~20 requests, none of either kind: ~1e-5)
    assert delta.get("faults", 0) + delta.get("drops", 0) >= 1, delta
    digest = hashlib.md5(big).hexdigest()
    assert hashlib.md5(open(out, "rb").read()).hexdigest() == digest
    assert hashlib.md5(whole).hexdigest() == digest
    assert open(str(tmp_path / "out-small"), "rb").read() == small
    assert read_object(store, "big") == big and big_info.crc64 == crc64(big)
    up.close()
    down.close()


# --------------------------------------------------------------------------- downloads

def test_download_ranges_into_file(store, tmp_path):
    data = os.urandom(3 * MiB + 5)
    info = store.put("d", data)
    down = Downloader(store, parallel=4, chunk_size=256 * KiB)
    path = str(tmp_path / "staged")
    with open(path, "wb") as f:
        f.truncate(len(data))
    down.fetch("d", info.etag, path, [(0, 100), (MiB, MiB + 3), (3 * MiB, 100)])
    got = open(path, "rb").read()
    assert got[:100] == data[:100]
    assert got[MiB:2 * MiB + 3] == data[MiB:2 * MiB + 3]
    assert got[3 * MiB:] == data[3 * MiB:]  # past the end: only what exists
    assert got[100:MiB] == b"\0" * (MiB - 100)  # untouched holes stay holes
    down.close()


def test_download_pinned_to_etag_fails_when_object_replaced(store, tmp_path):
    old = os.urandom(MiB)
    info = store.put("pinned", old)
    replaced = threading.Event()
    real_get = store.get_to_file

    def get_then_replace(key, fileobj, start=0, length=None, if_match=None):
        n = real_get(key, fileobj, start, length, if_match)
        if not replaced.is_set():
            replaced.set()
            store.put("pinned", os.urandom(MiB))  # a writer replaces the object mid-download
        return n

    store.get_to_file = get_then_replace
    down = Downloader(store, parallel=1, chunk_size=256 * KiB)
    with pytest.raises(PreconditionFailed):
        down.fetch("pinned", info.etag, str(tmp_path / "p"), [(0, MiB)])
    assert replaced.is_set()
    down.close()


# --------------------------------------------------------------------------- failures

def test_wrong_credentials_give_access_denied_quickly(server, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    bad_secret = "wrong-secret-" + uuid.uuid4().hex
    store = make_store(server, secret=bad_secret)
    t0 = time.monotonic()
    with pytest.raises(AccessDenied) as err:
        store.check_bucket()
    assert time.monotonic() - t0 < 2
    assert "wrong access key secret" in str(err.value)
    assert bad_secret not in str(err.value) and server.access_key_secret not in str(err.value)
    with pytest.raises(AccessDenied):
        store.put("x", b"1")

    store = make_store(server, key_id="no-such-key-id")
    with pytest.raises(AccessDenied) as err:
        store.check_bucket()
    assert "wrong access key id" in str(err.value)
    with pytest.raises(AccessDenied):
        store.head("x")  # HEAD answers carry no error body: the code is unknown, the type is not
    logged = caplog.text
    assert bad_secret not in logged and server.access_key_secret not in logged
    assert "Signature=" not in logged and "Authorization" not in logged
    assert server.access_key_secret not in str(err.value)


def test_missing_bucket(server):
    with pytest.raises(NoSuchBucket):
        make_store(server, bucket="no-such-bucket-%s" % uuid.uuid4().hex[:8]).check_bucket()
    make_store(server).check_bucket()  # the real one is fine


def test_server_down_is_unreachable_within_seconds():
    endpoint = "http://127.0.0.1:%d" % free_port()
    store = OssStore(endpoint, "bucket", ("id", "secret-value"), retries=2, connect_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(Unreachable) as err:
        store.check_bucket()
    assert str(err.value) == "cannot reach %s: connection refused" % endpoint
    with pytest.raises(Unreachable):
        store.head("k")
    assert time.monotonic() - t0 < 5
    assert "secret-value" not in str(err.value)


def test_endpoint_that_is_not_oss():
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = "http://127.0.0.1:%d" % httpd.server_address[1]
        store = OssStore(endpoint, "bucket", ("id", "secret"), retries=1)
        with pytest.raises(StoreError) as err:
            store.check_bucket()
        assert "does not speak the OSS protocol" in str(err.value)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_abort_incomplete_by_age(store):
    first = store.initiate_multipart("a")
    second = store.initiate_multipart("b")
    assert {u.upload_id for u in list_incomplete(store)} == {first, second}
    assert abort_incomplete(store, older_than_seconds=3600) == []
    aborted = abort_incomplete(store)
    assert {u.upload_id for u in aborted} == {first, second}
    assert list_incomplete(store) == []
    with pytest.raises(NotFound):
        store.list_parts("a", first)


def test_retry_count_is_ours_and_predictable(server):
    """oss2 does not retry behind our back: retries=2 means exactly three requests."""
    store = make_store(server, retries=2)
    server.set_faults(fault_rate=1.0)
    try:
        counter = Counter(server)
        with pytest.raises(StoreError) as err:
            store.head("anything")
        delta = counter.delta()
    finally:
        server.set_faults()
    assert delta == {"faults": 3}
    assert "after 3 attempts" in str(err.value)


def test_every_upload_sends_content_md5(store):
    import base64

    seen = []
    bucket = store._bucket
    real_put, real_part = bucket.put_object, bucket.upload_part

    def put_object(key, data, headers=None, **kw):
        seen.append(headers.get("Content-MD5"))
        return real_put(key, data, headers=headers, **kw)

    def upload_part(key, upload_id, number, data, headers=None, **kw):
        seen.append(headers.get("Content-MD5"))
        return real_part(key, upload_id, number, data, headers=headers, **kw)

    bucket.put_object, bucket.upload_part = put_object, upload_part
    body = os.urandom(1000)
    store.put("m", body)
    upload_id = store.initiate_multipart("mp")
    store.upload_part("mp", upload_id, 1, body)
    store.abort_multipart("mp", upload_id)
    expected = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert seen == [expected, expected]


def test_signature_v4(server):
    store = make_store(server, prefix="v4-%s/" % uuid.uuid4().hex[:8], sigv4=True, region="cn-hangzhou")
    store.check_bucket()
    info = store.put("k", b"signed with v4", meta={"mode": "33188"})
    assert store.get_range("k", 0, 100, if_match=info.etag) == b"signed with v4"
    assert store.head("k").meta == {"mode": "33188"}
    with pytest.raises(AccessDenied):
        make_store(server, secret="bad-secret", sigv4=True, region="cn-hangzhou").check_bucket()
