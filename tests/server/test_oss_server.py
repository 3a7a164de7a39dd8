"""Server behaviour: fault injection, counters, restart, concurrency, throttling, command line."""
import os
import subprocess
import sys
import threading
import time
import uuid

import oss2
import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fault_rate_one_refuses_everything_before_the_store(oss_server, monkeypatch):
    monkeypatch.setattr(oss2.defaults, "request_retries", 0)
    b = oss_server.oss_bucket()
    b.put_object("before", b"x")
    oss_server.reset_stats()
    assert oss_server.set_faults(fault_rate=1.0)["fault_rate"] == 1.0
    statuses = set()
    for i in range(10):
        with pytest.raises(oss2.exceptions.ServerError) as e:
            b.put_object("during-%d" % i, b"y")
        assert e.value.status in (500, 503)
        assert e.value.code in ("InternalError", "ServiceUnavailable")
        statuses.add(e.value.status)
    with pytest.raises(oss2.exceptions.ServerError):
        b.get_object("before")
    oss_server.set_faults()
    st = oss_server.stats()
    assert st["requests"] == {"faults": 11} and st["total"] == 11
    assert b.get_object("before").read() == b"x"
    assert [o.key for o in oss2.ObjectIterator(b)] == ["before"]   # nothing reached the store
    assert statuses <= {500, 503}


def test_fail_next_refuses_exactly_that_many_requests(oss_server, monkeypatch):
    monkeypatch.setattr(oss2.defaults, "request_retries", 0)
    b = oss_server.oss_bucket()
    oss_server.reset_stats()
    assert oss_server.set_faults(fail_next=2)["fail_next"] == 2
    for i in range(2):
        with pytest.raises(oss2.exceptions.ServerError) as e:
            b.put_object("k", b"%d" % i)
        assert (e.value.status, e.value.code) == (503, "ServiceUnavailable")
    b.put_object("k", b"third")
    assert oss_server.set_faults()["fail_next"] == 0
    assert oss_server.stats()["requests"] == {"faults": 2, "PutObject": 1}
    assert b.get_object("k").read() == b"third"


def test_drop_rate_cuts_connections_both_ways(oss_server):
    b = oss_server.oss_bucket()
    data = os.urandom(256 * 1024)
    b.put_object("big", data)
    oss_server.set_faults(drop_rate=1.0)
    # the headers arrive, the body is cut: oss2 lets requests' error through on read()
    with pytest.raises((oss2.exceptions.RequestError, requests.exceptions.ChunkedEncodingError)):
        b.get_object("big").read()
    with pytest.raises(oss2.exceptions.RequestError):
        b.put_object("dropped-upload", os.urandom(512 * 1024))
    with pytest.raises(oss2.exceptions.RequestError):
        b.head_object("big")
    oss_server.set_faults(drop_rate=0)
    with pytest.raises(oss2.exceptions.NoSuchKey):
        b.get_object("dropped-upload")
    assert b.get_object("big").read() == data
    # and a dropped GET really stopped mid-body: the raw stream is short
    oss_server.set_faults(drop_rate=1.0)
    url = b.sign_url("GET", "big", 60)
    got = b""
    with pytest.raises(requests.exceptions.RequestException):
        with requests.get(url, stream=True, timeout=10) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(65536):
                got += chunk
    assert 0 < len(got) < len(data)
    oss_server.set_faults(drop_rate=0)


def test_counters_exact_for_a_known_sequence(oss_server):
    b = oss_server.oss_bucket()
    oss_server.reset_stats()
    b.put_object("a", b"1")
    b.get_object("a").read()
    b.head_object("a")
    b.list_objects()
    b.list_objects_v2()
    b.copy_object(b.bucket_name, "a", "b")
    b.append_object("c", 0, b"x")
    b.put_symlink("a", "l")
    b.get_symlink("l")
    up = b.init_multipart_upload("m")
    r = b.upload_part("m", up.upload_id, 1, b"p")
    b.upload_part_copy(b.bucket_name, "a", (0, 0), "m", up.upload_id, 2)
    b.list_parts("m", up.upload_id)
    b.list_multipart_uploads()
    b.complete_multipart_upload("m", up.upload_id, [oss2.models.PartInfo(1, r.etag)])
    up2 = b.init_multipart_upload("n")
    b.abort_multipart_upload("n", up2.upload_id)
    b.batch_delete_objects(["a", "b"])
    b.delete_object("c")
    b.get_bucket_info()
    b.get_bucket_location()
    list(oss2.BucketIterator(oss_server.oss_service()))
    st = oss_server.stats()
    assert st["requests"] == {
        "PutObject": 1, "GetObject": 1, "HeadObject": 1, "ListObjects": 1, "ListObjectsV2": 1,
        "CopyObject": 1, "AppendObject": 1, "PutSymlink": 1, "GetSymlink": 1,
        "InitiateMultipartUpload": 2, "UploadPart": 1, "UploadPartCopy": 1, "ListParts": 1,
        "ListMultipartUploads": 1, "CompleteMultipartUpload": 1, "AbortMultipartUpload": 1,
        "DeleteMultipleObjects": 1, "DeleteObject": 1, "GetBucketInfo": 1, "GetBucketLocation": 1,
        "ListBuckets": 1}
    assert st["total"] == 22
    assert st["bytes_in"] >= 3 and st["bytes_out"] > 0


def test_restart_keeps_objects_and_uploads(oss_server):
    b = oss_server.oss_bucket()
    data = os.urandom(200 * 1024)
    b.put_object("keep/me", data, headers={"x-oss-meta-mode": "33188"})
    b.append_object("keep/app", 0, b"ab")
    up = b.init_multipart_upload("keep/mp")
    p1 = b.upload_part("keep/mp", up.upload_id, 1, data)
    oss_server.restart()
    b = oss_server.oss_bucket()
    g = b.get_object("keep/me")
    assert g.read() == data and g.headers["x-oss-meta-mode"] == "33188"
    assert b.append_object("keep/app", 2, b"cd").next_position == 4
    p2 = b.upload_part("keep/mp", up.upload_id, 2, b"tail")
    assert [p.part_number for p in b.list_parts("keep/mp", up.upload_id).parts] == [1, 2]
    b.complete_multipart_upload("keep/mp", up.upload_id, [oss2.models.PartInfo(1, p1.etag),
                                                          oss2.models.PartInfo(2, p2.etag)])
    assert b.get_object("keep/mp").read() == data + b"tail"
    # no temp files or unreferenced blobs are left behind: the completed object keeps
    # its data in its two part files, which go with it
    assert os.listdir(os.path.join(oss_server.data_dir, "tmp")) == []
    assert len(os.listdir(os.path.join(oss_server.data_dir, "parts"))) == 2
    b.delete_object("keep/mp")
    assert os.listdir(os.path.join(oss_server.data_dir, "parts")) == []


def test_32_concurrent_clients(oss_server):
    errors = []
    n_clients, rounds = 32, 5

    def client(i):
        try:
            b = oss_server.oss_bucket()   # each its own session
            for r in range(rounds):
                key = "conc/%02d/%d" % (i, r)
                body = ("%d-%d-" % (i, r)).encode() * 100
                b.put_object(key, body)
                assert b.get_object(key).read() == body
                keys = [o.key for o in oss2.ObjectIterator(b, prefix="conc/%02d/" % i)]
                assert keys == ["conc/%02d/%d" % (i, x) for x in range(r + 1)]
                b.put_object("conc/shared", body)   # last writer wins, never a mix
                shared = b.get_object("conc/shared").read()
                assert shared == shared[: len(shared) // 100] * 100
            b.delete_object("conc/%02d/0" % i)
        except Exception as e:   # collected and asserted in the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    b = oss_server.oss_bucket()
    keys = [o.key for o in oss2.ObjectIterator(b, prefix="conc/", max_keys=1000)]
    assert len(keys) == n_clients * (rounds - 1) + 1
    assert oss_server.stats()["requests"]["PutObject"] == n_clients * rounds * 2


def test_latency_and_bandwidth(oss_server):
    b = oss_server.oss_bucket()
    data = os.urandom(200_000)
    b.put_object("slow", data)
    oss_server.set_faults(latency_ms=300)
    t = time.monotonic()
    b.head_object("slow")
    assert time.monotonic() - t >= 0.29
    oss_server.set_faults(latency_ms=0, bandwidth=400_000)
    t = time.monotonic()
    assert b.get_object("slow").read() == data
    took = time.monotonic() - t
    assert took >= 0.4, took
    t = time.monotonic()
    b.put_object("slow2", data)
    assert time.monotonic() - t >= 0.4
    oss_server.set_faults()
    t = time.monotonic()
    b.get_object("slow").read()
    assert time.monotonic() - t < 0.4


def test_chunked_upload_and_hooks_validation(oss_server):
    b = oss_server.oss_bucket()
    url = b.sign_url("PUT", "chunked", 60)

    def gen():
        for i in range(5):
            yield b"part%d," % i
    r = requests.put(url, data=gen())   # a generator makes requests use chunked encoding
    assert r.status_code == 200
    assert b.get_object("chunked").read() == b"part0,part1,part2,part3,part4,"
    r = requests.post(oss_server.endpoint + "/_ossfs/faults", json={"fault_rate": 2})
    assert r.status_code == 400
    r = requests.post(oss_server.endpoint + "/_ossfs/faults", json={"nonsense": 1})
    assert r.status_code == 400
    assert requests.get(oss_server.endpoint + "/_ossfs/faults").json()["fault_rate"] == 0


def test_keep_alive_reuses_connections(oss_server):
    b = oss_server.oss_bucket()
    b.put_object("ka", b"x")
    s = requests.Session()
    url = b.sign_url("GET", "ka", 60)
    ports = set()
    for _ in range(5):
        r = s.get(url, stream=True)
        ports.add(r.raw._connection.sock.getsockname()[1])
        assert r.content == b"x"
    assert len(ports) == 1


def run_cli(*args, env=None):
    e = dict(os.environ, PYTHONPATH=REPO)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ossfs.server"] + list(args), capture_output=True,
                          text=True, timeout=30, env=e)


def test_cli_errors_are_one_line(tmp_path):
    for args in (["--port", "x", "--data", str(tmp_path)], ["--fault-rate", "3", "--data", str(tmp_path)],
                 [], ["--data", str(tmp_path), "--bucket", "Bad_Bucket"],
                 ["--data", str(tmp_path), "--access-key-id", "only-id"],
                 ["--data", "/proc/nope/data"], ["--data", str(tmp_path), "--port", "70000"],
                 ["--data", ""], ["--data", "  "]):
        r = run_cli(*args)
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ossfs-server:"), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_cli_help_documents_default_credentials():
    r = run_cli("--help")
    assert r.returncode == 0
    from ossfs.server.__main__ import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
    flat = " ".join(r.stdout.split())
    assert DEFAULT_ACCESS_KEY_ID in flat and DEFAULT_ACCESS_KEY_SECRET in flat
