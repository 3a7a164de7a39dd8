"""Debian's s3fs-fuse (1.90) and rclone (1.60) against the S3 face of ossfs-server.

Each test mounts (or syncs) a bucket of a real server subprocess with the real tool,
works through the mount, and checks what landed through the OSS face with oss2: the
object bodies, and the ``x-oss-meta-*`` headers the tools wrote as ``x-amz-meta-*``.
Mounts run as subprocesses and are always unmounted in ``finally``; every wait is
bounded.
"""
import contextlib
import hashlib
import os
import stat
import subprocess
import time

import oss2
import pytest

MiB = 1 << 20


@pytest.fixture
def server(oss_server):
    return oss_server


@pytest.fixture
def oss(server):
    return server.oss_bucket()


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def _tail(path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")
    except OSError:
        return ""


def _unmount(mnt: str) -> None:
    if not os.path.ismount(mnt):
        return
    for cmd in (["fusermount3", "-u", mnt], ["fusermount", "-u", mnt], ["fusermount3", "-u", "-z", mnt]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if not os.path.ismount(mnt):
            return


def _stop(proc: subprocess.Popen) -> None:
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def _mounted(cmd, mnt: str, log_path: str, env=None):
    """Run a FUSE tool in the foreground, yield once ``mnt`` is mounted, always unmount."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, 20, "the mount of %s" % mnt)
        assert os.path.ismount(mnt), "mount failed:\n" + _tail(log_path)
        yield mnt
    finally:
        _unmount(mnt)
        _stop(proc)


def _assert_all_supported(server) -> None:
    """The tool used no request the S3 face answers 501 NotImplemented."""
    counts = server.stats()["requests"]
    assert counts.get("Unsupported", 0) == 0, counts


def _meta(oss, key) -> dict:
    return {k.lower(): v for k, v in oss.head_object(key).headers.items()}


def _exists(oss, key) -> bool:
    return oss.object_exists(key)


# --------------------------------------------------------------------------- s3fs-fuse

@contextlib.contextmanager
def _s3fs(server, tmp_path, *extra):
    mnt = tmp_path / "s3fs-mnt"
    mnt.mkdir()
    passwd = tmp_path / "passwd-s3fs"
    passwd.write_text("%s:%s\n" % (server.access_key_id, server.access_key_secret))
    passwd.chmod(0o600)
    sig = [] if any(e.startswith("sigv") for e in extra) else ["sigv4"]
    opts = ["url=%s" % server.endpoint, "use_path_request_style", "passwd_file=%s" % passwd,
            "endpoint=us-east-1", "multipart_size=5", "parallel_count=2", "stat_cache_expire=1"] + sig + list(extra)
    cmd = ["s3fs", server.bucket, str(mnt), "-f", "-o", ",".join(opts)]
    with _mounted(cmd, str(mnt), str(tmp_path / "s3fs.log")) as m:
        yield m


def test_s3fs_mount_write_read_list_rename_chmod_delete(server, oss, tmp_path):
    # An object written through the OSS face with s3fs-style headers, before the mount.
    oss.put_object("from-oss.txt", b"written by oss2\n", headers={"x-oss-meta-mode": str(0o100640),
                                                                 "x-oss-meta-mtime": "1700000000"})
    big = os.urandom(30 * MiB)
    with _s3fs(server, tmp_path) as mnt:
        st = os.stat(os.path.join(mnt, "from-oss.txt"))
        assert stat.S_IMODE(st.st_mode) == 0o640 and int(st.st_mtime) == 1700000000
        with open(os.path.join(mnt, "from-oss.txt"), "rb") as f:
            assert f.read() == b"written by oss2\n"

        with open(os.path.join(mnt, "small.txt"), "wb") as f:
            f.write(b"hello from s3fs\n")
        os.chmod(os.path.join(mnt, "small.txt"), 0o644)
        _assert_all_supported(server)
        server.reset_stats()
        with open(os.path.join(mnt, "big.bin"), "wb") as f:
            for i in range(0, len(big), 4 * MiB):
                f.write(big[i:i + 4 * MiB])
        counts = server.stats()["requests"]
        assert counts.get("InitiateMultipartUpload", 0) >= 1 and counts.get("UploadPart", 0) >= 2, counts
        assert counts.get("CompleteMultipartUpload", 0) >= 1, counts
        with open(os.path.join(mnt, "big.bin"), "rb") as f:
            assert hashlib.md5(f.read()).digest() == hashlib.md5(big).digest()

        os.mkdir(os.path.join(mnt, "dir"))
        with open(os.path.join(mnt, "dir", "inner"), "wb") as f:
            f.write(b"inner")
        assert sorted(os.listdir(mnt)) == ["big.bin", "dir", "from-oss.txt", "small.txt"]
        assert os.stat(os.path.join(mnt, "big.bin")).st_size == len(big)

        # What s3fs wrote, read through the OSS face.
        assert oss.get_object("small.txt").read() == b"hello from s3fs\n"
        assert int(_meta(oss, "small.txt")["x-oss-meta-mode"]) == stat.S_IFREG | 0o644
        assert hashlib.md5(oss.get_object("big.bin").read()).digest() == hashlib.md5(big).digest()
        dir_meta = _meta(oss, "dir/")
        # s3fs 1.90 writes a directory's mode without S_IFDIR (0755 -> "493"); the
        # directory is marked by the trailing slash and the content type.
        assert stat.S_IMODE(int(dir_meta["x-oss-meta-mode"])) == 0o755
        assert dir_meta["content-type"] == "application/x-directory"
        assert oss.get_object("dir/inner").read() == b"inner"

        _assert_all_supported(server)
        server.reset_stats()
        os.rename(os.path.join(mnt, "small.txt"), os.path.join(mnt, "renamed.txt"))
        counts = server.stats()["requests"]
        assert counts.get("CopyObject", 0) >= 1 and counts.get("DeleteObject", 0) >= 1, counts
        assert not _exists(oss, "small.txt")
        assert oss.get_object("renamed.txt").read() == b"hello from s3fs\n"

        os.chmod(os.path.join(mnt, "renamed.txt"), 0o600)
        assert int(_meta(oss, "renamed.txt")["x-oss-meta-mode"]) == stat.S_IFREG | 0o600
        assert oss.get_object("renamed.txt").read() == b"hello from s3fs\n"

        os.unlink(os.path.join(mnt, "dir", "inner"))
        os.rmdir(os.path.join(mnt, "dir"))
        os.unlink(os.path.join(mnt, "big.bin"))
        assert not _exists(oss, "dir/") and not _exists(oss, "dir/inner") and not _exists(oss, "big.bin")
        assert sorted(os.listdir(mnt)) == ["from-oss.txt", "renamed.txt"]
        _assert_all_supported(server)
    assert not os.path.ismount(str(tmp_path / "s3fs-mnt"))


def test_s3fs_with_signature_version_2(server, oss, tmp_path):
    with _s3fs(server, tmp_path, "sigv2") as mnt:
        with open(os.path.join(mnt, "v2.txt"), "wb") as f:
            f.write(b"signed the old way\n")
        os.chmod(os.path.join(mnt, "v2.txt"), 0o640)
        assert os.listdir(mnt) == ["v2.txt"]
    assert oss.get_object("v2.txt").read() == b"signed the old way\n"
    assert int(_meta(oss, "v2.txt")["x-oss-meta-mode"]) == stat.S_IFREG | 0o640
    _assert_all_supported(server)


def test_s3fs_refused_with_wrong_secret(server, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    passwd = tmp_path / "passwd"
    passwd.write_text("%s:%s\n" % (server.access_key_id, "wrong-secret"))
    passwd.chmod(0o600)
    cmd = ["s3fs", server.bucket, str(mnt), "-f", "-o",
           "url=%s,use_path_request_style,passwd_file=%s,sigv4,endpoint=us-east-1,retries=1"
           % (server.endpoint, passwd)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        _unmount(str(mnt))
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    # s3fs 1.90 in the foreground exits 0 here; what matters is the refusal and no mount.
    assert b"invalid credentials" in out.lower(), out[-2000:]
    assert not os.path.ismount(str(mnt))


# --------------------------------------------------------------------------- rclone

def _rclone_env(server, tmp_path):
    env = {k: v for k, v in os.environ.items()
           # rclone 1.60 refuses to start when AWS_CA_BUNDLE is set with its own transport
           if k != "AWS_CA_BUNDLE" and not k.startswith("RCLONE_")}
    env.update({
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),    # absent: remotes come from the env
        "RCLONE_CONFIG_X_TYPE": "s3",
        "RCLONE_CONFIG_X_PROVIDER": "Other",
        "RCLONE_CONFIG_X_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_X_ACCESS_KEY_ID": server.access_key_id,
        "RCLONE_CONFIG_X_SECRET_ACCESS_KEY": server.access_key_secret,
        "RCLONE_CONFIG_X_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_X_REGION": "us-east-1",
    })
    return env


def _rclone(env, *args, timeout=60):
    r = subprocess.run(["rclone"] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    assert r.returncode == 0, "rclone %s failed:\n%s" % (" ".join(args), r.stderr.decode()[-2000:])
    return r.stdout.decode()


def test_rclone_copy_lsl_moveto_delete(server, oss, tmp_path):
    env = _rclone_env(server, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"alpha\n")
    big = os.urandom(12 * MiB)   # above the 5 MiB upload cutoff set below: a multipart upload
    (src / "b.bin").write_bytes(big)
    os.utime(src / "a.txt", (1600000000, 1600000000))
    remote = "X:%s/rc" % server.bucket

    _rclone(env, "copy", str(src), remote, "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    listing = _rclone(env, "lsl", remote)
    assert "a.txt" in listing and "b.bin" in listing and "2020-09-13" in listing
    assert oss.get_object("rc/a.txt").read() == b"alpha\n"
    assert hashlib.md5(oss.get_object("rc/b.bin").read()).digest() == hashlib.md5(big).digest()
    # rclone keeps the modification time in x-amz-meta-mtime: the OSS face sees it.
    assert float(_meta(oss, "rc/a.txt")["x-oss-meta-mtime"]) == 1600000000
    counts = server.stats()["requests"]
    assert counts.get("InitiateMultipartUpload", 0) >= 1 and counts.get("UploadPart", 0) >= 3, counts

    _rclone(env, "moveto", remote + "/a.txt", remote + "/moved/a2.txt")
    assert not _exists(oss, "rc/a.txt")
    assert oss.get_object("rc/moved/a2.txt").read() == b"alpha\n"
    assert "a2.txt" in _rclone(env, "lsl", remote + "/moved")

    _rclone(env, "delete", remote)
    assert [o.key for o in oss2.ObjectIterator(oss, prefix="rc/")] == []
    _assert_all_supported(server)


def test_rclone_mount_vfs_cache_full(server, oss, tmp_path):
    env = _rclone_env(server, tmp_path)
    oss.put_object("pre/existing.txt", b"already here\n")
    mnt = tmp_path / "rclone-mnt"
    mnt.mkdir()
    cmd = ["rclone", "mount", "X:%s" % server.bucket, str(mnt), "--vfs-cache-mode", "full",
           "--cache-dir", str(tmp_path / "rclone-cache"), "--vfs-write-back", "100ms",
           "--dir-cache-time", "1s", "--poll-interval", "0"]
    data = os.urandom(3 * MiB)
    with _mounted(cmd, str(mnt), str(tmp_path / "rclone.log"), env=env) as m:
        with open(os.path.join(m, "pre", "existing.txt"), "rb") as f:
            assert f.read() == b"already here\n"
        with open(os.path.join(m, "w.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(m, "w.bin"), "rb") as f:
            assert f.read() == data
        _wait_for(lambda: _exists(oss, "w.bin"), 20, "rclone to upload w.bin")
        assert hashlib.md5(oss.get_object("w.bin").read()).digest() == hashlib.md5(data).digest()

        os.rename(os.path.join(m, "w.bin"), os.path.join(m, "pre", "r.bin"))
        _wait_for(lambda: _exists(oss, "pre/r.bin") and not _exists(oss, "w.bin"), 20, "rclone to rename")
        assert sorted(os.listdir(os.path.join(m, "pre"))) == ["existing.txt", "r.bin"]
        with open(os.path.join(m, "pre", "r.bin"), "rb") as f:
            assert f.read() == data

        os.unlink(os.path.join(m, "pre", "r.bin"))
        _wait_for(lambda: not _exists(oss, "pre/r.bin"), 20, "rclone to delete")
        assert os.listdir(os.path.join(m, "pre")) == ["existing.txt"]
        _assert_all_supported(server)
    assert not os.path.ismount(str(mnt))
