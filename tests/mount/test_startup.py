"""Mounting fails fast, with one line ``ossfs: ...`` and a non-zero exit, before daemonizing."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from .conftest import find_daemon, is_mounted, write_passwd


def _one_line_failure(proc, *needles):
    assert proc.returncode != 0, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ossfs: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def setup(oss_server, tmp_path):
    passwd = write_passwd(str(tmp_path / "passwd"), oss_server)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return oss_server, passwd, str(mnt), tmp_path


def _opts(server, passwd, tmp_path, url=None):
    return "url=%s,passwd_file=%s,use_cache=%s" % (url or server.endpoint, passwd, tmp_path / "cache")


def test_missing_mountpoint(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    proc = run_ossfs(server.bucket, mnt + "-nope", "-o", _opts(server, passwd, tmp))
    _one_line_failure(proc, "does not exist", mnt + "-nope")


def test_mountpoint_is_a_file(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    path = str(tmp / "afile")
    open(path, "w").close()
    proc = run_ossfs(server.bucket, path, "-o", _opts(server, passwd, tmp))
    _one_line_failure(proc, "not a directory")


def test_mountpoint_not_empty(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    open(os.path.join(mnt, "x"), "w").close()
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp))
    _one_line_failure(proc, "not empty", "nonempty")
    assert not is_mounted(mnt)


def test_mountpoint_busy(mount, run_ossfs, tmp_path):
    proc = run_ossfs(mount.server.bucket, mount.path, "-o",
                     "url=%s,passwd_file=%s,nonempty" % (mount.server.endpoint, mount.passwd))
    _one_line_failure(proc, "busy")
    assert find_daemon(mount.path) == mount.pid  # the first mount is untouched


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_endpoint_down(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    url = "http://127.0.0.1:%d" % _free_port()
    start = time.monotonic()
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp, url=url))
    assert time.monotonic() - start < 15
    _one_line_failure(proc, "cannot reach", url)
    assert not is_mounted(mnt)


def test_a_busy_server_is_asked_again_before_the_mount_gives_up(setup, run_ossfs):
    """503 answers at mount time (a busy or restarting endpoint, a boot-time fstab
    mount) are retried like any request; only a server that never answers is not."""
    server, passwd, mnt, tmp = setup
    server.set_faults(fail_next=5)  # more than the two attempts a silent server gets
    try:
        proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp))
        faults = server.stats()["requests"].get("faults", 0)
    finally:
        server.set_faults(fail_next=0)
    try:
        assert proc.returncode == 0, proc.stderr
        assert is_mounted(mnt)
        assert faults == 5
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", mnt], check=True)


def test_a_server_answering_only_errors_fails_the_mount_in_one_line(setup, run_ossfs):
    """... and the retries stop in time for the one-line message, however many retries= allows."""
    server, passwd, mnt, tmp = setup
    server.set_faults(fault_rate=1.0)
    try:
        proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp) + ",retries=2")
        faults = server.stats()["requests"].get("faults", 0)
    finally:
        server.set_faults()
    _one_line_failure(proc, "cannot reach", "after 6 attempts")
    assert faults == 6  # three rounds of two attempts: retries=2
    assert not is_mounted(mnt)
    server.set_faults(fail_next=100000)
    try:
        start = time.monotonic()
        proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp) + ",retries=30")
        took = time.monotonic() - start
    finally:
        server.set_faults()
    line = _one_line_failure(proc, "cannot reach", "ServiceUnavailable")
    assert "no answer" not in line and took < 20, (line, took)


def test_wrong_secret(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    with open(passwd, "w") as f:
        f.write("%s:%s:%s\n" % (server.bucket, server.access_key_id, "wrong-secret-value"))
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp))
    line = _one_line_failure(proc, "access denied", "secret")
    assert "wrong-secret-value" not in line


def test_wrong_key_id(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    with open(passwd, "w") as f:
        f.write("%s:%s:%s\n" % (server.bucket, "no-such-key-id", server.access_key_secret))
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp))
    line = _one_line_failure(proc, "access denied", "key id")
    assert server.access_key_secret not in line


def test_missing_bucket(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    with open(passwd, "w") as f:
        f.write("%s:%s\n" % (server.access_key_id, server.access_key_secret))
    proc = run_ossfs("no-such-bucket", mnt, "-o", _opts(server, passwd, tmp))
    _one_line_failure(proc, "bucket 'no-such-bucket' does not exist")


def test_unknown_option(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp) + ",frobnicate")
    _one_line_failure(proc, "frobnicate")


def test_passwd_file_too_open(setup, run_ossfs):
    server, passwd, mnt, tmp = setup
    os.chmod(passwd, 0o644)
    proc = run_ossfs(server.bucket, mnt, "-o", _opts(server, passwd, tmp))
    line = _one_line_failure(proc, passwd)
    assert server.access_key_secret not in line


def test_version(run_ossfs):
    proc = run_ossfs("--version")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["ossfs", "oss2", "mfusepy", "libfuse"], proc.stdout
    assert proc.stdout.splitlines()[3].split()[1].startswith("3."), proc.stdout


def test_status_without_mount(tmp_path, run_ossfs):
    proc = run_ossfs("status", str(tmp_path))
    _one_line_failure(proc, "not mounted")


@pytest.mark.parametrize("sizes", [{"max_read": 65536}, {"max_write": 65536}, {"max_read": 65536, "max_write": 131072}])
def test_smaller_fuse_requests_still_mount_and_move_data(mounter, sizes):
    """max_read= and max_write= other than 1 MiB: libfuse needs max_read in FUSE init
    and as a mount option to agree, else it gave up after init (exit 0, nothing
    mounted).  Data round-trips through requests of the smaller size."""
    m = mounter(**sizes)
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = os.path.join(m.path, "f")
    with open(path, "wb") as f:
        f.write(data)
    with open(path, "rb") as f:
        assert f.read() == data
    opts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split(" ")[4] == os.path.realpath(m.path):
                opts = dict(o.partition("=")[::2] for o in line.split(" - ")[1].split()[2].split(","))
    assert opts.get("max_read") == str(sizes.get("max_read", 1 << 20))
