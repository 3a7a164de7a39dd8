"""The seven workloads.  Each is a function ``(ctx, peer, run) -> [Sample]``.

How a metric is measured (:meth:`Ctx.measure`): reset the server's counters, run the
operation, then wait until its effect is on the server (``settle``: for rclone, whose
uploads are asynchronous, this is where its upload time is counted; for the others it
is one check that finds the data already there), then read the counters less the
harness's own probe requests.  The timed region is operation + settle.

Large files are random data (generated once per size under the source directory) so
that no peer gains from zeros.  Objects that a workload only reads or renames are
prepared on the server side (oss2 from a thread pool, with s3fs-style ``x-oss-meta-*``
headers), outside the timed region.
"""
from __future__ import annotations

import io
import logging
import os
import random
import shutil
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import oss2

from .common import MiB, BenchError, Sample, Scale, drop_kernel_caches, run_cmd, timed, wait_until
from .peers import Peer
from .server import ACCESS_KEY_ID, ACCESS_KEY_SECRET, BUCKET, Probe, Server

log = logging.getLogger(__name__)

SETTLE_TIMEOUT = 900
WORKLOADS = ("write", "read", "small", "list", "rename", "tree", "rss")


@dataclass
class Ctx:
    scale: Scale
    server: Server
    probe: Probe
    work: str           # this invocation's scratch directory
    src_dir: str        # generated inputs, kept between invocations
    part_size: int      # ossfs's multipart part size, used for the SDK floor too
    parallel: int       # ossfs's parallel_count, used for the SDK floor too
    multipart_threshold: int
    copy_part_size: int

    # -- inputs ---------------------------------------------------------------------
    def random_file(self, size: int) -> str:
        """A file of ``size`` random bytes (generated once, kept in src_dir)."""
        path = os.path.join(self.src_dir, "random-%d" % size)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            tmp = path + ".tmp"
            rnd = random.Random(size)
            with open(tmp, "wb") as f:
                left = size
                while left:
                    n = min(left, 4 * MiB)
                    f.write(rnd.randbytes(n))
                    left -= n
            os.rename(tmp, path)
        return path

    def tarball(self) -> tuple:
        """(path, number of files): a deterministic tree of varied small files, as a tar."""
        n = self.scale.tree_files
        path = os.path.join(self.src_dir, "tree-%d.tar" % n)
        if not os.path.exists(path):
            rnd = random.Random(n)
            tmp = path + ".tmp"
            with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
                ndirs = max(1, n // 20)
                dirs = ["src"]
                for d in range(ndirs):
                    dirs.append("%s/d%03d" % (rnd.choice(dirs), d))
                for d in dirs:
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
                    tar.addfile(ti)
                for i in range(n):
                    size = int(2 ** rnd.uniform(6, 17))        # 64 B .. 128 KiB, log-uniform
                    ti = tarfile.TarInfo("%s/f%05d.%s" % (rnd.choice(dirs), i, rnd.choice("c h py txt".split())))
                    ti.size, ti.mode, ti.mtime = size, 0o644, 1700000000 + i
                    tar.addfile(ti, io.BytesIO(rnd.randbytes(size)))
            os.rename(tmp, path)
        return path, n

    def ensure_object(self, key: str, size: int) -> None:
        """``key`` holds the random data of ``size`` (server-side copy from src/)."""
        if self.probe.size(key) == size:
            return
        src = "src/random-%d" % size
        if self.probe.size(src) != size:
            self.probe.upload_file(src, self.random_file(size))
        self.probe.copy(src, key, size)

    # -- measuring ------------------------------------------------------------------
    def measure(self, workload: str, metric: str, peer: Peer, run: int, op: Callable[[], object],
                settle: Optional[Callable[[], bool]] = None, *, amount: Optional[float] = None,
                unit: str = "s", higher: bool = False) -> Sample:
        """Times ``op`` plus ``settle`` (polled until true); the value is ``amount``/time
        when ``amount`` is given (a rate), else the time in seconds."""
        s = Sample(workload, metric, peer.name, run, None, unit, higher)
        try:
            self.server.reset_stats(self.probe)
            t0 = time.perf_counter()
            op()
            if settle is not None:
                wait_until(settle, timeout=SETTLE_TIMEOUT, interval=0.02,
                           what="%s %s on the server" % (peer.name, metric))
            dt = time.perf_counter() - t0
            st = self.server.take_stats(self.probe)
            s.value = amount / dt if amount is not None else dt
            s.requests, s.bytes_in, s.bytes_out = st["requests"], st["bytes_in"], st["bytes_out"]
        except (BenchError, OSError, oss2.exceptions.OssError) as e:
            s.error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            log.warning("%s / %s / %s: %s", workload, metric, peer.name, s.error)
        return s

    def sdk_bucket(self) -> oss2.Bucket:
        """A separate client for the SDK floor, so its requests are not taken for the probe's."""
        return oss2.Bucket(oss2.Auth(ACCESS_KEY_ID, ACCESS_KEY_SECRET), self.server.url, BUCKET,
                           connect_timeout=30)


def failed(workload: str, metrics, peer: Peer, run: int, error: str) -> list:
    return [Sample(workload, m, peer.name, run, None, u, h, error=error) for m, u, h in metrics]


def _dd(src: str, dst: str, count: Optional[int] = None, extra=()) -> Callable[[], object]:
    argv = ["dd", "if=" + src, "of=" + dst, "bs=1M", "status=none"] + list(extra)
    if count is not None:
        argv.append("count=%d" % count)
    return lambda: run_cmd(argv, timeout=SETTLE_TIMEOUT)


def _has_size(ctx: Ctx, key: str, size: int) -> Callable[[], bool]:
    return lambda: ctx.probe.size(key) == size


def _file_count(ctx: Ctx, prefix: str, n: int) -> Callable[[], bool]:
    return lambda: len(ctx.probe.file_keys(prefix)) == n


# -- 1. large sequential write ------------------------------------------------------
def w_write(ctx: Ctx, peer: Peer, run: int) -> list:
    size = ctx.scale.big_bytes
    src = ctx.random_file(size)
    m = "write %d MiB MiB/s" % (size // MiB)
    if peer.kind == "sdk":
        b = ctx.sdk_bucket()
        store = oss2.ResumableStore(root=ctx.work)
        op = lambda: oss2.resumable_upload(b, peer.key("big"), src, store=store,
                                           multipart_threshold=ctx.multipart_threshold,
                                           part_size=ctx.part_size, num_threads=ctx.parallel)
        return [ctx.measure("write", m, peer, run, op, amount=size / MiB, unit="MiB/s", higher=True)]
    if peer.kind == "disk":
        return [ctx.measure("write", m, peer, run, _dd(src, peer.path("big"), extra=["conv=fsync"]),
                            amount=size / MiB, unit="MiB/s", higher=True)]
    ctx.probe.delete_prefix(peer.key("big"))
    peer.fresh_mount()
    try:
        return [ctx.measure("write", m, peer, run, _dd(src, peer.path("big")),
                            _has_size(ctx, peer.key("big"), size), amount=size / MiB, unit="MiB/s", higher=True)]
    finally:
        peer.unmount()


# -- 2. read back cold and warm -----------------------------------------------------
def w_read(ctx: Ctx, peer: Peer, run: int) -> list:
    size = ctx.scale.big_bytes
    cold, warm = "read cold MiB/s", "read warm MiB/s"
    rate = dict(amount=size / MiB, unit="MiB/s", higher=True)
    if peer.kind == "sdk":
        ctx.ensure_object(peer.key("big"), size)
        b = ctx.sdk_bucket()
        dst = os.path.join(ctx.work, "sdk-download")
        store = oss2.ResumableStore(root=ctx.work)
        op = lambda: oss2.resumable_download(b, peer.key("big"), dst, store=store,
                                             multiget_threshold=ctx.multipart_threshold,
                                             part_size=ctx.part_size, num_threads=ctx.parallel)
        try:
            return [ctx.measure("read", cold, peer, run, op, **rate)]
        finally:
            if os.path.exists(dst):
                os.unlink(dst)
    path = peer.path("big")
    if peer.kind == "disk":
        if not os.path.exists(path) or os.path.getsize(path) != size:
            shutil.copyfile(ctx.random_file(size), path)
        drop_kernel_caches()
    else:
        ctx.ensure_object(peer.key("big"), size)
        peer.fresh_mount()
    try:
        return [ctx.measure("read", cold, peer, run, _dd(path, "/dev/null"), **rate),
                ctx.measure("read", warm, peer, run, _dd(path, "/dev/null"), **rate)]
    finally:
        peer.unmount()


# -- 3. many small files ------------------------------------------------------------
def w_small(ctx: Ctx, peer: Peer, run: int) -> list:
    n, size = ctx.scale.small_count, ctx.scale.small_size
    rnd = random.Random(n)
    blobs = [rnd.randbytes(size) for _ in range(n)]
    names = ["f%05d" % i for i in range(n)]
    prefix = peer.key("small/")
    mc, ml, md = ("create %d x %d KiB files/s" % (n, size // 1024), "ls -l %d files s" % n,
                  "delete %d files/s" % n)
    ctx.probe.delete_prefix(prefix)
    if peer.kind == "sdk":
        b = ctx.sdk_bucket()

        def create():
            for name, blob in zip(names, blobs):
                b.put_object(prefix + name, blob)

        def listing():
            return sum(1 for _ in oss2.ObjectIterator(b, prefix=prefix, delimiter="/", max_keys=1000))

        def delete():
            for name in names:
                b.delete_object(prefix + name)
        return [ctx.measure("small", mc, peer, run, create, amount=n, unit="files/s", higher=True),
                ctx.measure("small", ml, peer, run, listing),
                ctx.measure("small", md, peer, run, delete, amount=n, unit="files/s", higher=True)]
    if peer.kind == "mount":
        peer.fresh_mount()
    d = peer.path("small")
    try:
        shutil.rmtree(d, ignore_errors=True)
        os.mkdir(d)

        def create():
            for name, blob in zip(names, blobs):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(blob)

        def delete():
            for name in names:
                os.unlink(os.path.join(d, name))
        mount = peer.kind == "mount"
        out = [ctx.measure("small", mc, peer, run, create, _file_count(ctx, prefix, n) if mount else None,
                           amount=n, unit="files/s", higher=True),
               ctx.measure("small", ml, peer, run, lambda: run_cmd(["ls", "-l", d], timeout=600))]
        out.append(ctx.measure("small", md, peer, run, delete, _file_count(ctx, prefix, 0) if mount else None,
                               amount=n, unit="files/s", higher=True))
        return out
    finally:
        peer.unmount()
        if peer.kind == "disk":
            shutil.rmtree(d, ignore_errors=True)
        ctx.probe.delete_prefix(prefix)


# -- 4. listing a large directory made on the server side ---------------------------
LIST_DIR = "list"


def prepare_list(ctx: Ctx, peers) -> None:
    """``list/`` with list_count objects on the server (and the same files on disk)."""
    n = ctx.scale.list_count
    prefix = LIST_DIR + "/"
    have = ctx.probe.file_keys(prefix)
    if len(have) != n:
        ctx.probe.delete_prefix(prefix)
        ctx.probe.put_dir(prefix)
        ctx.probe.put_many([(prefix + "obj%06d" % i, b"x" * (i % 512)) for i in range(n)])
    for p in peers:
        if p.kind == "disk":
            d = os.path.join(os.path.dirname(p.root.rstrip("/")), LIST_DIR)
            if not os.path.isdir(d) or len(os.listdir(d)) != n:
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
                for i in range(n):
                    with open(os.path.join(d, "obj%06d" % i), "wb") as f:
                        f.write(b"x" * (i % 512))


def w_list(ctx: Ctx, peer: Peer, run: int) -> list:
    n = ctx.scale.list_count
    phases = ("cold", "warm", "remount")
    out = []
    if peer.kind == "sdk":
        b = ctx.sdk_bucket()

        def listing():
            if sum(1 for _ in oss2.ObjectIterator(b, prefix=LIST_DIR + "/", delimiter="/", max_keys=1000)) < n:
                raise BenchError("listing found fewer than %d objects" % n)
        for ph in phases:
            out.append(ctx.measure("list", "ls -l %d %s s" % (n, ph), peer, run, listing))
        return out
    d = os.path.join(os.path.dirname(peer.root.rstrip("/")), LIST_DIR)

    def counted(argv, expect):
        def op():
            lines = run_cmd(argv, timeout=1800).stdout.count(b"\n")
            if lines != expect:     # a peer that lists less has not done the work
                raise BenchError("%s printed %d lines, expected %d" % (argv[0], lines, expect))
        return op
    ls = counted(["ls", "-l", d], n + 1)          # + the "total" line
    find = counted(["find", d], n + 1)            # + the directory itself
    try:
        for ph in phases:
            if ph == "cold":
                peer.fresh_mount()
            elif ph == "remount":
                peer.remount()
                if peer.kind == "disk":
                    pass     # a local directory has nothing to remount
            out.append(ctx.measure("list", "ls -l %d %s s" % (n, ph), peer, run, ls))
            out.append(ctx.measure("list", "find %d %s s" % (n, ph), peer, run, find))
        return out
    finally:
        peer.unmount()


# -- 5. rename a large file and a directory -----------------------------------------
def w_rename(ctx: Ctx, peer: Peer, run: int) -> list:
    size, n = ctx.scale.big_bytes, ctx.scale.rename_dir_count
    mf, md = "rename %d MiB file s" % (size // MiB), "rename dir of %d files s" % n
    src_key, dst_key = peer.key("rbig"), peer.key("rbig2")
    sdir, ddir = peer.key("rdir/"), peer.key("rdir2/")
    names = ["f%05d" % i for i in range(n)]
    if peer.kind == "disk":
        shutil.rmtree(peer.path("rdir"), ignore_errors=True)
        shutil.rmtree(peer.path("rdir2"), ignore_errors=True)
        os.makedirs(peer.path("rdir"))
        for name in names:
            with open(os.path.join(peer.path("rdir"), name), "wb") as f:
                f.write(b"y" * 4096)
        shutil.copyfile(ctx.random_file(size), peer.path("rbig"))
        os.sync()
        try:
            return [ctx.measure("rename", mf, peer, run, lambda: os.rename(peer.path("rbig"), peer.path("rbig2"))),
                    ctx.measure("rename", md, peer, run, lambda: os.rename(peer.path("rdir"), peer.path("rdir2")))]
        finally:
            shutil.rmtree(peer.path("rdir2"), ignore_errors=True)
            for f in ("rbig", "rbig2"):
                if os.path.exists(peer.path(f)):
                    os.unlink(peer.path(f))
    for k in (dst_key, ddir, sdir):
        ctx.probe.delete_prefix(k)
    ctx.ensure_object(src_key, size)
    ctx.probe.put_dir(sdir)
    ctx.probe.put_many([(sdir + name, b"y" * 4096) for name in names])
    file_done = lambda: ctx.probe.size(dst_key) == size and ctx.probe.size(src_key) is None
    dir_done = lambda: len(ctx.probe.file_keys(ddir)) == n and not ctx.probe.file_keys(sdir)
    try:
        if peer.kind == "sdk":
            b = ctx.sdk_bucket()

            def copy_delete(src, dst, length):
                if length < 1 << 30:
                    b.copy_object(BUCKET, src, dst)
                else:
                    uid = b.init_multipart_upload(dst).upload_id
                    parts = []
                    for i, start in enumerate(range(0, length, ctx.copy_part_size), 1):
                        end = min(start + ctx.copy_part_size, length) - 1
                        parts.append(oss2.models.PartInfo(i, b.upload_part_copy(BUCKET, src, (start, end),
                                                                                  dst, uid, i).etag))
                    b.complete_multipart_upload(dst, uid, parts)
                b.delete_object(src)

            def dir_op():
                for k in [sdir] + [sdir + nm for nm in names]:
                    copy_delete(k, ddir + k[len(sdir):], 1)
            return [ctx.measure("rename", mf, peer, run, lambda: copy_delete(src_key, dst_key, size), file_done),
                    ctx.measure("rename", md, peer, run, dir_op, dir_done)]
        peer.fresh_mount()
        mv = lambda a, b: (lambda: run_cmd(["mv", peer.path(a), peer.path(b)], timeout=SETTLE_TIMEOUT))
        return [ctx.measure("rename", mf, peer, run, mv("rbig", "rbig2"), file_done),
                ctx.measure("rename", md, peer, run, mv("rdir", "rdir2"), dir_done)]
    finally:
        peer.unmount()
        for k in (src_key, dst_key, sdir, ddir):
            ctx.probe.delete_prefix(k)


# -- 6. extract a source tarball, copy the tree out ---------------------------------
def w_tree(ctx: Ctx, peer: Peer, run: int) -> list:
    tar, n = ctx.tarball()
    mx, mc = "untar %d files s" % n, "cp -r %d files out s" % n
    if peer.kind == "sdk":
        return []
    prefix = peer.key("tree/")
    out_dir = os.path.join(ctx.work, "tree-out-" + peer.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    if peer.kind == "mount":
        ctx.probe.delete_prefix(prefix)
        peer.fresh_mount()
    d = peer.path("tree")
    shutil.rmtree(d, ignore_errors=True)
    try:
        os.mkdir(d)
        settle = None
        if peer.kind == "mount":
            # Count files only (keys not ending in /): not every peer makes directory objects.
            settle = lambda: len(ctx.probe.file_keys(prefix)) >= n
        out = [ctx.measure("tree", mx, peer, run, lambda: run_cmd(["tar", "-xf", tar, "-C", d], timeout=3600),
                           settle)]
        peer.fresh_mount()
        out.append(ctx.measure("tree", mc, peer, run, lambda: run_cmd(["cp", "-r", d, out_dir], timeout=3600)))
        return out
    finally:
        peer.unmount()
        shutil.rmtree(out_dir, ignore_errors=True)
        if peer.kind == "mount":
            ctx.probe.delete_prefix(prefix)
        else:
            shutil.rmtree(d, ignore_errors=True)


# -- 7. peak memory while writing a large file --------------------------------------
def _status_kb(pid: int, field: str) -> int:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def w_rss(ctx: Ctx, peer: Peer, run: int) -> list:
    size = ctx.scale.rss_bytes
    mr, mw = "peak RSS writing %d MiB MB" % (size // MiB), "write %d MiB (RSS run) MiB/s" % (size // MiB)
    if peer.kind != "mount":
        return []
    big = ctx.random_file(ctx.scale.big_bytes)
    repeat = -(-size // ctx.scale.big_bytes)
    key = peer.key("rss")
    ctx.probe.delete_prefix(key)
    peer.fresh_mount()
    try:
        pid = peer.pid
        if not pid:
            return failed("rss", [(mr, "MB", False)], peer, run, "daemon pid not found")
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], _status_kb(pid, "VmRSS"))
                stop.wait(0.05)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        cmd = "for i in $(seq %d); do cat %s; done | dd of=%s bs=1M iflag=fullblock count=%d status=none" % (
            repeat, big, peer.path("rss"), size // MiB)
        try:
            w = ctx.measure("rss", mw, peer, run, lambda: run_cmd(cmd, shell=True, timeout=SETTLE_TIMEOUT),
                            _has_size(ctx, key, size), amount=size / MiB, unit="MiB/s", higher=True)
        finally:
            stop.set()
            t.join(5)
        hwm = max(_status_kb(pid, "VmHWM"), peak[0])
        # /proc reports KiB; MB here are 10^6 bytes, as in the target (< 200 MB).
        r = Sample("rss", mr, peer.name, run, hwm * 1024 / 1e6 if w.error == "" else None, "MB", False,
                   dict(w.requests), w.bytes_in, w.bytes_out, w.error)
        return [r, w]
    finally:
        peer.unmount()
        ctx.probe.delete_prefix(key)


RUNNERS = {"write": w_write, "read": w_read, "small": w_small, "list": w_list,
           "rename": w_rename, "tree": w_tree, "rss": w_rss}
