"""The ossfs-server process the benchmark runs against, its request counters, and the
probe client (oss2) the harness uses to prepare objects and to see when a peer's data
has reached the server.

Every request the harness itself sends goes through :class:`Probe`, which counts its
own calls by the server's operation names, so that :meth:`Server.take_stats` can
subtract them: the counts in the tables are the peer's requests only.

Threads: :class:`Probe` counters are guarded by ``Probe._lock`` (setup helpers upload
from a thread pool); nothing else is shared.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import oss2

from .common import BenchError

log = logging.getLogger(__name__)

ACCESS_KEY_ID = "OSSFSBENCHKEY"
ACCESS_KEY_SECRET = "ossfs-bench-secret-0123456789"
BUCKET = "bench"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where the ossfs package (mount and server) is imported from; see snapshot_code().
CODE = {"path": REPO, "rev": ""}


def snapshot_code(work: str, source: str = "worktree") -> None:
    """Copies the checkout's ``ossfs/`` package under ``work`` and runs every ossfs and
    ossfs-server process from that copy, so that a change landing in the checkout during
    a long run does not mix two versions in one table.  ``source``: ``worktree`` (the
    files as they are) or ``head`` (the last commit, without uncommitted edits)."""
    dst = os.path.join(work, "code")
    git = lambda *a: subprocess.run(["git", "-C", REPO] + list(a), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, timeout=60).stdout
    rev = git("rev-parse", "--short", "HEAD").decode().strip()
    if source == "head":
        os.makedirs(dst)
        tar = git("archive", "--format=tar", "HEAD", "ossfs")
        if not tar:
            raise BenchError("git archive HEAD ossfs failed in %s" % REPO)
        subprocess.run(["tar", "-x", "-C", dst], input=tar, check=True, timeout=60)
        CODE.update(path=dst, rev=rev)
        return
    shutil.copytree(os.path.join(REPO, "ossfs"), os.path.join(dst, "ossfs"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    dirty = git("status", "--porcelain", "--", "ossfs").decode().strip()
    CODE.update(path=dst, rev=rev + (" + uncommitted changes" if dirty else ""))


def code_env() -> dict:
    return dict(os.environ, PYTHONPATH=CODE["path"] + os.pathsep + os.environ.get("PYTHONPATH", ""))

# What s3fs (and ossfs 1.x) write on an object it creates: a regular file, 0644.
S3FS_FILE_META = {"x-oss-meta-mode": "33188", "x-oss-meta-uid": "0", "x-oss-meta-gid": "0"}
S3FS_DIR_META = {"x-oss-meta-mode": "16877", "x-oss-meta-uid": "0", "x-oss-meta-gid": "0"}
DIR_CONTENT_TYPE = "application/x-directory"


class Server:
    """ossfs-server on 127.0.0.1, a free port, data under ``data_dir``."""

    def __init__(self, data_dir: str, latency_ms: float = 0.0):
        self.data_dir = data_dir
        self.latency_ms = latency_ms
        self.proc = None
        self.port = 0

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        # The secret goes through the environment, never the command line (ps shows that).
        env = dict(code_env(), OSSFS_SERVER_ACCESS_KEY_SECRET=ACCESS_KEY_SECRET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ossfs.server", "--data", self.data_dir, "--port", "0",
             "--access-key-id", ACCESS_KEY_ID, "--bucket", BUCKET]
            + (["--latency-ms", "%g" % self.latency_ms] if self.latency_ms else []),
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.data_dir, "..", "server.log"), "wb"),
            env=env, cwd=self.data_dir)
        line = self.proc.stdout.readline().decode(errors="replace")
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise BenchError("ossfs-server did not start: %r" % line)
        self.port = int(m.group(1))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def _hook(self, path: str, method: str = "GET") -> dict:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body.strip() else {}

    def reset_stats(self, probe: "Probe") -> None:
        self._hook("/_ossfs/stats/reset", "POST")
        probe.reset_counts()

    def take_stats(self, probe: "Probe") -> dict:
        """The counters since the last reset, less the probe's own requests."""
        s = self._hook("/_ossfs/stats")
        reqs = dict(s.get("requests", {}))
        own = probe.counts()
        for op, n in own.items():
            if op in reqs:
                reqs[op] -= n
                if reqs[op] <= 0:
                    del reqs[op]
        return {"requests": reqs, "bytes_in": s.get("bytes_in", 0), "bytes_out": s.get("bytes_out", 0)}


class Probe:
    """An oss2 client that counts its own requests (by server operation name)."""

    def __init__(self, url: str):
        self.bucket = oss2.Bucket(oss2.Auth(ACCESS_KEY_ID, ACCESS_KEY_SECRET), url, BUCKET,
                                  connect_timeout=30)
        self._lock = threading.Lock()
        self._counts = collections.Counter()   # GUARDED_BY(_lock)

    def _count(self, op: str, n: int = 1) -> None:
        with self._lock:
            self._counts[op] += n

    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def size(self, key: str):
        """Size of ``key`` on the server, or None when absent."""
        self._count("HeadObject")
        try:
            return self.bucket.head_object(key).content_length
        except oss2.exceptions.NotFound:
            return None

    def keys(self, prefix: str) -> list:
        """Every key under ``prefix`` (no delimiter), paged."""
        out, marker = [], ""
        for _ in range(100000):
            self._count("ListObjects")
            r = self.bucket.list_objects(prefix=prefix, marker=marker, max_keys=1000)
            out.extend(o.key for o in r.object_list)
            if not r.is_truncated:
                return out
            marker = r.next_marker
        raise BenchError("listing %s did not end" % prefix)

    def file_keys(self, prefix: str) -> list:
        return [k for k in self.keys(prefix) if not k.endswith("/")]

    def put(self, key: str, data: bytes, meta=None, content_type=None) -> None:
        headers = dict(meta or S3FS_FILE_META)
        headers["x-oss-meta-mtime"] = "%d" % int(time.time())
        if content_type:
            headers["Content-Type"] = content_type
        self._count("PutObject")
        self.bucket.put_object(key, data, headers=headers)

    def put_dir(self, key: str) -> None:
        self.put(key.rstrip("/") + "/", b"", S3FS_DIR_META, DIR_CONTENT_TYPE)

    def put_many(self, keys_data, threads: int = 8) -> None:
        with ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(self.put, k, d) for k, d in keys_data]:
                f.result()

    def upload_file(self, key: str, path: str) -> None:
        """Uploads a local file with s3fs-style meta (setup only; counts are not needed)."""
        headers = dict(S3FS_FILE_META, **{"x-oss-meta-mtime": "%d" % int(time.time())})
        self._count("Setup")
        oss2.resumable_upload(self.bucket, key, path, headers=headers, multipart_threshold=64 << 20,
                              part_size=64 << 20, num_threads=4, store=oss2.ResumableStore(
                                  root=os.path.dirname(path)))

    def copy(self, src: str, dst: str, size: int) -> None:
        """Server-side copy, in parts beyond 1 GB as OSS requires."""
        if size < 1 << 30:
            self._count("CopyObject")
            self.bucket.copy_object(BUCKET, src, dst)
            return
        part = 256 << 20
        self._count("Setup")
        upload_id = self.bucket.init_multipart_upload(dst, headers=dict(S3FS_FILE_META)).upload_id
        parts = []
        for i, start in enumerate(range(0, size, part), 1):
            end = min(start + part, size) - 1
            r = self.bucket.upload_part_copy(BUCKET, src, (start, end), dst, upload_id, i)
            parts.append(oss2.models.PartInfo(i, r.etag))
        self.bucket.complete_multipart_upload(dst, upload_id, parts)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.keys(prefix)
        for i in range(0, len(keys), 1000):
            self._count("DeleteMultipleObjects")
            self.bucket.batch_delete_objects(keys[i:i + 1000])
