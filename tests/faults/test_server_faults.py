"""A real workload through a mount while the server misbehaves.

Each test injects one kind of fault on the server (random 5xx, latency, a bandwidth
cap, cut connections, a restart), runs the workload of ``conftest.py`` through an
ossfs mount with ``retries=10`` and checks that

* the workload saw no error (every fault here is one that retries can hide),
* every file whose close() returned is intact in the bucket (MD5 via oss2),
* the mount still answers afterwards,
* and the faults really happened (the server's counters or the test's own clock).
"""
from __future__ import annotations

import threading
import time

import pytest

from .conftest import FAULT_MOUNT_OPTS, KiB, MiB, assert_answers, assert_intact, run_workload, workload_files


def _uploads(stats) -> int:
    r = stats["requests"]
    return r.get("PutObject", 0) + r.get("UploadPart", 0)


@pytest.mark.parametrize("fault_rate,retries", [(0.1, 5), (0.2, 10)])
def test_random_5xx_never_reach_the_workload(oss_server, mounter, fault_rate, retries):
    m = mounter(**dict(FAULT_MOUNT_OPTS, retries=retries))
    files = workload_files()
    oss_server.reset_stats()
    oss_server.set_faults(fault_rate=fault_rate)
    try:
        res = run_workload(m.path, files)
        stats = oss_server.stats()
    finally:
        oss_server.set_faults()
    assert res.errors == []
    assert len(res.closed) == len(files) and res.read_back == len(files)
    # Roughly fault_rate of some hundred requests were refused: at least a handful.
    assert stats["requests"].get("faults", 0) >= 5, stats
    assert_intact(oss_server, res.closed)
    assert_answers(m, files)


def test_latency(oss_server, mounter):
    m = mounter(**FAULT_MOUNT_OPTS)
    files = workload_files(small=12, large=(20 * MiB,))
    oss_server.set_faults(latency_ms=150)
    try:
        t0 = time.monotonic()
        res = run_workload(m.path, files)
        elapsed = time.monotonic() - t0
    finally:
        oss_server.set_faults()
    assert res.errors == []
    assert len(res.closed) == len(files)
    # 13 files need at least one request each: the latency really was there.
    assert elapsed >= 13 * 0.15
    assert_intact(oss_server, res.closed)
    assert_answers(m, files)


def test_bandwidth_cap(oss_server, mounter):
    m = mounter(**FAULT_MOUNT_OPTS)
    files = workload_files(small=10, large=(20 * MiB,))
    oss_server.set_faults(bandwidth=8 * MiB)
    try:
        t0 = time.monotonic()
        res = run_workload(m.path, files)
        elapsed = time.monotonic() - t0
    finally:
        oss_server.set_faults()
    assert res.errors == []
    assert len(res.closed) == len(files)
    # 20 MiB through connections capped at 8 MiB/s each, 3 in parallel: at least ~0.8 s.
    assert elapsed >= 20 / (8 * 3)
    assert_intact(oss_server, res.closed)
    assert_answers(m, files)


def test_cut_connections(oss_server, mounter):
    m = mounter(**FAULT_MOUNT_OPTS)
    files = workload_files()
    oss_server.reset_stats()
    oss_server.set_faults(drop_rate=0.15)
    try:
        res = run_workload(m.path, files)
        stats = oss_server.stats()
    finally:
        oss_server.set_faults()
    assert res.errors == []
    # 30 single PUTs and 9 parts are needed; cut ones were sent again.
    assert _uploads(stats) > 30 + 9, stats
    assert len(res.closed) == len(files) and res.read_back == len(files)
    assert_intact(oss_server, res.closed)
    assert_answers(m, files)


def test_server_restarted_while_the_workload_runs(oss_server, mounter):
    m = mounter(**FAULT_MOUNT_OPTS)
    files = workload_files()
    port = oss_server.port
    restarted = threading.Event()
    result = {}

    def work():
        result["res"] = run_workload(m.path, files, deadline_s=400)

    t = threading.Thread(target=work, name="workload", daemon=True)
    t.start()
    try:
        # Restart twice: once among the small files, once during a large upload.
        for when in (8, 31):
            deadline = time.monotonic() + 200
            # Wait until the workload has written `when` files (progress seen in the bucket).
            oss = oss_server.oss_bucket()
            while time.monotonic() < deadline and t.is_alive():
                n = sum(1 for o in oss.list_objects(prefix="tree/", max_keys=1000).object_list
                        if not o.key.endswith("/"))
                if n >= when:
                    break
                time.sleep(0.2)
            if when == 31:
                time.sleep(1.0)   # inside the first large upload
            oss_server.restart()
            restarted.set()
            assert oss_server.port == port
    finally:
        t.join(450)
    assert not t.is_alive(), "workload hung after the server restart"
    res = result["res"]
    assert restarted.is_set()
    assert res.errors == []
    assert len(res.closed) == len(files)
    assert_intact(oss_server, res.closed)
    assert_answers(m, files)


def _start_again(server, port):
    for _ in range(50):
        try:
            server.start(port)
            return
        except RuntimeError:
            time.sleep(0.2)
    server.start(port)


def test_server_down_gives_eio_and_keeps_data_for_later(oss_server, mounter):
    """While the server is down: a lookup of an unknown name and a create are EIO (never
    ENOENT), within the retry budget; a file opened before the outage and closed
    during it gets EIO from close(), keeps its data in the cache, and the data reaches
    the bucket once the server is back (here: at unmount)."""
    import errno
    import hashlib
    import os
    from .conftest import content, write_one
    m = mounter(**dict(FAULT_MOUNT_OPTS, retries=2, connect_timeout=3, readwrite_timeout=5))
    write_one(m.p("before.bin"), content("before.bin", 64 * KiB))
    pending = content("pending.bin", 300 * KiB)
    f = open(m.p("pending.bin"), "wb", buffering=0)
    f.write(pending)
    port = oss_server.port
    oss_server.stop()
    outcome = {}

    def attempt():
        t0 = time.monotonic()
        for what, fn in (("stat", lambda: os.stat(m.p("never-seen"))),
                         ("create", lambda: open(m.p("during.bin"), "wb").close()),
                         ("close", f.close)):
            try:
                fn()
                outcome[what] = "ok"
            except OSError as exc:
                outcome[what] = errno.errorcode.get(exc.errno)
        outcome["seconds"] = time.monotonic() - t0

    try:
        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(150)
        assert not t.is_alive(), "the mount hung while the server was down"
    finally:
        _start_again(oss_server, port)
    assert outcome == {"stat": "EIO", "create": "EIO", "close": "EIO", "seconds": outcome["seconds"]}
    assert outcome["seconds"] < 120, outcome
    # The mount answers again once the server is back; the unmount sends the data.
    assert "before.bin" in os.listdir(m.path)
    m.unmount()
    assert_intact(oss_server, {"pending.bin": hashlib.md5(pending).hexdigest()})
    assert not oss_server.oss_bucket().object_exists("during.bin")


def test_failed_rename_and_rm_through_the_mount_lose_nothing(oss_server, mounter):
    """Every request fails while ``mv s t`` and ``rm u`` run: both give EIO, and the
    files they would have replaced or removed (open, with unsent changes) are uploaded
    at their close once the server answers again."""
    import errno
    import hashlib
    import os
    # the stat cache answers the lookups, so the calls get as far as their copy/delete
    m = mounter(retries=1, connect_timeout=3, readwrite_timeout=5)
    for name, body in (("s", b"source"), ("t", b"old-t"), ("u", b"old-u")):
        with open(m.p(name), "wb") as f:
            f.write(body)
    for name in ("s", "t", "u"):
        os.stat(m.p(name))
    oss_server.reset_stats()
    t = open(m.p("t"), "r+b", buffering=0)
    t.write(b"precious new data of t")
    u = open(m.p("u"), "r+b", buffering=0)
    u.write(b"precious new data of u")
    outcome = []
    oss_server.set_faults(fault_rate=1.0)
    try:
        for fn in (lambda: os.rename(m.p("s"), m.p("t")), lambda: os.unlink(m.p("u"))):
            try:
                fn()
                outcome.append("ok")
            except OSError as exc:
                outcome.append(errno.errorcode.get(exc.errno))
        refused = oss_server.stats()["requests"].get("faults", 0)
    finally:
        oss_server.set_faults()
        t.close()
        u.close()
    assert outcome == ["EIO", "EIO"]
    assert refused >= 2
    assert_intact(oss_server, {"s": hashlib.md5(b"source").hexdigest(),
                               "t": hashlib.md5(b"precious new data of t").hexdigest(),
                               "u": hashlib.md5(b"precious new data of u").hexdigest()})
    assert sorted(os.listdir(m.path)) == ["s", "t", "u"]
