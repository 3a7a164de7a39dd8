"""Fixtures for compatibility tests: Debian's s3fs-fuse (through the server's S3 face)
and ossfs (through its OSS face) mounting the same bucket at two mountpoints.

``pair`` yields a :class:`Pair` with ``.s3fs`` (the s3fs mountpoint), ``.ossfs`` (a
:class:`Mount` of ``tests/mount/conftest.py``), ``.oss`` (an ``oss2.Bucket``) and
``.server``.  Caches on both sides are short or off so that what one side writes is
visible to the other at once: s3fs with ``stat_cache_expire=1`` and
``max_stat_cache_size=0``; ossfs with ``stat_cache_expire=0`` and zero kernel
attribute/entry timeouts.  s3fs runs in the foreground as a child process and is
unmounted and stopped when the test ends, also on failure.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pytest

from mount.conftest import mount, mounter, run_ossfs  # noqa: F401  (fixtures reused)

S3FS_BASE_OPTS = ["use_path_request_style", "sigv4", "endpoint=us-east-1", "multipart_size=5",
                  "parallel_count=2", "stat_cache_expire=1", "max_stat_cache_size=0", "use_xattr",
                  "retries=2"]
OSSFS_OPTS = {"stat_cache_expire": 0, "attr_timeout": 0, "entry_timeout": 0, "negative_timeout": 0,
              "multipart_threshold": 5, "multipart_size": 5}


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def tail(path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")
    except OSError:
        return ""


def unmount_path(mnt: str) -> None:
    for cmd in (["fusermount3", "-u", mnt], ["fusermount3", "-u", "-z", mnt]):
        if not os.path.ismount(mnt):
            return
        for _ in range(20):
            if subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.25)


@contextlib.contextmanager
def s3fs_mounted(server, mnt: str, workdir: str, *extra):
    """Mount the server's bucket with s3fs in the foreground; always unmount."""
    passwd = os.path.join(workdir, "passwd-s3fs")
    with open(passwd, "w") as f:
        f.write("%s:%s\n" % (server.access_key_id, server.access_key_secret))
    os.chmod(passwd, 0o600)
    opts = ["url=%s" % server.endpoint, "passwd_file=%s" % passwd] + S3FS_BASE_OPTS + list(extra)
    log_path = os.path.join(workdir, "s3fs.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["s3fs", server.bucket, mnt, "-f", "-o", ",".join(opts)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, 30, "the s3fs mount of %s" % mnt)
        assert os.path.ismount(mnt), "s3fs did not mount:\n" + tail(log_path)
        yield mnt
    finally:
        unmount_path(mnt)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Pair:
    def __init__(self, server, s3fs_path: str, ossfs_mount):
        self.server = server
        self.s3fs = s3fs_path
        self.ossfs = ossfs_mount
        self.oss = server.oss_bucket()

    def s(self, *parts) -> str:
        return os.path.join(self.s3fs, *parts)

    def o(self, *parts) -> str:
        return os.path.join(self.ossfs.path, *parts)


@pytest.fixture
def pair(oss_server, mounter, tmp_path):
    mnt = tmp_path / "s3fs-mnt"
    mnt.mkdir()
    ossfs_mount = mounter(**OSSFS_OPTS)
    with s3fs_mounted(oss_server, str(mnt), str(tmp_path)) as s3:
        yield Pair(oss_server, s3, ossfs_mount)
