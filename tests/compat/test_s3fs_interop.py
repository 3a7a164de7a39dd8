"""s3fs-fuse 1.90 and ossfs on one bucket: what one writes, the other reads the same.

Each test writes through one mountpoint and checks through the other, both ways:
contents (single PUT and multipart), directories of every origin, symlinks, modes,
owners, mtimes, xattrs, renames and names that need URL escaping.  Attributes are
compared with ``os.lstat`` on both sides.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess

import pytest

KiB = 1024
MiB = 1024 * KiB
SIZES = [0, 1, 4 * KiB, 6 * MiB, 40 * MiB]

DIRECTIONS = ["s3fs_to_ossfs", "ossfs_to_s3fs"]


def sides(pair, direction):
    """(writer root, reader root) for a direction."""
    if direction == "s3fs_to_ossfs":
        return pair.s3fs, pair.ossfs.path
    return pair.ossfs.path, pair.s3fs


def data_of(size: int, seed: int) -> bytes:
    block = hashlib.sha256(b"%d-%d" % (size, seed)).digest() * 2048   # 64 KiB, incompressible enough
    out = (block * (size // len(block) + 1))[:size]
    return out


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        for i in range(0, len(data), 1 * MiB):
            f.write(data[i:i + MiB])


def md5_file(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def portable(st) -> tuple:
    """The attributes both filesystems can represent."""
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime_ns)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_files_of_every_size_single_put_and_multipart(pair, direction):
    src, dst = sides(pair, direction)
    pair.server.reset_stats()
    for i, size in enumerate(SIZES):
        write_file(os.path.join(src, "size-%d" % size), data_of(size, i))
    counts = pair.server.stats()["requests"]
    # 6 and 40 MiB exceed both tools' 5 MB part size: at least two multipart uploads.
    assert counts.get("CompleteMultipartUpload", 0) >= 2, counts
    for i, size in enumerate(SIZES):
        p = os.path.join(dst, "size-%d" % size)
        assert os.stat(p).st_size == size
        assert md5_file(p) == hashlib.md5(data_of(size, i)).hexdigest(), size
        obj = pair.oss.get_object("size-%d" % size)
        assert hashlib.md5(obj.read()).hexdigest() == hashlib.md5(data_of(size, i)).hexdigest()
        assert portable(os.stat(os.path.join(src, "size-%d" % size))) == portable(os.stat(p)), size


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_empty_files_and_nested_tree(pair, direction):
    src, dst = sides(pair, direction)
    tree = ["top.txt", "d1/", "d1/empty", "d1/d2/", "d1/d2/deep.txt", "d1/d2/d3/", "d1/d2/d3/leaf", "e/"]
    for n, rel in enumerate(tree):
        p = os.path.join(src, rel)
        if rel.endswith("/"):
            os.mkdir(p)
        else:
            write_file(p, b"" if "empty" in rel else ("content %d\n" % n).encode())
    seen_src, seen_dst = {}, {}
    for root, out in ((src, seen_src), (dst, seen_dst)):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                out[os.path.relpath(p, root)] = portable(os.lstat(p))
    assert seen_dst == seen_src
    assert set(seen_dst) == {t.rstrip("/") for t in tree}
    with open(os.path.join(dst, "d1", "d2", "deep.txt"), "rb") as f:
        assert f.read() == b"content 4\n"


def test_directory_made_by_s3fs_and_implicit_directories(pair):
    os.mkdir(pair.s("by-s3fs"), 0o750)
    os.chmod(pair.s("by-s3fs"), 0o750)
    st = os.stat(pair.o("by-s3fs"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert portable(st) == portable(os.stat(pair.s("by-s3fs")))

    pair.oss.put_object("imp/b/c", b"deep")
    for root in (pair.s3fs, pair.ossfs.path):
        assert "imp" in os.listdir(root), root
        assert stat.S_ISDIR(os.stat(os.path.join(root, "imp")).st_mode), root
        assert os.listdir(os.path.join(root, "imp")) == ["b"], root
        assert stat.S_ISDIR(os.stat(os.path.join(root, "imp", "b")).st_mode), root
        with open(os.path.join(root, "imp", "b", "c"), "rb") as f:
            assert f.read() == b"deep"
    # ossfs shows an implicit directory with the default directory mode.
    assert stat.S_IMODE(os.stat(pair.o("imp")).st_mode) == 0o755

    os.mkdir(pair.o("by-ossfs"), 0o711)
    st = os.stat(pair.s("by-ossfs"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o711


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_symlinks(pair, direction):
    src, dst = sides(pair, direction)
    with open(os.path.join(src, "target.txt"), "wb") as f:
        f.write(b"pointed at")
    os.symlink("target.txt", os.path.join(src, "rel-link"))
    os.symlink("/etc/hostname", os.path.join(src, "abs-link"))
    os.symlink("dir with space/ünï", os.path.join(src, "odd-link"))
    for name, target in (("rel-link", "target.txt"), ("abs-link", "/etc/hostname"),
                         ("odd-link", "dir with space/ünï")):
        st = os.lstat(os.path.join(dst, name))
        assert stat.S_ISLNK(st.st_mode), name
        assert os.readlink(os.path.join(dst, name)) == target
        assert st.st_size == len(target.encode())
    with open(os.path.join(dst, "rel-link"), "rb") as f:
        assert f.read() == b"pointed at"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fifos(pair, direction):
    src, dst = sides(pair, direction)
    os.mkfifo(os.path.join(src, "pipe"), 0o640)
    st = os.lstat(os.path.join(dst, "pipe"))
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert portable(st) == portable(os.lstat(os.path.join(src, "pipe")))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_modes_owners_and_mtimes(pair, direction):
    src, dst = sides(pair, direction)
    for mode in (0o600, 0o640, 0o755, 0o4755, 0o1777 & 0o7777, 0o000):
        p = os.path.join(src, "mode-%o" % mode)
        write_file(p, b"m")
        os.chmod(p, mode)
        assert stat.S_IMODE(os.stat(os.path.join(dst, "mode-%o" % mode)).st_mode) == mode, oct(mode)
    p = os.path.join(src, "owned")
    write_file(p, b"o")
    os.chown(p, 1234, 5678)
    st = os.stat(os.path.join(dst, "owned"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.mkdir(os.path.join(src, "owned-dir"))
    os.chown(os.path.join(src, "owned-dir"), 1234, 5678)
    st = os.stat(os.path.join(dst, "owned-dir"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)

    p = os.path.join(src, "timed")
    write_file(p, b"t")
    os.utime(p, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    st_dst = os.stat(os.path.join(dst, "timed"))
    st_src = os.stat(p)
    assert st_dst.st_mtime_ns == st_src.st_mtime_ns == 1_500_000_000_987_654_321


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_mtime_nanoseconds_survive_both_ways(pair, direction):
    """s3fs 1.90 and ossfs both store ``x-*-meta-mtime`` as ``sec.nnnnnnnnn`` when the
    nanoseconds are not zero (whole seconds otherwise), and both read it back exactly."""
    src, dst = sides(pair, direction)
    for name, ns in (("frac", 1_500_000_000_987_654_321), ("whole", 1_400_000_000_000_000_000),
                     ("tiny", 1_300_000_000_000_000_001)):
        write_file(os.path.join(src, name), b"x")
        os.utime(os.path.join(src, name), ns=(1_600_000_000_123_456_789, ns))
        stored = pair.oss.head_object(name).headers["x-oss-meta-mtime"]
        sec, frac = divmod(ns, 10**9)
        assert stored == ("%d.%09d" % (sec, frac) if frac else "%d" % sec), (name, stored)
        assert os.stat(os.path.join(dst, name)).st_mtime_ns == ns, name
        assert os.stat(os.path.join(src, name)).st_mtime_ns == ns, name


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_xattrs(pair, direction):
    src, dst = sides(pair, direction)
    p = os.path.join(src, "x.txt")
    write_file(p, b"x")
    os.setxattr(p, "user.plain", b"hello")
    os.setxattr(p, "user.binary", bytes(range(256)))
    os.setxattr(p, "user.empty", b"")
    q = os.path.join(dst, "x.txt")
    # s3fs 1.90 leaves an empty value out of the header it writes; ossfs keeps it.
    expected = ["user.binary", "user.plain"] + (["user.empty"] if direction == "ossfs_to_s3fs" else [])
    assert sorted(os.listxattr(q)) == sorted(expected)
    assert os.getxattr(q, "user.plain") == b"hello"
    assert os.getxattr(q, "user.binary") == bytes(range(256))
    if direction == "ossfs_to_s3fs":
        assert os.getxattr(q, "user.empty") == b""
    # getfattr, as users run it, prints the same on both sides.
    dumps = [subprocess.run(["getfattr", "-d", "-m", "-", "-e", "base64", os.path.join(root, "x.txt")],
                            capture_output=True, text=True, timeout=30, cwd=root).stdout.splitlines()[1:]
             for root in (src, dst)]
    if direction == "ossfs_to_s3fs":
        assert dumps[0] == dumps[1]
    assert 'user.plain=0saGVsbG8=' in dumps[1], dumps
    os.removexattr(p, "user.plain")
    expected.remove("user.plain")
    assert sorted(os.listxattr(q)) == sorted(expected)
    with open(q, "rb") as f:
        assert f.read() == b"x"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_renames(pair, direction):
    src, dst = sides(pair, direction)
    write_file(os.path.join(src, "before.txt"), b"renamed file")
    os.chmod(os.path.join(src, "before.txt"), 0o640)
    os.rename(os.path.join(src, "before.txt"), os.path.join(src, "after.txt"))
    assert not os.path.exists(os.path.join(dst, "before.txt"))
    st = os.stat(os.path.join(dst, "after.txt"))
    assert stat.S_IMODE(st.st_mode) == 0o640
    with open(os.path.join(dst, "after.txt"), "rb") as f:
        assert f.read() == b"renamed file"

    os.makedirs(os.path.join(src, "olddir", "sub"))
    write_file(os.path.join(src, "olddir", "sub", "f"), b"in tree")
    os.rename(os.path.join(src, "olddir"), os.path.join(src, "newdir"))
    assert not os.path.exists(os.path.join(dst, "olddir"))
    assert os.listdir(os.path.join(dst, "newdir")) == ["sub"]
    with open(os.path.join(dst, "newdir", "sub", "f"), "rb") as f:
        assert f.read() == b"in tree"
    assert sorted(k.key for k in pair.oss.list_objects(prefix="olddir").object_list) == []


ESCAPED = ["with space", "plus+sign", "per%cent", "pct%2Fencoded", "hash#tag", "question?mark",
           "ünïcødé-名前", "amp&eq=semi;", "tilde~star*", "emoji-\U0001F600"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_names_needing_url_escaping(pair, direction):
    src, dst = sides(pair, direction)
    os.mkdir(os.path.join(src, "dir %+#?"))
    for name in ESCAPED:
        write_file(os.path.join(src, name), name.encode())
        write_file(os.path.join(src, "dir %+#?", name), b"in dir " + name.encode())
    assert sorted(os.listdir(dst)) == sorted(ESCAPED + ["dir %+#?"])
    assert sorted(os.listdir(os.path.join(dst, "dir %+#?"))) == sorted(ESCAPED)
    keys = {o.key for o in pair.oss.list_objects(max_keys=1000).object_list}
    for name in ESCAPED:
        assert name in keys, (name, sorted(keys))
        with open(os.path.join(dst, name), "rb") as f:
            assert f.read() == name.encode()
        with open(os.path.join(dst, "dir %+#?", name), "rb") as f:
            assert f.read() == b"in dir " + name.encode()
        assert portable(os.stat(os.path.join(src, name))) == portable(os.stat(os.path.join(dst, name)))


def test_objects_without_metadata_have_sane_defaults_on_ossfs(pair):
    pair.oss.put_object("bare.txt", b"no headers at all")
    pair.oss.put_object("bare-dir/", b"")
    pair.oss.put_object("implicit/child", b"c")
    last_modified = pair.oss.head_object("bare.txt").last_modified
    st = os.stat(pair.o("bare.txt"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert int(st.st_mtime) == last_modified
    assert st.st_size == len(b"no headers at all")
    for d in ("bare-dir", "implicit"):
        st = os.stat(pair.o(d))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), d
    # s3fs reads the same object as a regular file with the same size and contents.
    st = os.stat(pair.s("bare.txt"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == len(b"no headers at all")
    with open(pair.o("bare.txt"), "rb") as f:
        assert f.read() == b"no headers at all"
