"""Faults on this host: a full cache disk, a second mount of the same bucket, and the
ossfs process killed with SIGKILL."""
from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import threading
import time

from mount.conftest import is_mounted

from .conftest import FAULT_MOUNT_OPTS, KiB, MiB, assert_intact, content, write_one


def _tmpfs(path: str, size: str) -> None:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path], check=True,
                   capture_output=True, timeout=30)


def _umount(path: str) -> None:
    for _ in range(50):
        if not os.path.ismount(path):
            return
        if subprocess.run(["umount", path], capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def test_full_cache_disk_gives_enospc_and_keeps_earlier_files(oss_server, mounter, tmp_path):
    cache = str(tmp_path / "tmpfs-cache")
    _tmpfs(cache, "20m")
    m = None
    try:
        m = mounter(use_cache=cache, ensure_diskfree=0, free_space_ratio=0, **FAULT_MOUNT_OPTS)
        earlier = {}
        for i in range(8):
            key = "early-%d.bin" % i
            data = content(key, 300 * KiB)
            write_one(m.p(key), data)
            earlier[key] = hashlib.md5(data).hexdigest()
        outcome = {}

        def big_writer():
            data = content("too-big.bin", 40 * MiB)
            f = open(m.p("too-big.bin"), "wb", buffering=0)
            try:
                for off in range(0, len(data), MiB):
                    f.write(data[off:off + MiB])
                outcome["write"] = "ok"
            except OSError as exc:
                outcome["write"] = errno.errorcode.get(exc.errno, exc.errno)
            try:
                f.close()
                outcome["close"] = "ok"
            except OSError as exc:
                outcome["close"] = errno.errorcode.get(exc.errno, exc.errno)

        t = threading.Thread(target=big_writer, daemon=True)
        t.start()
        t.join(120)
        assert not t.is_alive(), "a write to a full cache disk hung"
        # The write that does not fit fails with ENOSPC; close() then reports the same
        # (or succeeds with what was written), never EIO.
        assert outcome.get("write") == "ENOSPC", outcome
        # Earlier files are intact, in the bucket and through the mount.
        assert_intact(oss_server, earlier)
        for key, md5 in earlier.items():
            with open(m.p(key), "rb") as f:
                assert hashlib.md5(f.read()).hexdigest() == md5
        if outcome.get("close") == "ok":
            # What close() acknowledged is what the successful writes put there.
            got = oss_server.oss_bucket().get_object("too-big.bin").read()
            big = content("too-big.bin", 40 * MiB)
            assert 0 < len(got) < len(big) and got == big[:len(got)]
        # The mount still answers, and once the big file is gone small writes work again.
        try:
            os.unlink(m.p("too-big.bin"))
        except FileNotFoundError:
            pass
        write_one(m.p("after.txt"), b"space again")
        with open(m.p("after.txt"), "rb") as f:
            assert f.read() == b"space again"
        assert oss_server.oss_bucket().get_object("after.txt").read() == b"space again"
        m.unmount()
        assert outcome.get("close") in ("ok", "ENOSPC"), outcome
    finally:
        if m is not None:
            m.force_cleanup()
        _umount(cache)


def test_two_mounts_concurrent_writers_close_to_open(oss_server, mounter):
    a = mounter(**FAULT_MOUNT_OPTS)
    b = mounter(**FAULT_MOUNT_OPTS)
    rounds, writers = 5, 4
    # Writers 0 and 1 write through mount a, 2 and 3 through mount b; the reader
    # checks each file through the other mount.
    side = {w: (a, b) if w < 2 else (b, a) for w in range(writers)}
    published = []          # (key, version) appended after close() returned
    lock = threading.Lock()
    errors = []

    def writer(w: int):
        for v in range(rounds):
            key = "w%d.txt" % w
            data = ("writer %d version %d\n" % (w, v)).encode() * (50 + v)
            try:
                write_one(side[w][0].p(key), data)
            except OSError as exc:
                errors.append(("write", key, v, repr(exc)))
                return
            with lock:
                published.append((key, data))

    def newer_published(key, data) -> bool:
        with lock:
            versions = [d for k, d in published if k == key]
        return versions.index(data) < len(versions) - 1 or any(t.is_alive() for t in threads)

    def check(key, data):
        reader = side[int(key[1:].split(".")[0])][1]
        for _attempt in range(50):
            try:
                with open(reader.p(key), "rb") as f:
                    got = f.read()
                break
            except OSError as exc:
                # The object was replaced between open and read: ESTALE is the honest
                # answer (reads are pinned to the version seen at open); open again.
                # Once no newer version is coming, ESTALE must not repeat.
                if exc.errno != errno.ESTALE or not newer_published(key, data):
                    raise
                time.sleep(0.1)
        else:
            raise AssertionError("ESTALE 50 times in a row for %s" % key)
        # Writers only move forward: the other mount sees this version or a later one.
        if got != data:
            w_got = got.split(b" version ")[1].split(b"\n")[0] if b" version " in got else b"?"
            w_want = data.split(b" version ")[1].split(b"\n")[0]
            if not (w_got.isdigit() and int(w_got) > int(w_want)):
                errors.append(("stale", key, data[:30], got[:30]))

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    for t in threads:
        t.start()
    checked = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (any(t.is_alive() for t in threads) or checked < len(published)):
        with lock:
            pending = published[checked:]
        for key, data in pending:
            try:
                check(key, data)
            except OSError as exc:
                errors.append(("read", key, repr(exc)))
            checked += 1
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert checked == rounds * writers
    assert errors == []
    # Writes from the second mount are visible to the first just as well.
    write_one(b.p("from-b.txt"), b"b wrote this")
    with open(a.p("from-b.txt"), "rb") as f:
        assert f.read() == b"b wrote this"


def test_kill_9_keeps_closed_files_and_recovers_open_dirty_data(oss_server, mounter):
    m = mounter(**FAULT_MOUNT_OPTS)
    closed = {}
    for i in range(5):
        key = "closed-%d.bin" % i
        data = content(key, 150 * KiB)
        write_one(m.p(key), data)
        closed[key] = hashlib.md5(data).hexdigest()
    # A file still open and dirty when the process dies, its data flushed to the cache
    # by fsync? No: fsync uploads.  Written, not closed, not synced.
    dirty = content("open-dirty.bin", 200 * KiB)
    f = open(m.p("open-dirty.bin"), "wb")
    try:
        f.write(dirty)
        f.flush()           # into the kernel -> ossfs write(), not close()
        time.sleep(1.5)     # the cache persists a dirty file's ranges at most every second
        os.kill(m.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % m.pid):
            try:
                with open("/proc/%d/stat" % m.pid) as st:
                    if st.read().split(") ", 1)[1][0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.1)
        # The mount is dead but still in the table: every access fails with ENOTCONN.
        try:
            os.listdir(m.path)
            raise AssertionError("a dead mount answered")
        except OSError as exc:
            # The kernel answers for the dead daemon: ENOTCONN, or ECONNABORTED for
            # a request caught by the abort.
            assert exc.errno in (errno.ENOTCONN, errno.ECONNABORTED), exc
    finally:
        try:
            f.close()
        except OSError:
            pass
    subprocess.run(["fusermount3", "-u", m.path], capture_output=True, timeout=30)
    assert not is_mounted(m.path)
    m.pid = None
    # Files acknowledged by close() are in the bucket.
    assert_intact(oss_server, closed)
    # Mounting again over the same cache directory works (the lock of the dead process
    # went with it); the dirty file left behind is uploaded at the latest at unmount.
    m.start()
    assert set(closed) <= set(os.listdir(m.path))
    m.unmount()
    m.pid = None
    oss = oss_server.oss_bucket()
    assert oss.object_exists("open-dirty.bin"), "the dirty file of the killed mount was lost"
    got = oss.get_object("open-dirty.bin").read()
    # Data not acknowledged by close() is recovered best effort: what was recorded,
    # holes as zeros, never bytes from anywhere else.
    assert len(got) <= len(dirty)
    assert all(g == d or g == 0 for g, d in zip(got, dirty))
    assert got.count(0) < len(got), "nothing of the written data was recovered"
    assert_intact(oss_server, closed)
