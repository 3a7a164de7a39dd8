"""The mount as a whole: other clients, big files, the on-bucket format, shutdown,
permissions for other users, secrets, and ``ossfs status``."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import time

import pytest

from .conftest import ossfs_cmd, ossfs_env

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_two_mounts_see_each_others_closed_files(mounter):
    a = mounter()
    b = mounter()
    with open(a.p("from-a.txt"), "w") as f:
        f.write("written by a\n")
    # Close-to-open: once closed in a, b sees it (after the kernel's 1 s metadata cache).
    assert wait_for(lambda: os.path.exists(b.p("from-a.txt")), 5)
    with open(b.p("from-a.txt")) as f:
        assert f.read() == "written by a\n"
    with open(b.p("from-a.txt"), "a") as f:
        f.write("appended by b\n")

    def a_sees_append():
        with open(a.p("from-a.txt")) as f:
            return f.read() == "written by a\nappended by b\n"

    assert wait_for(a_sees_append, 5)
    os.unlink(a.p("from-a.txt"))
    assert wait_for(lambda: "from-a.txt" not in os.listdir(b.path), 5)


def test_large_file_multipart(mount, tmp_path):
    size = 300 * 1024 * 1024 + 12345
    src = tmp_path / "big.bin"
    h = hashlib.md5()
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            # Vary every MiB so that a part mix-up cannot go unnoticed.
            chunk = written.to_bytes(8, "big") + chunk[8:]
            f.write(chunk)
            h.update(chunk)
            written += len(chunk)
    mount.server.reset_stats()
    subprocess.run(["cp", str(src), mount.p("big.bin")], check=True, timeout=600)
    requests = mount.server.stats()["requests"]
    assert requests.get("UploadPart", 0) >= 2, requests
    assert requests.get("CompleteMultipartUpload", 0) == 1, requests
    digest = hashlib.md5()
    result = mount.server.oss_bucket().get_object("big.bin")
    for chunk in iter(lambda: result.read(1 << 20), b""):
        digest.update(chunk)
    assert digest.hexdigest() == h.hexdigest()
    assert os.path.getsize(mount.p("big.bin")) == size


def test_objects_carry_s3fs_headers(mount):
    path = mount.p("hdr.txt")
    with open(path, "w") as f:
        f.write("hello")
    os.chmod(path, 0o644)
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_250_000_000))
    os.mkdir(mount.p("hdrdir"), 0o755)
    os.symlink("hdr.txt", mount.p("hdrlink"))
    bucket = mount.server.oss_bucket()
    h = bucket.head_object("hdr.txt").headers
    assert h["x-oss-meta-mode"] == "33188"
    assert h["x-oss-meta-uid"] == str(os.getuid()) and h["x-oss-meta-gid"] == str(os.getgid())
    assert h["x-oss-meta-mtime"] == "1600000000.250000000"
    assert "x-oss-meta-ctime" in h
    d = bucket.head_object("hdrdir/").headers
    assert d["Content-Type"] == "application/x-directory"
    assert d["x-oss-meta-mode"] == str(stat.S_IFDIR | 0o755)
    link = bucket.get_object("hdrlink")
    assert link.headers["x-oss-meta-mode"] == str(stat.S_IFLNK | 0o777)
    assert link.read() == b"hdr.txt"


def test_sigterm_uploads_and_exits(mounter):
    m = mounter()
    with open(m.p("closed.txt"), "w") as f:
        f.write("closed before SIGTERM\n")
    fd = os.open(m.p("open.txt"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"still open at SIGTERM\n")
        os.kill(m.pid, signal.SIGTERM)
        # libfuse unmounts on SIGTERM, but the kernel keeps the connection while a
        # file is open: close it so the unmount can finish.
        time.sleep(0.5)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert m.wait_exit(60), "ossfs did not exit after SIGTERM"
    m.pid = None
    bucket = m.server.oss_bucket()
    assert bucket.get_object("closed.txt").read() == b"closed before SIGTERM\n"
    assert bucket.get_object("open.txt").read() == b"still open at SIGTERM\n"


def test_unmount_uploads_everything(mounter):
    m = mounter()
    for i in range(5):
        with open(m.p("u%d" % i), "wb") as f:
            f.write(b"%d" % i * 1000)
    m.unmount()
    bucket = m.server.oss_bucket()
    for i in range(5):
        assert bucket.get_object("u%d" % i).read() == b"%d" % i * 1000
    m.pid = None


def _as_nobody(*cmd):
    return subprocess.run(NOBODY + list(cmd), capture_output=True, text=True, timeout=30)


def test_allow_other_respects_permissions(mounter):
    m = mounter(allow_other=True)
    with open(m.p("private"), "w") as f:
        f.write("secret data\n")
    os.chmod(m.p("private"), 0o600)
    with open(m.p("public"), "w") as f:
        f.write("public data\n")
    os.chmod(m.p("public"), 0o644)
    denied = _as_nobody("cat", m.p("private"))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied
    allowed = _as_nobody("cat", m.p("public"))
    assert allowed.returncode == 0 and allowed.stdout == "public data\n", allowed
    write = _as_nobody("sh", "-c", "echo x >> %s" % m.p("public"))
    assert write.returncode != 0 and "Permission denied" in write.stderr, write


def test_without_allow_other_others_cannot_enter(mount):
    with open(mount.p("f"), "w") as f:
        f.write("x")
    os.chmod(mount.p("f"), 0o644)
    proc = _as_nobody("ls", mount.path)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr, proc


def test_debug_logs_and_ps_hide_the_secret(mounter):
    m = mounter("-d")
    with open(m.p("dbg.txt"), "w") as f:
        f.write("some data")
    assert os.listdir(m.path) == ["dbg.txt"]
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert m.path in ps  # the daemon is there...
    assert m.server.access_key_secret not in ps  # ...without the secret
    m.unmount()
    m.pid = None
    log = m.log()
    assert "DEBUG" in log, log[-2000:]
    assert m.server.access_key_secret not in log
    assert "Signature=" not in log or "Signature=<hidden>" in log


def test_status_command(mount):
    with open(mount.p("st.txt"), "w") as f:
        f.write("x")
    proc = subprocess.run(ossfs_cmd("status", mount.path), env=ossfs_env(), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("%s: ossfs mount (pid %d)" % (mount.path, mount.pid)), proc.stdout


def test_foreground_mount_and_sigint(mounter):
    m = mounter(start=False)
    proc = subprocess.Popen(m.command("-f"), env=ossfs_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        from .conftest import is_mounted
        assert wait_for(lambda: is_mounted(m.path), 30), proc.stderr.read1() if proc.poll() is not None else ""
        with open(m.p("fg.txt"), "w") as f:
            f.write("foreground")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert not is_mounted(m.path)
        assert m.server.oss_bucket().get_object("fg.txt").read() == b"foreground"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        m.force_cleanup()


def test_names_the_bucket_cannot_hold(mount):
    """Bytes that are not UTF-8 (object keys are UTF-8) and names other tools read as
    directory markers: refused with their own errno, nothing reaches the bucket."""
    import errno
    bad = os.path.join(os.fsencode(mount.path), b"bad\xff")
    with pytest.raises(OSError) as info:
        os.stat(bad)
    assert info.value.errno == errno.ENOENT
    for make in (lambda: open(bad, "wb").close(), lambda: os.mkdir(bad)):
        with pytest.raises(OSError) as info:
            make()
        assert info.value.errno == errno.EILSEQ
    with pytest.raises(OSError) as info:
        open(os.path.join(mount.path, "x_$folder$"), "wb").close()
    assert info.value.errno == errno.EINVAL
    assert os.listdir(mount.path) == []
    assert [o.key for o in __import__("oss2").ObjectIterator(mount.server.oss_bucket())] == []


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("options", [{}, {"kernel_cache": True}])
def test_an_open_sees_the_version_another_client_closed(mounter, options):
    """Close-to-open, also for the kernel's caches: a file another client grew is read
    whole (the lookup before the open, answered from the stat cache, told the old
    size), and one replaced by an object of the same size and the same mtime header is
    read as new (the page cache held the old pages)."""
    m = mounter(**options)
    bucket = m.server.oss_bucket()
    bucket.put_object("grow", b"a" * 100)
    assert _read(m.p("grow")) == b"a" * 100
    bucket.put_object("grow", b"b" * 300)
    time.sleep(1.3)                           # the kernel's attributes expire (attr_timeout 1 s)
    assert os.stat(m.p("grow")).st_size == 100  # the stat cache answers: documented staleness
    assert _read(m.p("grow")) == b"b" * 300     # but an open asks the bucket, and reads it all
    headers = {"x-oss-meta-mtime": "1700000000"}
    bucket.put_object("same", b"A" * 4096, headers=headers)
    assert _read(m.p("same")) == b"A" * 4096
    bucket.put_object("same", b"B" * 4096, headers=headers)
    assert _read(m.p("same")) == b"B" * 4096


def test_handles_on_two_versions_do_not_share_pages(mount):
    """Handle f opened version A; another client stores B (same size and mtime); handle
    g opened afterwards reads B, f keeps reading A, whichever reads first; after f
    closes, a new open reads B (no page of A is left to serve it)."""
    bucket = mount.server.oss_bucket()
    size = 4 << 20
    headers = {"x-oss-meta-mtime": "1700000000"}
    bucket.put_object("v", b"A" * size, headers=headers)
    assert _read(mount.p("v")) == b"A" * size       # fully staged
    f = open(mount.p("v"), "rb", buffering=0)
    assert f.read(1) == b"A"
    bucket.put_object("v", b"B" * size, headers=headers)
    g = open(mount.p("v"), "rb", buffering=0)
    try:
        for off in (1 << 20, 2 << 20, 3 << 20):
            f.seek(off)
            g.seek(off)
            assert f.read(4096) == b"A" * 4096
            assert g.read(4096) == b"B" * 4096
    finally:
        f.close()
        g.close()
    assert _read(mount.p("v")) == b"B" * size
