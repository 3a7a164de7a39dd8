"""Ordinary tools on a real mount: what users do every day, checked end to end.

Each test works in its own directory of one mount; the examples of
``docs/semantics.md`` (errno of unsupported operations) are exercised here too.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import time

import oss2
import pytest


def sh(*cmd, cwd=None, check=True, input=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, errors="replace", timeout=120,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(map(str, cmd)), proc.returncode, proc.stderr))
    return proc


def md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_tree(root: str) -> None:
    """A small tree with the variety rsync and tar care about."""
    os.makedirs(os.path.join(root, "sub", "deeper"))
    os.makedirs(os.path.join(root, "empty"))
    with open(os.path.join(root, "a.txt"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(root, "sub", "b.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    with open(os.path.join(root, "sub", "deeper", "c"), "wb") as f:
        f.write(b"")
    with open(os.path.join(root, "name with spaces & ü.txt"), "w") as f:
        f.write("x" * 1000)
    os.symlink("sub/b.bin", os.path.join(root, "link-to-b"))
    os.chmod(os.path.join(root, "a.txt"), 0o600)
    os.chmod(os.path.join(root, "sub", "deeper"), 0o700)
    os.utime(os.path.join(root, "a.txt"), ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))


def test_cp_mv_rm(mount, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    d = mount.p("cpmv")
    os.mkdir(d)
    sh("cp", src, os.path.join(d, "one.bin"))
    assert md5(os.path.join(d, "one.bin")) == md5(str(src))
    sh("mv", os.path.join(d, "one.bin"), os.path.join(d, "two.bin"))
    assert not os.path.exists(os.path.join(d, "one.bin"))
    assert md5(os.path.join(d, "two.bin")) == md5(str(src))
    os.makedirs(os.path.join(d, "tree", "x", "y"))
    open(os.path.join(d, "tree", "x", "y", "f"), "w").close()
    sh("mv", os.path.join(d, "tree"), os.path.join(d, "moved"))
    assert os.path.exists(os.path.join(d, "moved", "x", "y", "f"))
    sh("rm", "-r", os.path.join(d, "moved"))
    assert sorted(os.listdir(d)) == ["two.bin"]
    # The server agrees.
    keys = sorted(o.key for o in __import__("oss2").ObjectIterator(mount.server.oss_bucket(), prefix="cpmv/"))
    assert "cpmv/two.bin" in keys and not any(k.startswith("cpmv/moved") for k in keys), keys


def test_symlink_readlink(mount):
    d = mount.p("links")
    os.mkdir(d)
    with open(os.path.join(d, "target"), "w") as f:
        f.write("pointed at\n")
    sh("ln", "-s", "target", os.path.join(d, "l1"))
    sh("ln", "-s", "/nonexistent/elsewhere", os.path.join(d, "dangling"))
    assert sh("readlink", os.path.join(d, "l1")).stdout.strip() == "target"
    assert os.readlink(os.path.join(d, "dangling")) == "/nonexistent/elsewhere"
    assert stat.S_ISLNK(os.lstat(os.path.join(d, "l1")).st_mode)
    with open(os.path.join(d, "l1")) as f:
        assert f.read() == "pointed at\n"


def test_chmod_chown_touch(mount):
    path = mount.p("attrs.txt")
    with open(path, "w") as f:
        f.write("x")
    sh("chmod", "640", path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    sh("chown", "1234:4321", path)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    sh("touch", "-d", "2001-02-03 04:05:06.5 UTC", path)
    assert os.stat(path).st_mtime_ns == 981173106_500_000_000
    os.utime(path, ns=(1_234_567_890_987_654_321, 1_300_000_000_000_000_001))
    st = os.stat(path)
    assert st.st_mtime_ns == 1_300_000_000_000_000_001
    # touch -m leaves atime alone (UTIME_OMIT); mtime becomes now.
    before = time.time()
    sh("touch", "-m", path)
    assert os.stat(path).st_mtime >= before - 2


def test_xattrs(mount):
    path = mount.p("xattr.txt")
    open(path, "w").close()
    sh("setfattr", "-n", "user.color", "-v", "blue", path)
    sh("setfattr", "-n", "user.bin", "-v", "0x00ff10", path)
    out = sh("getfattr", "-d", "-e", "text", path).stdout
    assert 'user.color="blue"' in out, out
    assert os.getxattr(path, "user.bin") == b"\x00\xff\x10"
    assert sorted(os.listxattr(path)) == ["user.bin", "user.color"]
    sh("setfattr", "-x", "user.color", path)
    assert os.listxattr(path) == ["user.bin"]
    with pytest.raises(OSError) as exc:
        os.getxattr(path, "user.color")
    assert exc.value.errno == errno.ENODATA


def test_dd_seek_notrunc_and_truncate(mount):
    path = mount.p("dd.bin")
    sh("dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=3", "status=none")
    sh("dd", "if=/dev/urandom", "of=" + path, "bs=4k", "count=2", "seek=100", "conv=notrunc", "status=none")
    assert os.path.getsize(path) == 3 * 1024 * 1024
    with open(path, "rb") as f:
        data = f.read()
    assert data[:400 * 1024] == b"\0" * (400 * 1024)
    assert data[400 * 1024:408 * 1024] != b"\0" * (8 * 1024)
    assert data[408 * 1024:] == b"\0" * (len(data) - 408 * 1024)
    sh("truncate", "-s", "5M", path)
    assert os.path.getsize(path) == 5 * 1024 * 1024
    sh("truncate", "-s", "100", path)
    assert os.path.getsize(path) == 100
    with open(path, "rb") as f:
        assert f.read() == b"\0" * 100
    obj = mount.server.oss_bucket().get_object("dd.bin").read()
    assert obj == b"\0" * 100


def test_tar_extract_and_diff(mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(str(src))
    tarball = tmp_path / "t.tar"
    sh("tar", "--format=posix", "-cf", tarball, "-C", src, ".")  # pax keeps nanoseconds
    dst = mount.p("untar")
    os.mkdir(dst)
    sh("tar", "-xpf", tarball, "-C", dst)
    sh("diff", "-r", "--no-dereference", src, dst)
    assert os.stat(os.path.join(dst, "a.txt")).st_mtime_ns == 1_500_000_000_123_456_789
    assert stat.S_IMODE(os.stat(os.path.join(dst, "a.txt")).st_mode) == 0o600


def test_rsync_twice_transfers_nothing(mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(str(src))
    dst = mount.p("rsync")
    sh("rsync", "-a", str(src) + "/", dst + "/")
    sh("diff", "-r", "--no-dereference", src, dst)
    out = sh("rsync", "-a", "--itemize-changes", str(src) + "/", dst + "/").stdout
    assert out.strip() == "", out


def test_mkdir_rmdir(mount):
    d = mount.p("dirs")
    os.mkdir(d)
    os.mkdir(os.path.join(d, "child"))
    open(os.path.join(d, "child", "f"), "w").close()
    with pytest.raises(OSError) as exc:
        os.rmdir(os.path.join(d, "child"))
    assert exc.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(os.path.join(d, "child"))
    os.unlink(os.path.join(d, "child", "f"))
    os.rmdir(os.path.join(d, "child"))
    assert os.listdir(d) == []
    open(os.path.join(d, "file"), "w").close()
    with pytest.raises(NotADirectoryError):
        os.rmdir(os.path.join(d, "file"))


def test_excl_and_append(mount):
    path = mount.p("excl.log")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"first\n")
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"second\n")
    os.close(fd)
    with open(path, "ab") as f:
        f.write(b"third\n")
    with open(path, "rb") as f:
        assert f.read() == b"first\nsecond\nthird\n"
    assert mount.server.oss_bucket().get_object("excl.log").read() == b"first\nsecond\nthird\n"


def test_mkfifo(mount):
    path = mount.p("fifo")
    os.mkfifo(path, 0o644)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    headers = mount.server.oss_bucket().head_object("fifo").headers
    assert stat.S_ISFIFO(int(headers["x-oss-meta-mode"]))


def test_ls_la_shows_dot_entries(mount):
    os.mkdir(mount.p("lsdir"))
    open(mount.p("lsdir", "f"), "w").close()
    out = sh("ls", "-la", mount.p("lsdir")).stdout.splitlines()
    names = [line.split()[-1] for line in out[1:]]
    assert names[:2] == [".", ".."] and "f" in names, out


def test_df(mount):
    out = sh("df", "-P", mount.path).stdout.splitlines()
    assert len(out) == 2 and out[1].split()[-1] == mount.path, out
    assert int(out[1].split()[1]) > 0, out  # a filesystem with a size, so tools that check space write


def test_hard_link_refused(mount):
    path = mount.p("hl-src")
    open(path, "w").close()
    with pytest.raises(OSError) as exc:
        os.link(path, mount.p("hl-dst"))
    assert exc.value.errno == errno.ENOTSUP
    assert not os.path.exists(mount.p("hl-dst"))
    proc = sh("ln", path, mount.p("hl-dst2"), check=False)
    assert proc.returncode != 0 and "not supported" in proc.stderr.lower(), proc.stderr


def test_an_unlinked_open_file_keeps_its_attributes(mount):
    """tmpfile(3) and its kind: open, unlink, then fstat, fchmod, ftruncate on the fd."""
    os.mkdir(mount.p("tmp"))
    fd = os.open(mount.p("tmp", "scratch"), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        os.write(fd, b"x" * 5000)
        os.unlink(mount.p("tmp", "scratch"))
        st = os.fstat(fd)
        assert (st.st_size, st.st_nlink, stat.S_IMODE(st.st_mode)) == (5000, 0, 0o640)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 7)
        os.utime(fd, ns=(10**18, 10**18))
        st = os.fstat(fd)
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (7, 0o600, 10**18)
        assert os.pread(fd, 100, 0) == b"x" * 7
        assert os.listdir(mount.p("tmp")) == []
    finally:
        os.close(fd)
    assert os.listdir(mount.p("tmp")) == []
    keys = [o.key for o in oss2.ObjectIterator(mount.server.oss_bucket())]
    assert keys == ["tmp/"]  # no hidden object was ever made, none is left


def test_renaming_over_an_open_file_keeps_the_reader_on_the_old_one(mount):
    """Saving by rename (editors, rsync, package managers) while a reader has the old file."""
    with open(mount.p("conf"), "wb") as f:
        f.write(b"old contents")
    with open(mount.p("conf.new"), "wb") as f:
        f.write(b"new")
    with open(mount.p("conf"), "rb") as reader:
        os.rename(mount.p("conf.new"), mount.p("conf"))
        assert os.fstat(reader.fileno()).st_size == 12
        assert reader.read() == b"old contents"
    with open(mount.p("conf"), "rb") as f:
        assert f.read() == b"new"
    assert sorted(os.listdir(mount.path)) == ["conf"]
    assert [o.key for o in oss2.ObjectIterator(mount.server.oss_bucket())] == ["conf"]


def test_rm_rf_of_a_directory_with_an_open_file(mount):
    os.makedirs(mount.p("logs", "old"))
    fd = os.open(mount.p("logs", "old", "app.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"line\n")
        subprocess.run(["rm", "-rf", mount.p("logs")], check=True)
        assert not os.path.exists(mount.p("logs"))
        os.write(fd, b"still writing\n")  # the process holding it goes on
    finally:
        os.close(fd)
    assert os.listdir(mount.path) == []
    assert list(oss2.ObjectIterator(mount.server.oss_bucket())) == []


def _keys(mount) -> list:
    return sorted(o.key for o in oss2.ObjectIterator(mount.server.oss_bucket()))


def test_a_rename_that_fails_leaves_the_open_file_it_would_replace(mount):
    with open(mount.p("conf"), "wb") as f:
        f.write(b"old contents")
    with open(mount.p("conf.new"), "wb") as f:
        f.write(b"new")
    os.stat(mount.p("conf.new"))
    mount.server.oss_bucket().delete_object("conf.new")  # another client removes the source
    with open(mount.p("conf"), "r+b") as reader:
        with pytest.raises(OSError):
            os.rename(mount.p("conf.new"), mount.p("conf"))
        assert reader.read() == b"old contents"
        reader.write(b" and more")  # still its file: uploaded at close
    assert _keys(mount) == ["conf"]
    with open(mount.p("conf"), "rb") as f:
        assert f.read() == b"old contents and more"


def test_unlink_of_an_older_version_still_open_makes_no_object(mount):
    with open(mount.p("f"), "wb") as f:
        f.write(b"v1")
    reader = os.open(mount.p("f"), os.O_RDONLY)
    try:
        mount.server.oss_bucket().put_object("f", b"version two")  # another client
        with open(mount.p("f"), "rb") as g:  # opens version two: the reader keeps version one
            assert g.read() == b"version two"
        os.unlink(mount.p("f"))
        listed, stored = os.listdir(mount.path), _keys(mount)
        assert os.pread(reader, 10, 0) == b"v1"
    finally:
        os.close(reader)
    assert listed == [] and stored == []
    assert _keys(mount) == [] and os.listdir(mount.path) == []


def test_an_unlinked_file_of_a_removed_directory_leaves_nothing_behind(mount):
    os.mkdir(mount.p("logs"))
    fd = os.open(mount.p("logs", "app.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    ino = os.fstat(fd).st_ino  # libfuse's node id, which its hidden name carries
    os.write(fd, b"x" * 10)
    os.unlink(mount.p("logs", "app.log"))
    os.rmdir(mount.p("logs"))
    os.close(fd)  # libfuse has no path for it any more, and unlinks nothing
    os.mkdir(mount.p("logs"))
    assert not os.path.exists(mount.p("logs", ".fuse_hidden%08x%08x" % (ino, 1)))
    assert os.listdir(mount.p("logs")) == [] and _keys(mount) == ["logs/"]


def test_renaming_an_open_file_to_a_name_of_libfuses_hidden_form_loses_nothing(mount):
    """Such a name is libfuse's own (docs/semantics.md): the file keeps its old name,
    and what is written to it, also after the rename, is kept."""
    fd = os.open(mount.p("data"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"precious")
        os.fsync(fd)
        os.rename(mount.p("data"), mount.p(".fuse_hidden0123456789abcdef"))
        os.write(fd, b" and more")
    finally:
        os.close(fd)
    assert _keys(mount) == ["data"]
    with open(mount.p("data"), "rb") as f:
        assert f.read() == b"precious and more"


def test_after_a_rename_over_an_open_file_fails_with_eio_the_name_works_as_before(mounter):
    """The kernel keeps its name for the file after a rename failing with EIO, and
    libfuse calls it by its hidden name from then on: open and chmod by the name must
    reach the file and the bucket as before."""
    m = mounter(retries=0)
    with open(m.p("conf"), "wb") as f:
        f.write(b"old contents")
    with open(m.p("conf.new"), "wb") as f:
        f.write(b"new")
    os.stat(m.p("conf.new"))
    reader = open(m.p("conf"), "r+b")
    try:
        # libfuse's first hidden name for it, looked up now so that the copy is the
        # first request the rename makes
        assert not os.path.exists(m.p(".fuse_hidden%08x%08x" % (os.fstat(reader.fileno()).st_ino, 1)))
        m.server.set_faults(fail_next=1)
        try:
            with pytest.raises(OSError) as failed:
                os.rename(m.p("conf.new"), m.p("conf"))
        finally:
            m.server.set_faults()
        assert failed.value.errno == errno.EIO
        with open(m.p("conf"), "rb") as g:
            assert g.read() == b"old contents"
        os.chmod(m.p("conf"), 0o600)
        os.fchmod(reader.fileno(), 0o640)
    finally:
        reader.close()
    head = m.server.oss_bucket().head_object("conf")
    assert head.headers["x-oss-meta-mode"] == str(stat.S_IFREG | 0o640)
    assert _keys(m) == ["conf", "conf.new"]
