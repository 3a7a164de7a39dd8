"""Hostile objects in the bucket, put there with oss2 directly, then listed, stat'ed
and read through a mount.

For every case in :data:`CASES`: the mount survives (``ls`` answers and a new file can
be written and read back afterwards), every name it lists is a legal file name (no
``/``, ``.``, ``..``, empty or over-long name), every error is an ``OSError`` with a
sensible errno, and nothing named like the hostile keys appears outside the mount's
cache directory (the temp directory, the mountpoint's parent, ``/`` and the test's
own directory are searched before and after).
"""
from __future__ import annotations

import errno
import os
import stat
import uuid

import pytest

TOKEN = "escape-" + uuid.uuid4().hex[:10]
S_IFLNK = stat.S_IFLNK | 0o777
ALLOWED_ERRNO = {errno.ENOENT, errno.ENAMETOOLONG, errno.EINVAL, errno.EIO, errno.ENOTDIR, errno.EISDIR,
                 errno.EACCES, errno.EPERM, errno.ENODATA, errno.ENOTSUP, errno.ELOOP}


def meta(**kw):
    return {"x-oss-meta-" + k.replace("_", "-"): v for k, v in kw.items()}


def names(path):
    out = os.listdir(path)
    for n in out:
        # A name over 255 bytes may be listed (the kernel passes it); using it gives ENAMETOOLONG.
        assert n and n not in (".", "..") and "/" not in n and len(os.fsencode(n)) <= 1023, repr(n)
    assert len(out) == len(set(out)), out
    return out


def exercise(root: str, limit: int = 300) -> dict:
    """Walk, stat, read, readlink and listxattr everything; OSError is an answer, not a crash."""
    seen, todo = {}, [""]
    while todo and len(seen) < limit:
        rel = todo.pop()
        for n in names(os.path.join(root, rel)):
            p = os.path.join(root, rel, n)
            r = os.path.join(rel, n)
            try:
                st = os.lstat(p)
            except OSError as exc:
                assert exc.errno in ALLOWED_ERRNO, (r, exc)
                seen[r] = exc.errno
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                # s3fs's mode header may claim a device; harmless only on a nodev mount.
                assert "nodev" in mount_options(root), (r, oct(st.st_mode))
            seen[r] = st
            try:
                if stat.S_ISDIR(st.st_mode):
                    todo.append(r)
                elif stat.S_ISLNK(st.st_mode):
                    os.readlink(p)
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        assert len(f.read(1 << 20)) == min(st.st_size, 1 << 20)
                os.listxattr(p, follow_symlinks=False)
            except OSError as exc:
                assert exc.errno in ALLOWED_ERRNO, (r, exc)
    return seen


def mount_options(path: str) -> list:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if fields[4] == real:
                return fields[5].split(",")
    return []


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _escape_keys(m, oss):
    st = exercise(m.path)
    assert "x" not in st or True
    assert all(TOKEN not in n for n in os.listdir(os.path.dirname(m.path)))
    assert "ok.txt" in os.listdir(m.path) and read(m.p("ok.txt")) == b"fine"


def _long_component(m, oss):
    assert "ok.txt" in names(m.path)
    exercise(m.path)
    with pytest.raises(OSError) as info:
        os.stat(m.p("n" * 300))
    assert info.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as info:
        os.listdir(m.p("deep", "c" * 256))
    assert info.value.errno == errno.ENAMETOOLONG
    assert "ok.txt" in names(m.p("deep"))


def _literal_names(m, oss):
    exercise(m.path)
    for name in ("%ff%fe", "pct%2Fslash", "new\nline", "tab\tx", "back\\slash", "caf\u00e9", "nul%00"):
        assert name in names(m.path), name
        assert read(m.p(name)) == name.encode(), name


def _garbage_mode(m, oss):
    exercise(m.path)
    for name in ("mode-abc", "mode-neg", "mode-float"):
        st = os.stat(m.p(name))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644, (name, oct(st.st_mode))
        assert read(m.p(name)) == b"body"
    for name in ("mode-chardev", "mode-blockdev"):
        st = os.lstat(m.p(name))
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            assert "nodev" in mount_options(m.path)
            with pytest.raises(OSError):
                open(m.p(name), "rb").close()


def _garbage_mode_huge_number(m, oss):
    # All digits but far beyond any st_mode: must read as "no mode", not break the listing.
    assert sorted(names(m.path)) == ["mode-huge", "ok.txt"]
    exercise(m.path)
    st = os.stat(m.p("mode-huge"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644


def _garbage_owner(m, oss):
    exercise(m.path)
    for name in ("uid-abc", "uid-neg", "uid-huge", "gid-abc", "gid-huge"):
        st = os.stat(m.p(name))
        assert 0 <= st.st_uid < 2 ** 32 - 1 and 0 <= st.st_gid < 2 ** 32 - 1, name
        assert read(m.p(name)) == b"body"
    assert os.stat(m.p("uid-abc")).st_uid == os.getuid()
    assert os.stat(m.p("gid-abc")).st_gid == os.getgid()


def _garbage_mtime(m, oss):
    exercise(m.path)
    for name in ("mtime-word", "mtime-1e400", "mtime-neg", "mtime-nan", "mtime-inf", "mtime-huge"):
        st = os.stat(m.p(name))
        assert isinstance(st.st_mtime_ns, int), name
        assert read(m.p(name)) == b"body"
    lm = oss.head_object("mtime-word").last_modified
    assert int(os.stat(m.p("mtime-word")).st_mtime) == lm


def _garbage_xattr(m, oss):
    exercise(m.path)
    for name in ("x-pct", "x-notjson", "x-badb64", "x-list", "x-nonstr"):
        assert os.listxattr(m.p(name)) == [], name
        assert read(m.p(name)) == b"body"
    assert os.listxattr(m.p("x-mixed")) == ["user.good"]
    assert os.getxattr(m.p("x-mixed"), "user.good") == b"abc"


def _file_and_dir_same_name(m, oss):
    exercise(m.path)
    assert names(m.path).count("same") == 1
    if stat.S_ISDIR(os.stat(m.p("same")).st_mode):
        assert names(m.p("same")) == ["child"]
    else:
        assert read(m.p("same")) == b"file body"


def _zero_byte_with_children(m, oss):
    exercise(m.path)
    st = os.stat(m.p("legacy"))
    assert stat.S_ISDIR(st.st_mode)
    assert names(m.p("legacy")) == ["child"]
    assert read(m.p("legacy", "child")) == b"kid"


def _symlink_hostile(m, oss):
    exercise(m.path)
    assert os.readlink(m.p("link-up")) == "../../../../etc/passwd"
    try:
        target = os.readlink(m.p("link-huge"))
        assert len(os.fsencode(target)) <= 4096
    except OSError as exc:
        assert exc.errno in ALLOWED_ERRNO


def _dir_mode_on_file_object(m, oss):
    exercise(m.path)
    st = os.stat(m.p("claims-dir"))
    if stat.S_ISDIR(st.st_mode):
        assert names(m.p("claims-dir")) == []
    else:
        assert read(m.p("claims-dir")) == b"really a file"


CASES = {
    "escape_keys": ([("../" + TOKEN, b"evil", {}), ("a/../../" + TOKEN, b"evil", {}), ("a//" + TOKEN, b"evil", {}),
                     ("./" + TOKEN, b"evil", {}), ("a/./" + TOKEN, b"evil", {}), (TOKEN + "/..", b"evil", {}),
                     ("ok.txt", b"fine", {})], _escape_keys),
    "component_over_255_bytes_is_enametoolong": ([("n" * 300, b"long", {}), ("deep/" + "c" * 256 + "/e", b"x", {}), ("deep/ok.txt", b"k", {}),
                        ("ok.txt", b"fine", {})], _long_component),
    "literal_names": ([(n, n.encode(), {}) for n in ("%ff%fe", "pct%2Fslash", "new\nline", "tab\tx",
                                                     "back\\slash", "caf\u00e9", "nul%00")], _literal_names),
    "garbage_mode": ([("mode-abc", b"body", meta(mode="abc")), ("mode-neg", b"body", meta(mode="-1")),
                      ("mode-float", b"body", meta(mode="1.5e3")),
                      ("mode-chardev", b"body", meta(mode=str(stat.S_IFCHR | 0o666))),
                      ("mode-blockdev", b"body", meta(mode=str(stat.S_IFBLK | 0o666)))], _garbage_mode),
    "garbage_mode_huge_number": ([("mode-huge", b"body", meta(mode="9" * 30)), ("ok.txt", b"fine", {})],
                                 _garbage_mode_huge_number),
    "garbage_owner": ([("uid-abc", b"body", meta(uid="abc")), ("uid-neg", b"body", meta(uid="-5")),
                       ("uid-huge", b"body", meta(uid="9" * 25)), ("gid-abc", b"body", meta(gid="abc")),
                       ("gid-huge", b"body", meta(gid="4294967296"))], _garbage_owner),
    "garbage_mtime": ([("mtime-word", b"body", meta(mtime="garbage")), ("mtime-1e400", b"body", meta(mtime="1e400")),
                       ("mtime-neg", b"body", meta(mtime="-99999999999")), ("mtime-nan", b"body", meta(mtime="nan")),
                       ("mtime-inf", b"body", meta(mtime="inf")), ("mtime-huge", b"body", meta(mtime="9" * 40))],
                      _garbage_mtime),
    "garbage_xattr": ([("x-pct", b"body", meta(xattr="%%%")), ("x-notjson", b"body", meta(xattr="notjson")),
                       ("x-badb64", b"body", meta(xattr="%7B%22user.a%22%3A%22!!!%22%7D")),
                       ("x-list", b"body", meta(xattr="%5B1%2C2%5D")),
                       ("x-nonstr", b"body", meta(xattr="%7B%22user.a%22%3A5%7D")),
                       ("x-mixed", b"body", meta(xattr="%7B%22user.good%22%3A%22YWJj%22%2C%22user.bad%22%3A1%7D"))],
                      _garbage_xattr),
    "file_and_dir_same_name": ([("same", b"file body", {}), ("same/", b"", {"Content-Type": "application/x-directory"}),
                                ("same/child", b"c", {})], _file_and_dir_same_name),
    "zero_byte_with_children": ([("legacy", b"", {}), ("legacy/child", b"kid", {})], _zero_byte_with_children),
    "symlink_hostile": ([("link-up", b"../../../../etc/passwd", meta(mode=str(S_IFLNK))),
                         ("link-huge", b"t" * (1 << 20), meta(mode=str(S_IFLNK)))], _symlink_hostile),
    "dir_mode_on_file_object": ([("claims-dir", b"really a file", meta(mode=str(stat.S_IFDIR | 0o755)))],
                                _dir_mode_on_file_object),
}


def _snapshot(dirs) -> dict:
    out = {}
    for d in dirs:
        try:
            out[d] = set(os.listdir(d))
        except OSError:
            out[d] = set()
    return out


def _hits(root: str, skip: str, depth: int = 3) -> list:
    found = []
    base = root.rstrip("/").count("/")
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath.startswith(skip) or dirpath.count("/") - base >= depth:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
        found += [os.path.join(dirpath, n) for n in dirnames + filenames if TOKEN in n]
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_objects_through_a_mount(case, oss_server, mounter, tmp_path):
    objects, check = CASES[case]
    oss = oss_server.oss_bucket()
    for key, body, headers in objects:
        oss.put_object(key, body, headers=headers)
    m = mounter(stat_cache_expire=0)
    watched = ["/", "/tmp", os.path.dirname(m.path), os.path.dirname(os.path.dirname(m.path)), str(tmp_path),
               os.getcwd()]
    before = _snapshot(watched)
    check(m, oss)
    # The mount still answers, reads and writes.
    assert isinstance(os.listdir(m.path), list)
    with open(m.p("after-" + case), "wb") as f:
        f.write(b"still alive")
    assert read(m.p("after-" + case)) == b"still alive"
    after = _snapshot(watched)
    for d in watched:
        new = after[d] - before[d]
        assert not [n for n in new if TOKEN in n], (d, new)
    for root in (str(tmp_path), os.path.dirname(m.path)):
        assert _hits(root, skip=m.cache) == []
    assert not [n for n in os.listdir("/tmp") if TOKEN in n]
