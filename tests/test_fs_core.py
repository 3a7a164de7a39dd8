"""The filesystem core called directly (no FUSE) over the in-memory store."""
import errno
import os
import stat
import time

import pytest

from ossfs.cache import Cache
from ossfs.config import Config
from ossfs.errors import FsError, OssfsError, TransientError, to_errno
from ossfs.fs import FIRST_READ, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE, Ctx, FileSystem
from ossfs.meta import DIR_CONTENT_TYPE, encode_symlink_target
from ossfs.store_mem import MemoryStore
from ossfs.transfer import Downloader, Uploader

ME = Ctx(1000, 1000, os.getpid())
OTHER = Ctx(2000, 2000, os.getpid())
ROOT = Ctx(0, 0, os.getpid())


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


@pytest.fixture
def make_fs(tmp_path, store, clock):
    made = []

    def make(st=None, name="c", upload_threshold=25 << 20, fill=False, **opts):
        st = st or store
        cfg = Config(bucket="b", uid=opts.pop("uid", None), gid=opts.pop("gid", None), **opts)
        cache = Cache(str(tmp_path / name), st, background_fill=fill, clock=clock,
                      uploader=Uploader(st, multipart_threshold=upload_threshold, part_size=100 * 1024, parallel=2),
                      downloader=Downloader(st, parallel=2, chunk_size=1 << 20))
        fs = FileSystem(st, cfg, cache, clock=clock)
        fs.init()
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.cache.check_invariants()
        fs.destroy()


@pytest.fixture
def fs(make_fs):
    return make_fs()


def errno_of(fn, *args, **kw):
    """The errno the FUSE adapter would return for this call (errors.to_errno)."""
    with pytest.raises(OssfsError) as info:
        fn(*args, **kw)
    return to_errno(info.value)


def write_file(fs, path, data, mode=0o644, ctx=ME):
    fh = fs.create(path, mode, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ctx)
    fs.write(path, data, 0, fh)
    fs.flush(path, fh)
    fs.release(path, fh)


def read_file(fs, path):
    fh = fs.open(path, os.O_RDONLY, ME)
    try:
        return fs.read(path, 1 << 30, 0, fh)
    finally:
        fs.release(path, fh)


# --- header form of what we write ---

def test_mkdir_writes_marker_with_s3fs_headers(fs, store):
    fs.mkdir("/d", 0o750, ME)
    info = store.head("d/")
    assert info.size == 0
    assert info.content_type == DIR_CONTENT_TYPE
    assert info.meta["mode"] == str(stat.S_IFDIR | 0o750)
    assert (info.meta["uid"], info.meta["gid"]) == ("1000", "1000")
    assert info.meta["mtime"] == "1700000000"
    st = fs.getattr("/d")
    assert stat.S_ISDIR(st["st_mode"]) and stat.S_IMODE(st["st_mode"]) == 0o750


def test_created_file_has_s3fs_headers_and_body(fs, store):
    write_file(fs, "/f.txt", b"hello")
    info = store.head("f.txt")
    assert store.peek("f.txt") == b"hello"
    assert info.meta["mode"] == "33188"
    assert info.meta["uid"] == "1000" and info.meta["gid"] == "1000"
    assert {"mtime", "ctime", "atime"} <= set(info.meta)
    assert info.content_type == "text/plain"
    st = fs.getattr("/f.txt")
    assert st["st_size"] == 5 and st["st_mode"] == 0o100644
    assert st["st_mtime_ns"] == 1_700_000_000 * 10**9 and st["st_mtime"] == 1_700_000_000.0


def test_utimens_keeps_nanoseconds(fs, store):
    write_file(fs, "/f", b"x")
    fs.utimens("/f", (1_600_000_000_123_456_789, 1_500_000_000_000_000_001))
    meta = store.head("f").meta
    assert meta["atime"] == "1600000000.123456789"
    assert meta["mtime"] == "1500000000.000000001"
    assert fs.getattr("/f")["st_mtime_ns"] == 1_500_000_000_000_000_001


# --- errno cases ---

def test_errno_cases(fs):
    assert errno_of(fs.getattr, "/missing") == errno.ENOENT
    fs.mkdir("/d", 0o755, ME)
    assert errno_of(fs.mkdir, "/d", 0o755, ME) == errno.EEXIST
    assert errno_of(fs.mkdir, "/nope/d", 0o755, ME) == errno.ENOENT
    write_file(fs, "/f", b"1")
    assert errno_of(fs.mkdir, "/f/d", 0o755, ME) == errno.ENOTDIR
    assert errno_of(fs.create, "/f", 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ME) == errno.EEXIST
    assert errno_of(fs.open, "/missing", os.O_RDONLY, ME) == errno.ENOENT
    assert errno_of(fs.open, "/d", os.O_WRONLY, ME) == errno.EISDIR
    assert errno_of(fs.unlink, "/d") == errno.EISDIR
    assert errno_of(fs.unlink, "/missing") == errno.ENOENT
    assert errno_of(fs.rmdir, "/f") == errno.ENOTDIR
    assert errno_of(fs.readdir, "/f") == errno.ENOTDIR
    assert errno_of(fs.readlink, "/f") == errno.EINVAL
    assert errno_of(fs.link, "/f", "/g") == errno.ENOTSUP
    assert errno_of(fs.mknod, "/dev0", stat.S_IFCHR | 0o600, 0x0101, ME) == errno.EPERM
    assert errno_of(fs.mknod, "/dev1", stat.S_IFBLK | 0o600, 0x0101, ME) == errno.EPERM
    assert errno_of(fs.mkdir, "/" + "x" * 256, 0o755, ME) == errno.ENAMETOOLONG


def test_wrong_mode_read_write_is_ebadf(fs):
    write_file(fs, "/f", b"data")
    ro = fs.open("/f", os.O_RDONLY, ME)
    wo = fs.open("/f", os.O_WRONLY, ME)
    assert errno_of(fs.write, "/f", b"x", 0, ro) == errno.EBADF
    assert errno_of(fs.read, "/f", 4, 0, wo) == errno.EBADF
    assert errno_of(fs.read, "/f", 4, 0, 999) == errno.EBADF
    fs.release("/f", ro)
    fs.release("/f", wo)


def test_rmdir(fs, store):
    fs.mkdir("/d", 0o755, ME)
    write_file(fs, "/d/f", b"1")
    assert errno_of(fs.rmdir, "/d") == errno.ENOTEMPTY
    fs.unlink("/d/f")
    fs.rmdir("/d")
    assert store.keys() == []
    assert errno_of(fs.getattr, "/d") == errno.ENOENT


def test_rmdir_with_unflushed_child_is_enotempty(fs):
    fs.mkdir("/d", 0o755, ME)
    fh = fs.create("/d/new", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    assert errno_of(fs.rmdir, "/d") == errno.ENOTEMPTY
    assert [n for n, _ in fs.readdir("/d")] == [".", "..", "new"]
    fs.release("/d/new", fh)


# --- data ---

def test_random_writes_and_truncate(fs, store):
    fh = fs.create("/f", 0o644, os.O_RDWR | os.O_CREAT, ME)
    fs.write("/f", b"abcdef", 0, fh)
    fs.write("/f", b"XY", 2, fh)
    fs.write("/f", b"Z", 10, fh)  # leaves a hole
    assert fs.getattr("/f")["st_size"] == 11
    assert fs.getattr("/f", fh)["st_size"] == 11
    fs.flush("/f", fh)
    assert store.peek("f") == b"abXYef\0\0\0\0Z"
    fs.truncate("/f", 3, fh)
    fs.truncate("/f", 6, fh)
    assert fs.read("/f", 100, 0, fh) == b"abX\0\0\0"
    fs.release("/f", fh)
    assert store.peek("f") == b"abX\0\0\0"
    fs.truncate("/f", 2)  # path truncate of a closed file
    assert store.peek("f") == b"ab"
    assert fs.getattr("/f")["st_size"] == 2


def test_edit_in_the_middle_of_existing_object(fs, store):
    store.put("big", bytes(range(256)) * 4096, meta={"mode": "33188"})  # 1 MiB
    fh = fs.open("/big", os.O_RDWR, ME)
    fs.write("/big", b"!!!!", 500_000, fh)
    fs.release("/big", fh)
    expected = bytearray(bytes(range(256)) * 4096)
    expected[500_000:500_004] = b"!!!!"
    assert store.peek("big") == bytes(expected)


def test_o_append_and_o_trunc(fs, store):
    write_file(fs, "/log", b"one\n")
    fh = fs.open("/log", os.O_WRONLY | os.O_APPEND, ME)
    fs.write("/log", b"two\n", 4, fh)  # the kernel puts an O_APPEND write at its end of file
    fs.release("/log", fh)
    assert store.peek("log") == b"one\ntwo\n"
    fh = fs.open("/log", os.O_WRONLY | os.O_TRUNC, ME)
    assert fs.getattr("/log")["st_size"] == 0
    fs.release("/log", fh)
    assert store.peek("log") == b""


def test_open_file_reports_staged_attrs(fs, store, clock):
    write_file(fs, "/f", b"12345")
    fh = fs.open("/f", os.O_RDWR, ME)
    clock.t += 100
    fs.write("/f", b"more data", 5, fh)
    st = fs.getattr("/f")
    assert st["st_size"] == 14 and st["st_mtime"] == clock.t
    assert store.head("f").size == 5  # not flushed yet
    fs.release("/f", fh)
    assert store.head("f").size == 14


def test_partial_read_fetches_a_window_not_the_object(fs, store):
    """A read-only open asks for the object with one GET of its first FIRST_READ
    bytes (no HEAD); a small read then costs nothing more."""
    data = os.urandom(4 << 20)
    store.put("big", data, meta={})
    heads = store.counts["HeadObject"]
    fh = fs.open("/big", os.O_RDONLY, ME)
    assert fs.read("/big", 100, 0, fh) == data[:100]
    sf = fs._handle(fh).sf
    assert sf.ranges.total() == FIRST_READ
    assert store.counts["GetObject"] == 1 and store.counts["HeadObject"] == heads
    assert fs.read("/big", 4096, FIRST_READ - 100, fh) == data[FIRST_READ - 100:FIRST_READ + 3996]
    assert store.counts["GetObject"] == 2 and sf.ranges.total() <= FIRST_READ + 256 * 1024
    fs.release("/big", fh)


def test_read_only_open_of_a_small_file_is_one_get(fs, store):
    data = os.urandom(5000)
    store.put("small", data, meta={"mode": "33152"})
    before = dict(store.counts)
    fh = fs.open("/small", os.O_RDONLY, ME)
    assert fs.read("/small", 65536, 0, fh) == data
    assert fs.getattr("/small", fh)["st_mode"] == 0o100600
    fs.release("/small", fh)
    assert {k: v - before.get(k, 0) for k, v in store.counts.items() if v != before.get(k, 0)} == {"GetObject": 1}
    # Staged now: the next open checks the version with a HEAD and reads nothing.
    fh = fs.open("/small", os.O_RDONLY, ME)
    assert fs.read("/small", 65536, 0, fh) == data
    fs.release("/small", fh)
    assert store.counts["GetObject"] == before.get("GetObject", 0) + 1
    assert store.counts["HeadObject"] == before.get("HeadObject", 0) + 1


def test_read_only_open_sees_a_change_made_elsewhere(fs, store):
    store.put("f", b"one", meta={})
    assert read_file(fs, "/f") == b"one"
    store.put("f", b"second version", meta={})
    assert read_file(fs, "/f") == b"second version"
    store.put("g", b"never staged", meta={})
    store.put("g", b"changed before the first open", meta={})
    assert read_file(fs, "/g") == b"changed before the first open"
    store.delete("f")
    assert errno_of(fs.open, "/f", os.O_RDONLY, ME) == errno.ENOENT


def test_staged_file_reused_when_etag_unchanged(fs, store):
    data = os.urandom(300_000)
    store.put("f", data, meta={})
    assert read_file(fs, "/f") == data
    gets = store.counts["GetObject"]
    heads = store.counts["HeadObject"]
    assert read_file(fs, "/f") == data
    assert store.counts["GetObject"] == gets  # served from the staged copy
    assert store.counts["HeadObject"] == heads + 1  # but open revalidated


def test_multipart_upload_of_large_file(make_fs, store):
    fs = make_fs(upload_threshold=200 * 1024)
    data = os.urandom(350 * 1024)
    write_file(fs, "/big", data)
    assert store.peek("big") == data
    assert store.head("big").etag.endswith("-4")
    assert store.counts["InitiateMultipartUpload"] == 1
    assert store.counts["UploadPart"] == 4
    assert store.counts["CompleteMultipartUpload"] == 1
    assert store.counts["PutObject"] == 0


# --- durability ---

def test_upload_failure_gives_eio_and_keeps_data(make_fs, store):
    fs = make_fs(retries=0)  # close gives up at once: EIO
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"precious", 0, fh)
    store.fail_next("PutObject", TransientError("server down"))
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    assert [r.key for r in fs.cache.dirty_entries()] == ["f"]
    assert fs.status()["dirty"][0]["path"] == "/f"
    fs.flush("/f", fh)  # the next flush sends it
    assert store.peek("f") == b"precious"
    assert fs.cache.dirty_entries() == []
    fs.release("/f", fh)


def test_failed_release_keeps_data_until_unmount(make_fs, store):
    fs = make_fs(retries=0)
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"keep me", 0, fh)
    store.fail_next("PutObject", TransientError("down"), times=2)
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    fs.release("/f", fh)  # its upload fails too: the data stays dirty in the cache
    assert "f" not in store.keys()
    assert [r.key for r in fs.cache.dirty_entries()] == ["f"]
    # A later open sees the unsent data, not the bucket.
    assert read_file(fs, "/f") == b"keep me"
    fs.destroy()
    assert store.peek("f") == b"keep me"


# --- rename ---

def test_rename_directory_copies_server_side_and_keeps_metadata(fs, store):
    fs.mkdir("/src", 0o700, ME)
    fs.mkdir("/src/sub", 0o711, ME)
    write_file(fs, "/src/a", b"A", mode=0o600)
    write_file(fs, "/src/sub/b", b"B", mode=0o640)
    fs.setxattr("/src/a", "user.k", b"v", 0)
    before = {k: store.head(k).meta for k in store.keys()}
    store.counts.clear()
    fs.rename("/src", "/dst")
    assert store.keys() == ["dst/", "dst/a", "dst/sub/", "dst/sub/b"]
    assert store.counts["CopyObject"] == 4
    assert store.counts["GetObject"] == 0 and store.counts["PutObject"] == 0
    for k in store.keys():
        assert store.head(k).meta == before["src/" + k[4:]]
    assert fs.getxattr("/dst/a", "user.k") == b"v"
    assert stat.S_IMODE(fs.getattr("/dst/sub/b")["st_mode"]) == 0o640
    assert errno_of(fs.getattr, "/src") == errno.ENOENT
    assert read_file(fs, "/dst/sub/b") == b"B"


def test_rename_file_keeps_metadata_and_open_dirty_file_follows(fs, store):
    write_file(fs, "/a", b"a", mode=0o604)
    meta = store.head("a").meta
    fs.rename("/a", "/b")
    assert store.keys() == ["b"] and store.head("b").meta == meta
    fh = fs.create("/c", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/c", b"unsent", 0, fh)
    fs.rename("/c", "/d")
    fs.write("/c", b"!", 6, fh)
    fs.release("/c", fh)
    assert store.peek("d") == b"unsent!"
    assert "c" not in store.keys()


def test_rename_errno_cases(fs, store):
    fs.mkdir("/d1", 0o755, ME)
    fs.mkdir("/d2", 0o755, ME)
    fs.mkdir("/full", 0o755, ME)
    write_file(fs, "/full/x", b"x")
    write_file(fs, "/f", b"f")
    write_file(fs, "/g", b"g")
    assert errno_of(fs.rename, "/f", "/d1") == errno.EISDIR
    assert errno_of(fs.rename, "/d1", "/f") == errno.ENOTDIR
    assert errno_of(fs.rename, "/d1", "/full") == errno.ENOTEMPTY
    assert errno_of(fs.rename, "/d1", "/d1/sub") == errno.EINVAL
    assert errno_of(fs.rename, "/f", "/g", RENAME_NOREPLACE) == errno.EEXIST
    assert errno_of(fs.rename, "/missing", "/h") == errno.ENOENT
    fs.rename("/d1", "/d2")  # over an empty directory
    assert "d1/" not in store.keys() and "d2/" in store.keys()
    fs.rename("/f", "/g")  # over a file
    assert store.peek("g") == b"f" and "f" not in store.keys()


# --- consistency ---

def test_close_to_open_between_two_mounts(make_fs, store):
    a, b = make_fs(name="a"), make_fs(name="b")
    write_file(a, "/f", b"v1")
    assert read_file(b, "/f") == b"v1"
    write_file(a, "/f", b"version 2")
    assert read_file(b, "/f") == b"version 2"  # open revalidates, never trusts the caches


def test_stat_cache_expiry(make_fs, store, clock):
    a, b = make_fs(name="a", stat_cache_expire=60), make_fs(name="b", stat_cache_expire=60)
    write_file(a, "/f", b"v1")
    assert b.getattr("/f")["st_size"] == 2
    write_file(a, "/f", b"longer")
    heads = store.counts["HeadObject"]
    assert b.getattr("/f")["st_size"] == 2  # cached
    assert store.counts["HeadObject"] == heads
    clock.t += 61
    assert b.getattr("/f")["st_size"] == 6


@pytest.mark.parametrize("neg_cache", [True, False])
def test_negative_cache(make_fs, store, clock, neg_cache):
    a, b = make_fs(name="a"), make_fs(name="b", neg_cache=neg_cache)
    assert errno_of(b.getattr, "/f") == errno.ENOENT
    write_file(a, "/f", b"x")
    if neg_cache:
        assert errno_of(b.getattr, "/f") == errno.ENOENT
        clock.t += 901
    assert b.getattr("/f")["st_size"] == 1
    # Our own creation always clears the negative entry.
    assert errno_of(b.getattr, "/g") == errno.ENOENT
    write_file(b, "/g", b"yy")
    assert b.getattr("/g")["st_size"] == 2


# --- attributes ---

def test_chmod_chown_copy_onto_itself(fs, store, clock):
    write_file(fs, "/f", b"body")
    etag = store.head("f").etag
    clock.t += 5
    store.counts.clear()
    fs.chmod("/f", 0o600)
    fs.chown("/f", 42, -1)
    assert store.counts["CopyObject"] == 2 and store.counts["PutObject"] == 0
    info = store.head("f")
    assert info.meta["mode"] == str(stat.S_IFREG | 0o600)
    assert info.meta["uid"] == "42" and info.meta["gid"] == "1000"
    assert info.meta["ctime"] == str(int(clock.t))
    assert info.etag == etag and store.peek("f") == b"body"
    assert info.content_type == "application/octet-stream"


def test_chmod_of_dirty_open_file_rides_with_the_upload(fs, store):
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"x", 0, fh)
    fs.chmod("/f", 0o640)
    assert store.counts["CopyObject"] == 0
    assert stat.S_IMODE(fs.getattr("/f")["st_mode"]) == 0o640
    fs.release("/f", fh)
    assert store.head("f").meta["mode"] == str(stat.S_IFREG | 0o640)


def test_chmod_of_implicit_directory_creates_marker(fs, store):
    store.put("imp/x", b"1")
    fs.chmod("/imp", 0o700)
    info = store.head("imp/")
    assert info.content_type == DIR_CONTENT_TYPE and info.meta["mode"] == str(stat.S_IFDIR | 0o700)
    assert errno_of(fs.chmod, "/", 0o777) == errno.EPERM


def test_xattrs(fs, store, make_fs):
    write_file(fs, "/f", b"x")
    assert errno_of(fs.getxattr, "/f", "user.a") == errno.ENODATA
    assert errno_of(fs.setxattr, "/f", "user.a", b"1", XATTR_REPLACE) == errno.ENODATA
    fs.setxattr("/f", "user.a", b"1", XATTR_CREATE)
    assert errno_of(fs.setxattr, "/f", "user.a", b"2", XATTR_CREATE) == errno.EEXIST
    fs.setxattr("/f", "user.a", b"\x00\xff", XATTR_REPLACE)
    fs.setxattr("/f", "user.b", b"", 0)
    assert fs.getxattr("/f", "user.a") == b"\x00\xff"
    assert fs.listxattr("/f") == ["user.a", "user.b"]
    assert "xattr" in store.head("f").meta
    fs.removexattr("/f", "user.a")
    fs.removexattr("/f", "user.b")
    assert errno_of(fs.removexattr, "/f", "user.b") == errno.ENODATA
    assert "xattr" not in store.head("f").meta
    off = make_fs(name="off", xattr=False)
    assert errno_of(off.getxattr, "/f", "user.a") == errno.ENOTSUP
    assert errno_of(off.setxattr, "/f", "user.a", b"1", 0) == errno.ENOTSUP
    assert errno_of(off.listxattr, "/f") == errno.ENOTSUP


def test_objects_without_headers_get_defaults(make_fs, store):
    store.put("plain", b"abc")
    store.put("dir/", b"", content_type=DIR_CONTENT_TYPE)
    fs = make_fs(default_file_mode=0o640, default_dir_mode=0o750)
    st = fs.getattr("/plain")
    assert st["st_mode"] == stat.S_IFREG | 0o640
    assert (st["st_uid"], st["st_gid"]) == (os.getuid(), os.getgid())
    assert fs.getattr("/dir")["st_mode"] == stat.S_IFDIR | 0o750
    forced = make_fs(name="forced", uid=123, gid=456, umask=0o027)
    st = forced.getattr("/plain")
    assert (st["st_uid"], st["st_gid"], st["st_mode"]) == (123, 456, stat.S_IFREG | 0o640)


def test_mountpoint_mode(make_fs):
    assert make_fs(name="a").getattr("/")["st_mode"] == stat.S_IFDIR | 0o755
    fs = make_fs(name="b", mp_umask=0o022, explicit=frozenset({"mp_umask"}))
    assert fs.getattr("/")["st_mode"] == stat.S_IFDIR | 0o755
    fs = make_fs(name="c", mp_umask=0o077, explicit=frozenset({"mp_umask"}))
    assert fs.getattr("/")["st_mode"] == stat.S_IFDIR | 0o700


def test_access(fs):
    write_file(fs, "/f", b"x", mode=0o640)
    fs.access("/f", os.R_OK | os.W_OK, ME)
    assert errno_of(fs.access, "/f", os.X_OK, ME) == errno.EACCES
    fs.access("/f", os.F_OK, OTHER)
    assert errno_of(fs.access, "/f", os.R_OK, OTHER) == errno.EACCES
    fs.access("/f", os.R_OK, Ctx(2000, 1000, 0))  # group member
    fs.access("/f", os.R_OK | os.W_OK, ROOT)
    assert errno_of(fs.access, "/f", os.X_OK, ROOT) == errno.EACCES
    assert errno_of(fs.access, "/nope", os.F_OK, ME) == errno.ENOENT


# --- special files ---

def test_symlinks_body_and_meta_forms(fs, store):
    fs.symlink("/l", "target/file", ME)
    assert store.peek("l") == b"target/file"
    assert store.head("l").meta["mode"] == str(stat.S_IFLNK | 0o777)
    assert fs.readlink("/l") == "target/file"
    assert fs.getattr("/l")["st_size"] == len("target/file")
    store.put("m", b"", meta={"mode": str(stat.S_IFLNK | 0o777), "symlink-target": encode_symlink_target("x y")})
    assert fs.readlink("/m") == "x y"


def test_mknod_fifo_and_socket(fs, store):
    fs.mknod("/p", stat.S_IFIFO | 0o600, 0, ME)
    fs.mknod("/s", stat.S_IFSOCK | 0o600, 0, ME)
    fs.mknod("/r", stat.S_IFREG | 0o600, 0, ME)
    assert store.head("p").meta["mode"] == str(stat.S_IFIFO | 0o600)
    assert store.peek("p") == b""
    assert stat.S_ISFIFO(fs.getattr("/p")["st_mode"])
    assert stat.S_ISSOCK(fs.getattr("/s")["st_mode"])
    assert stat.S_ISREG(fs.getattr("/r")["st_mode"])


def test_statfs(fs):
    st = fs.statfs("/")
    assert st["f_bsize"] == 4096 and st["f_blocks"] >= 1 << 40 and st["f_bavail"] == st["f_bfree"]


# --- listings ---

def test_implicit_and_legacy_directories(fs, store):
    store.put("implicit/child", b"1")
    store.put("marker/", b"", content_type="application/x-directory")
    store.put("httpd/", b"", content_type="httpd/unix-directory")
    store.put("legacy", b"")
    store.put("legacy/child", b"1")
    store.put("hadoop_$folder$", b"")
    store.put("file", b"abc")
    store.put("both", b"xyz")          # non-empty file and a directory of the same name:
    store.put("both/hidden", b"1")     # the file wins
    store.put("empty", b"")
    entries = dict(fs.readdir("/"))
    assert set(entries) == {".", "..", "implicit", "marker", "httpd", "legacy", "hadoop", "file", "both",
                            "empty"}
    dirs = {n for n, st in entries.items() if st and stat.S_ISDIR(st["st_mode"])}
    assert dirs == {".", "implicit", "marker", "httpd", "legacy", "hadoop"}
    for name in dirs - {"."}:
        assert stat.S_ISDIR(fs.getattr("/" + name)["st_mode"]), name
    assert stat.S_ISREG(fs.getattr("/both")["st_mode"])
    assert stat.S_ISREG(fs.getattr("/empty")["st_mode"])
    assert [n for n, _ in fs.readdir("/legacy")] == [".", "..", "child"]
    assert [n for n, _ in fs.readdir("/hadoop")] == [".", ".."]
    fs.rmdir("/hadoop")
    assert "hadoop_$folder$" not in store.keys()
    fs.unlink("/implicit/child")
    assert errno_of(fs.getattr, "/implicit") == errno.ENOENT  # an implicit dir vanishes with its last child


def test_an_implicit_directory_keeps_its_times(make_fs, store, clock):
    """An implicit directory shows the mount's time, the same at every look, also
    after its entry expired from the caches (its mtime must not look changed)."""
    fs = make_fs(stat_cache_expire=1)
    mounted = fs.getattr("/")["st_mtime"]
    store.put("implicit/child", b"1")
    first = fs.getattr("/implicit")
    clock.t += 3600
    fs.readdir("/")
    again = fs.getattr("/implicit")
    assert stat.S_ISDIR(again["st_mode"])
    assert first["st_mtime"] == again["st_mtime"] == mounted
    assert first["st_ctime"] == again["st_ctime"]


def test_readdir_paginates_and_caches_heads(make_fs, store):
    fs = make_fs(list_object_max_keys=7)
    for i in range(30):
        store.put("d/f%02d" % i, b"x" * i, meta={"mode": "33152"})
    names = [n for n, _ in fs.readdir("/d")]
    assert names == [".", ".."] + ["f%02d" % i for i in range(30)]
    assert all(st["st_mode"] == 33152 for n, st in fs.readdir("/d")[2:])
    heads = store.counts["HeadObject"]
    fs.readdir("/d")  # unchanged objects: no HEAD again
    assert store.counts["HeadObject"] == heads


def test_destroy_uploads_open_dirty_files(make_fs, store):
    fs = make_fs()
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"unmount", 0, fh)
    fs.destroy()
    assert store.peek("f") == b"unmount"


# --- the same core over the real store and the bundled server ---

def test_core_over_oss_store_and_server(oss_server_session, make_fs):
    import uuid

    from tests.test_store_contract import make_oss_store
    st = make_oss_store(oss_server_session, prefix="core-%s/" % uuid.uuid4().hex[:12])
    a = make_fs(st=st, name="oss-a", upload_threshold=200 * 1024)
    b = make_fs(st=st, name="oss-b")
    a.mkdir("/dir", 0o750, ME)
    big = os.urandom(450 * 1024)
    write_file(a, "/dir/big", big, mode=0o600)          # multipart
    write_file(a, "/dir/small.txt", b"small")           # single PUT
    a.setxattr("/dir/small.txt", "user.tag", b"\x01\x02", XATTR_CREATE)
    a.chmod("/dir/small.txt", 0o604)
    a.rename("/dir", "/moved")
    assert [n for n, _ in b.readdir("/moved")] == [".", "..", "big", "small.txt"]
    assert read_file(b, "/moved/big") == big
    st_small = b.getattr("/moved/small.txt")
    assert st_small["st_mode"] == stat.S_IFREG | 0o604 and st_small["st_uid"] == ME.uid
    assert b.getxattr("/moved/small.txt", "user.tag") == b"\x01\x02"
    assert stat.S_IMODE(b.getattr("/moved")["st_mode"]) == 0o750
    fh = b.open("/moved/big", os.O_RDWR, ME)
    b.write("/moved/big", b"edit", 1000, fh)
    b.release("/moved/big", fh)
    expected = bytearray(big)
    expected[1000:1004] = b"edit"
    assert read_file(a, "/moved/big") == bytes(expected)  # close-to-open across mounts
    assert errno_of(a.rmdir, "/moved") == errno.ENOTEMPTY
    a.unlink("/moved/big")
    a.unlink("/moved/small.txt")
    a.rmdir("/moved")
    assert [n for n, _ in a.readdir("/")] == [".", ".."]


def test_unlinked_open_file_keeps_working_and_is_not_recreated(fs, store):
    write_file(fs, "/f", b"content")
    fh = fs.open("/f", os.O_RDWR, ME)
    fs.unlink("/f")
    assert "f" not in store.keys()
    assert errno_of(fs.getattr, "/f") == errno.ENOENT
    fs.write("/f", b"C", 0, fh)
    assert fs.read("/f", 100, 0, fh) == b"Content"
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert "f" not in store.keys()


HIDDEN = "/d/.fuse_hidden0000000200000001"  # the name libfuse gives an unlinked open file


def test_an_unlinked_open_file_answers_by_the_name_libfuse_hides_it_under(fs, store):
    fs.mkdir("/d", 0o755, ME)
    write_file(fs, "/d/f", b"content", mode=0o640)
    fh = fs.open("/d/f", os.O_RDWR, ME)
    fs.rename("/d/f", HIDDEN)  # libfuse's unlink of an open file
    assert "d/f" not in store.keys() and not any("hidden" in k for k in store.keys())
    assert errno_of(fs.getattr, "/d/f") == errno.ENOENT
    assert [n for n, _ in fs.readdir("/d")] == [".", ".."]
    st = fs.getattr(HIDDEN)  # fstat: the kernel sends it without the handle
    assert (st["st_size"], st["st_nlink"], stat.S_IMODE(st["st_mode"])) == (7, 0, 0o640)
    fs.write(HIDDEN, b"more", 7, fh)
    fs.chmod(HIDDEN, 0o600)
    fs.truncate(HIDDEN, 9)
    st = fs.getattr(HIDDEN, fh)
    assert (st["st_size"], st["st_nlink"], stat.S_IMODE(st["st_mode"])) == (9, 0, 0o600)
    assert fs.read(HIDDEN, 100, 0, fh) == b"contentmo"
    fs.rename("/d", "/e")  # libfuse moves the hidden name with its directory
    assert fs.getattr("/e/.fuse_hidden0000000200000001")["st_size"] == 9
    fs.flush("/e/.fuse_hidden0000000200000001", fh)
    fs.release("/e/.fuse_hidden0000000200000001", fh)
    write_file(fs, "/e/f", b"new")  # a new file by the old name is not touched
    fs.unlink("/e/.fuse_hidden0000000200000001")  # libfuse, after the last close
    assert errno_of(fs.getattr, "/e/.fuse_hidden0000000200000001") == errno.ENOENT
    assert sorted(store.keys()) == ["e/", "e/f"] and store.peek("e/f") == b"new"


def test_a_file_renamed_over_while_open_is_hidden_not_uploaded(fs, store):
    write_file(fs, "/a", b"new version")
    write_file(fs, "/b", b"old")
    fh = fs.open("/b", os.O_RDWR, ME)
    fs.write("/b", b"OLD", 0, fh)
    # libfuse hides the open target first, in the thread of the rename(2) that follows
    fs.rename("/b", "/.fuse_hidden00000003000000aa", caller_renaming=True)
    assert store.keys() == ["a", "b"]  # other clients never see b missing
    fs.rename("/a", "/b")
    fs.flush("/.fuse_hidden00000003000000aa", fh)
    assert store.keys() == ["b"]  # never uploaded
    fs.release("/.fuse_hidden00000003000000aa", fh)
    fs.unlink("/.fuse_hidden00000003000000aa")
    assert store.keys() == ["b"] and store.peek("b") == b"new version"


def test_a_rename_over_an_open_file_that_fails_gives_the_file_back(fs, store):
    write_file(fs, "/b", b"old")
    fh = fs.open("/b", os.O_RDWR, ME)
    fs.write("/b", b"OLD", 0, fh)
    fs.rename("/b", "/.fuse_hidden00000003000000ab", caller_renaming=True)
    assert errno_of(fs.rename, "/missing", "/b") == errno.ENOENT
    assert fs.getattr("/.fuse_hidden00000003000000ab", fh)["st_nlink"] == 1  # it kept its name
    # libfuse goes on calling the file by the hidden name, also for what is asked of "b"
    fs.chmod("/.fuse_hidden00000003000000ab", 0o600)
    other = fs.open("/.fuse_hidden00000003000000ab", os.O_RDONLY, ME)
    assert fs.read("/b", 10, 0, other) == b"OLD"
    fs.release("/b", other)
    fs.flush("/.fuse_hidden00000003000000ab", fh)
    fs.release("/.fuse_hidden00000003000000ab", fh)
    fs.unlink("/.fuse_hidden00000003000000ab")  # libfuse, after the last close
    assert store.keys() == ["b"] and store.peek("b") == b"OLD"
    assert stat.S_IMODE(int(store.head("b").meta["mode"])) == 0o600


def test_rename_of_file_whose_upload_failed(make_fs, store):
    fs = make_fs(retries=0)  # close gives up at once: EIO
    fh = fs.create("/a", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/a", b"unsent", 0, fh)
    store.fail_next("PutObject", TransientError("down"), times=2)
    assert errno_of(fs.flush, "/a", fh) == errno.EIO
    fs.release("/a", fh)
    assert fs.getattr("/a")["st_size"] == 6          # still visible in this mount
    assert "a" in [n for n, _ in fs.readdir("/")]
    fs.rename("/a", "/b")
    assert errno_of(fs.getattr, "/a") == errno.ENOENT
    assert read_file(fs, "/b") == b"unsent"
    fs.destroy()
    assert store.keys() == ["b"] and store.peek("b") == b"unsent"


def test_open_sees_new_version_while_old_handle_keeps_its_own(make_fs, store):
    a, b = make_fs(name="a"), make_fs(name="b")
    old_data = os.urandom(2 << 20)
    write_file(a, "/f", old_data)
    old = b.open("/f", os.O_RDONLY, ME)
    assert b.read("/f", 3, 0, old) == old_data[:3]  # stages the first window only
    write_file(a, "/f", b"NEW")
    new = b.open("/f", os.O_RDONLY, ME)
    assert b.read("/f", 100, 0, new) == b"NEW"
    assert b.read("/f", 100, 0, old) == old_data[:100]  # staged bytes of the old version
    # Bytes of the old version that were never staged cannot be had any more: ESTALE,
    # never a mix of two versions.
    assert errno_of(b.read, "/f", 100, (2 << 20) - 100, old) == errno.ESTALE
    b.release("/f", old)
    b.release("/f", new)


def test_concurrent_writers_and_readers(fs, store):
    import threading
    errors = []

    def worker(i):
        try:
            data = os.urandom(50_000 + i)
            path = "/t%d" % i
            fh = fs.create(path, 0o644, os.O_RDWR | os.O_CREAT, ME)
            for off in range(0, len(data), 4096):
                fs.write(path, data[off:off + 4096], off, fh)
            fs.release(path, fh)
            for _ in range(3):
                assert read_file(fs, path) == data
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.keys()) == 8


def test_max_dirty_data_uploads_while_writing(make_fs, store):
    fs = make_fs(max_dirty_data=1, upload_threshold=200 * 1024)
    chunk = os.urandom(256 * 1024)
    fh = fs.create("/stream", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    for i in range(5):
        fs.write("/stream", chunk, i * len(chunk), fh)
    assert store.head("stream").size == 5 * len(chunk)  # uploaded once 1 MiB was unsent
    fs.write("/stream", b"end", 5 * len(chunk), fh)
    fs.release("/stream", fh)
    assert store.peek("stream") == chunk * 5 + b"end"
    assert store.counts["UploadPartCopy"] > 0  # the second upload reused the first one's bytes


def test_odd_keys_do_not_break_listings(fs, store):
    store.put("d/./x", b"1")
    store.put("d/../y", b"1")
    store.put("d//z", b"1")
    store.put("d/ok", b"1")
    assert [n for n, _ in fs.readdir("/d")] == [".", "..", "ok"]


def test_chmod_of_closed_file_whose_upload_failed(make_fs, store):
    fs = make_fs(retries=0)  # close gives up at once: EIO
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"x", 0, fh)
    store.fail_next("PutObject", TransientError("down"), times=2)
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    fs.release("/f", fh)
    fs.chmod("/f", 0o600)
    fs.setxattr("/f", "user.k", b"v", 0)
    assert fs.getattr("/f")["st_mode"] == stat.S_IFREG | 0o600
    assert fs.getxattr("/f", "user.k") == b"v"
    fs.destroy()
    meta = store.head("f").meta
    assert meta["mode"] == str(stat.S_IFREG | 0o600) and "xattr" in meta


def test_status_reports_upload_progress(make_fs, clock):
    import threading

    class SlowStore(MemoryStore):
        gate = threading.Event()
        entered = threading.Event()

        def upload_part(self, key, upload_id, part_number, body):
            if part_number == 3:
                self.entered.set()
                assert self.gate.wait(10)
            return super().upload_part(key, upload_id, part_number, body)

    st = SlowStore(clock=clock)
    fs = make_fs(st=st, name="slow", upload_threshold=200 * 1024)
    fh = fs.create("/big", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/big", os.urandom(300 * 1024), 0, fh)
    closer = threading.Thread(target=fs.release, args=("/big", fh))
    closer.start()
    assert SlowStore.entered.wait(10)
    status = fs.status()
    (item,) = status["dirty"]
    assert item["path"] == "/big" and item["uploading"] and item["total"] == 300 * 1024
    assert 0 <= item["uploaded"] < 300 * 1024
    SlowStore.gate.set()
    closer.join(10)
    assert fs.status()["dirty"] == []
    assert st.head("big").size == 300 * 1024


@pytest.mark.parametrize("expire", [0, 900])
def test_namespace_operations_match_a_posix_model(tmp_path, expire):
    """Random mkdir/write/unlink/rmdir/rename sequences give the errno and the tree a
    POSIX filesystem would."""
    import posixpath

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as hs

    names = ["/a", "/b", "/a/x", "/b/y", "/a/x/z", "/c"]
    op = hs.one_of(
        hs.tuples(hs.just("mkdir"), hs.sampled_from(names), hs.none()),
        hs.tuples(hs.just("write"), hs.sampled_from(names), hs.sampled_from([b"1", b"22"])),
        hs.tuples(hs.just("unlink"), hs.sampled_from(names), hs.none()),
        hs.tuples(hs.just("rmdir"), hs.sampled_from(names), hs.none()),
        hs.tuples(hs.just("rename"), hs.sampled_from(names), hs.sampled_from(names)))

    def model_apply(m, kind, p, arg):
        def parent_ok(path):
            parent = posixpath.dirname(path)
            if parent == "/":
                return None
            if parent not in m:
                return errno.ENOENT
            return None if m[parent] == "d" else errno.ENOTDIR

        def children(path):
            return [q for q in m if q.startswith(path + "/")]

        if kind == "mkdir":
            err = parent_ok(p)
            if err:
                return err
            if p in m:
                return errno.EEXIST
            m[p] = "d"
        elif kind == "write":
            err = parent_ok(p)
            if err:
                return err
            if m.get(p) == "d":
                return errno.EISDIR
            m[p] = arg
        elif kind == "unlink":
            if p not in m:
                return errno.ENOENT
            if m[p] == "d":
                return errno.EISDIR
            del m[p]
        elif kind == "rmdir":
            if p not in m:
                return errno.ENOENT
            if m[p] != "d":
                return errno.ENOTDIR
            if children(p):
                return errno.ENOTEMPTY
            del m[p]
        else:
            src, dst = p, arg
            if src not in m:
                return errno.ENOENT
            err = parent_ok(dst)
            if err:
                return err
            if src == dst:
                return None
            if m[src] == "d" and dst.startswith(src + "/"):
                return errno.EINVAL
            if dst in m:
                if m[dst] == "d":
                    if m[src] != "d":
                        return errno.EISDIR
                    if children(dst):
                        return errno.ENOTEMPTY
                elif m[src] == "d":
                    return errno.ENOTDIR
                del m[dst]
            for q in [src] + children(src):
                m[dst + q[len(src):]] = m.pop(q)
        return None

    def fs_apply(fs, kind, p, arg):
        try:
            if kind == "mkdir":
                fs.mkdir(p, 0o755, ME)
            elif kind == "write":
                write_file(fs, p, arg)
            elif kind == "unlink":
                fs.unlink(p)
            elif kind == "rmdir":
                fs.rmdir(p)
            else:
                fs.rename(p, arg)
        except OssfsError as exc:
            return to_errno(exc)
        return None

    def tree(fs, path="/"):
        out = {}
        for name, st in fs.readdir(path)[2:]:
            child = path.rstrip("/") + "/" + name
            if stat.S_ISDIR(st["st_mode"]):
                out[child] = "d"
                out.update(tree(fs, child))
            else:
                out[child] = read_file(fs, child)
        return out

    counter = [0]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hs.lists(op, max_size=15))
    def check(ops):
        counter[0] += 1
        store = MemoryStore()
        cache = Cache(str(tmp_path / ("m%d" % counter[0])), store, background_fill=False)
        fs = FileSystem(store, Config(bucket="b", stat_cache_expire=expire), cache)
        model = {}
        try:
            for kind, p, arg in ops:
                assert fs_apply(fs, kind, p, arg) == model_apply(model, kind, p, arg), (kind, p, arg)
            assert tree(fs) == model
        finally:
            fs.destroy()

    check()


def test_close_waits_through_temporary_failures_then_succeeds(make_fs, store):
    """A temporary failure at close (what the store's own retries could not get
    through) is tried again, up to ``retries`` times, and close then succeeds."""
    fs = make_fs(retries=3)
    slept = []
    import ossfs.fs as fs_mod
    real_sleep = fs_mod.time.sleep
    fs_mod.time.sleep = slept.append
    try:
        fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
        fs.write("/f", b"wait for me", 0, fh)
        store.fail_next("PutObject", TransientError("down"), times=3)
        fs.flush("/f", fh)
    finally:
        fs_mod.time.sleep = real_sleep
    fs.release("/f", fh)
    assert store.peek("f") == b"wait for me"
    assert len(slept) == 3 and slept[0] <= slept[-1]  # growing waits
    assert fs.cache.dirty_entries() == []


def test_close_gives_eio_when_temporary_failures_outlast_retries(make_fs, store):
    fs = make_fs(retries=1)
    import ossfs.fs as fs_mod
    real_sleep = fs_mod.time.sleep
    fs_mod.time.sleep = lambda s: None
    try:
        fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
        fs.write("/f", b"kept", 0, fh)
        store.fail_next("PutObject", TransientError("down"), times=2)
        assert errno_of(fs.flush, "/f", fh) == errno.EIO
    finally:
        fs_mod.time.sleep = real_sleep
    assert [r.key for r in fs.cache.dirty_entries()] == ["f"]
    fs.release("/f", fh)  # the store answers again: release sends it
    assert store.peek("f") == b"kept"


def test_recover_uploads_dirty_file_of_an_earlier_run(tmp_path, store, clock):
    """A dirty staged file left by a crash is uploaded by the next mount's
    background uploader, without anyone opening it."""
    import time as _time
    from ossfs.config import Config
    cache = Cache(str(tmp_path / "c"), store, background_fill=False, clock=clock)
    sf = cache.open("left.bin", None)
    sf.set_meta({"mode": "33188"}, content_type="application/octet-stream")
    sf.write(0, b"left behind")
    # crash: no release, no close
    cache._index.close()
    cache2 = Cache(str(tmp_path / "c"), store, background_fill=False, clock=clock)
    fs = FileSystem(store, Config(bucket="b"), cache2, clock=clock)
    try:
        fs.init()
        deadline = _time.monotonic() + 10
        while "left.bin" not in store.keys() and _time.monotonic() < deadline:
            _time.sleep(0.05)
        assert store.peek("left.bin") == b"left behind"
        assert cache2.dirty_entries() == []
    finally:
        fs.destroy()


def test_recover_keeps_conflicting_local_version_aside(tmp_path, store, clock, caplog):
    import logging
    from ossfs.config import Config
    store.put("doc.txt", b"v1 from the bucket")
    info = store.head("doc.txt")
    cache = Cache(str(tmp_path / "c"), store, background_fill=False, clock=clock)
    sf = cache.open("doc.txt", info)
    sf.write(0, b"v2 local")
    cache._index.close()  # crash
    store.put("doc.txt", b"v3 from another writer")
    cache2 = Cache(str(tmp_path / "c"), store, background_fill=False, clock=clock)
    fs = FileSystem(store, Config(bucket="b"), cache2, clock=clock)
    try:
        rec = cache2.dirty_entries()[0]
        fs._unchecked = {rec.file_id}
        with caplog.at_level(logging.WARNING, logger="ossfs.fs"):
            target = fs.recover(rec.key, rec.file_id)
        assert target.startswith("doc.txt.ossfs-conflict-") and target != "doc.txt"
        assert store.peek("doc.txt") == b"v3 from another writer"
        # the local bytes; the rest of v1 was never staged and v1 is gone: zeros
        assert store.peek(target) == b"v2 local" + b"\0" * (len(b"v1 from the bucket") - len(b"v2 local"))
        assert any("changed in the bucket" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING)
        assert cache2.dirty_entries() == []
    finally:
        fs.destroy()


@pytest.mark.parametrize("change", ["chmod", "utimens", "setxattr"])
def test_attribute_change_during_an_upload_reaches_the_bucket(make_fs, clock, change):
    """A chmod/utime/setxattr that lands while the file's upload is on the wire is not
    lost: the close that was uploading sends the new headers before it returns."""
    import threading

    class SlowStore(MemoryStore):
        gate = threading.Event()
        entered = threading.Event()
        puts = 0

        def put(self, key, body, **kw):
            SlowStore.puts += 1
            if SlowStore.puts == 1:
                self.entered.set()
                assert self.gate.wait(10)
            return super().put(key, body, **kw)

    st = SlowStore(clock=clock)
    fs = make_fs(st=st, name="slowput")
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"data", 0, fh)
    closer = threading.Thread(target=lambda: (fs.flush("/f", fh), fs.release("/f", fh)))
    closer.start()
    assert SlowStore.entered.wait(10)
    if change == "chmod":
        fs.chmod("/f", 0o600)
    elif change == "utimens":
        fs.utimens("/f", (1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    else:
        fs.setxattr("/f", "user.k", b"v", 0)
    SlowStore.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    meta = st.head("f").meta
    if change == "chmod":
        assert meta["mode"] == str(stat.S_IFREG | 0o600)
        assert fs.getattr("/f")["st_mode"] == stat.S_IFREG | 0o600
    elif change == "utimens":
        assert meta["mtime"] == "1600000000"
        assert fs.getattr("/f")["st_mtime"] == 1_600_000_000
    else:
        assert "xattr" in meta
        assert fs.getxattr("/f", "user.k") == b"v"
    assert st.head("f").size == 4
    assert fs.status()["dirty"] == []


class GatedStore(MemoryStore):
    """PUTs of ``gated`` wait for ``gate`` (so a test can act while one is on the wire)."""

    def __init__(self, clock):
        super().__init__(clock=clock)
        import threading
        self.gate = None
        self.gated = "f"
        self.entered = threading.Event()

    def put(self, key, body, **kw):
        if self.gate is not None and key == self.gated:
            self.entered.set()
            assert self.gate.wait(10)
        return super().put(key, body, **kw)


def _leave_dirty(fs, store, path, data):
    """A closed file whose upload failed: its data only in the cache."""
    fh = fs.create(path, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ME)
    fs.write(path, data, 0, fh)
    store.fail_next("PutObject", TransientError("down"), times=2)  # flush and release; retries=0
    assert errno_of(fs.flush, path, fh) == errno.EIO
    fs.release(path, fh)
    assert fs.cache.dirty_closed()


def test_a_stale_background_round_never_empties_an_uploaded_file(make_fs, store):
    """The background uploader lists a dirty closed file; the user's own close uploads it
    first; the uploader reaching its stale entry must not reopen the key as a new,
    empty, dirty file (which the next upload would send over the user's data)."""
    fs = make_fs(retries=0)
    _leave_dirty(fs, store, "/f", b"precious data")
    (stale,) = fs.cache.dirty_closed()
    fh = fs.open("/f", os.O_RDWR, ME)
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert store.peek("f") == b"precious data"
    assert fs.recover(stale.key, stale.file_id) is None
    assert fs.cache.dirty_entries() == []
    assert read_file(fs, "/f") == b"precious data"
    fs.destroy()
    assert store.peek("f") == b"precious data"


def _superseded_handle(fs, store, flags, v1, v2):
    """A handle on version ``v1`` of /f, after another client stored ``v2`` and another
    open on this host read it."""
    store.put("f", v1)
    fh = fs.open("/f", flags, ME)
    assert fs.read("/f", 100, 0, fh) == v1
    store.put("f", v2)
    assert read_file(fs, "/f") == v2
    assert fs.read("/f", 100, 0, fh) == v1
    return fh


def test_writes_through_a_handle_whose_version_was_superseded_are_uploaded(make_fs, store):
    """Handle A is open; another client replaces the object; another open on this host
    sees the new version.  A keeps its version, and what A writes and closes is uploaded
    (the last close wins), not dropped."""
    fs = make_fs()
    fha = _superseded_handle(fs, store, os.O_RDWR, b"v1 from elsewhere", b"v2 from another client")
    fs.write("/f", b"A's data", 0, fha)
    fs.flush("/f", fha)
    fs.release("/f", fha)
    assert store.peek("f") == b"A's dataelsewhere"
    assert read_file(fs, "/f") == b"A's dataelsewhere"


def test_a_superseded_clean_handle_leaves_nothing_behind(make_fs, store):
    fs = make_fs()
    fha = _superseded_handle(fs, store, os.O_RDONLY, b"v1", b"v2")
    fs.release("/f", fha)
    assert fs.cache.dirty_entries() == []
    assert store.peek("f") == b"v2"


def test_unlink_while_the_background_uploader_sends_the_file(make_fs, clock):
    """rm of a file whose earlier close failed, while the background uploader is sending
    it: the upload ends first, the delete wins, and the name does not come back."""
    import threading

    st = GatedStore(clock)
    fs = make_fs(st=st, name="gated", retries=0)
    _leave_dirty(fs, st, "/f", b"new version, close failed")
    rec = fs.cache.dirty_closed()[0]
    st.gate = threading.Event()
    sender = threading.Thread(target=fs.recover, args=("f", rec.file_id))
    sender.start()
    assert st.entered.wait(10)
    # while it is on the wire the file keeps its name and its attributes
    assert fs.getattr("/f")["st_size"] == len(b"new version, close failed")
    assert "f" in [n for n, _ in fs.readdir("/")]
    remover = threading.Thread(target=fs.unlink, args=("/f",))
    remover.start()
    st.gate.set()
    sender.join(10)
    remover.join(10)
    assert not sender.is_alive() and not remover.is_alive()
    assert "f" not in st.keys()
    assert errno_of(fs.getattr, "/f") == errno.ENOENT
    fs.destroy()
    assert "f" not in st.keys()


@pytest.mark.parametrize("stop", ["unmount", "crash"])
def test_an_unlinked_open_file_stays_deleted_after_the_mount_stops(make_fs, store, stop):
    """rm of a file a process still holds open and writes: neither an unmount with the
    handle open nor a crash brings the name back at the next mount."""
    fs = make_fs()
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", b"scratch data of a deleted temp file", 0, fh)
    fs.unlink("/f")
    fs.write("/f", b" and more", 35, fh)
    if stop == "unmount":
        fs.destroy()
    else:
        fs._bg_stop.set()  # kill -9: nothing runs, nothing is closed
    fs2 = make_fs(name="c")
    fs2.destroy()  # waits for its background recovery
    assert "f" not in store.keys()


@pytest.mark.parametrize("size", [1000, 400 * 1024])
@pytest.mark.parametrize("other", ["replaced", "deleted"])
def test_an_edit_of_a_version_that_is_gone_is_kept_once_not_retried_forever(make_fs, store, size, other):
    """A file edited in place without reading it all, while another client replaces or
    deletes the object: the bytes never read here exist nowhere any more.  The close
    says so once (EIO); the local version, zeros where bytes were missing, is uploaded
    as a conflict copy (replaced: the other version stays at the key) or at the key
    (deleted); then the file is clean and later closes succeed."""
    fs = make_fs(retries=0, upload_threshold=200 * 1024)
    store.put("f", b"o" * size)
    fh = fs.open("/f", os.O_WRONLY, ME)
    fs.write("/f", b"EDIT", 0, fh)
    if other == "replaced":
        store.put("f", b"other client's version")
    else:
        store.delete("f")
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert fs.cache.dirty_entries() == []
    expected = b"EDIT" + b"\0" * (size - 4)
    if other == "replaced":
        assert store.peek("f") == b"other client's version"
        (copy,) = [k for k in store.keys() if k.startswith("f.ossfs-conflict-")]
        assert store.peek(copy) == expected
    else:
        assert store.keys() == ["f"]
        assert store.peek("f") == expected


def test_the_background_uploader_keeps_an_edit_of_a_version_that_is_gone(make_fs, store):
    fs = make_fs(retries=0)
    store.put("f", b"o" * 1000)
    fh = fs.open("/f", os.O_WRONLY, ME)
    fs.write("/f", b"EDIT", 0, fh)
    # the flush and the release fail while fetching the bytes they need, which stay missing
    store.fail_next("GetObject", TransientError("down"), times=2)
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    fs.release("/f", fh)
    store.put("f", b"other client's version")
    (rec,) = fs.cache.dirty_closed()
    target = fs.recover("f", rec.file_id)
    assert target.startswith("f.ossfs-conflict-")
    assert store.peek(target) == b"EDIT" + b"\0" * 996
    assert store.peek("f") == b"other client's version"
    assert fs.cache.dirty_entries() == []


@pytest.mark.parametrize("prefix", ["", "pfx0123456789/"])
def test_key_length_limits_count_the_mount_prefix_and_a_directory_marker(make_fs, clock, prefix):
    """Object keys are at most 1023 bytes in the bucket: a file's key, with the mount's
    prefix; a directory's marker, with its "/" too.  Longer: ENAMETOOLONG at once (the
    bucket would refuse the upload: EIO, and a file left dirty forever)."""
    st = MemoryStore(clock=clock)
    st.prefix = prefix  # what OssStore adds to every key of a bucket:/prefix mount
    fs = make_fs(st=st, name="p%d" % len(prefix))
    parents = ""
    for i in range(4):
        parents += "/" + chr(ord("a") + i) * 250
        fs.mkdir(parents, 0o755, ME)
    room = 1023 - len(prefix) - len(parents)  # key = parents[1:] + "/" + name
    write_file(fs, parents + "/" + "f" * room, b"x")
    assert errno_of(fs.create, parents + "/" + "g" * (room + 1), 0o644, os.O_WRONLY | os.O_CREAT, ME) \
        == errno.ENAMETOOLONG
    fs.mkdir(parents + "/" + "h" * (room - 1), 0o755, ME)
    assert errno_of(fs.mkdir, parents + "/" + "i" * room, 0o755, ME) == errno.ENAMETOOLONG
    assert errno_of(fs.rename, parents + "/" + "h" * (room - 1), parents + "/" + "j" * room) \
        == errno.ENAMETOOLONG
    fs.rename(parents + "/" + "f" * room, parents + "/" + "k" * room)


def test_files_larger_than_one_put_are_efbig_with_nomultipart(make_fs):
    """With nomultipart every upload is one PutObject, which OSS limits to 5 GiB: growing
    a file past that is EFBIG at once, not an upload that fails at close forever."""
    fs = make_fs(nomultipart=True)
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    assert errno_of(fs.truncate, "/f", (5 << 30) + 1, fh) == errno.EFBIG
    assert errno_of(fs.write, "/f", b"x", 5 << 30, fh) == errno.EFBIG
    fs.write("/f", b"x", (5 << 30) - 1, fh)  # the last byte that fits (a sparse staged file)
    assert fs.getattr("/f", fh)["st_size"] == 5 << 30
    fs.truncate("/f", 0, fh)
    fs.release("/f", fh)
    fs2 = make_fs(name="multi")
    fh = fs2.create("/g", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs2.truncate("/g", (5 << 30) + 1, fh)  # multipart: fine
    assert errno_of(fs2.truncate, "/g", 10_000 * (5 << 30) + 1, fh) == errno.EFBIG
    fs2.truncate("/g", 0, fh)
    fs2.release("/g", fh)


def test_xattrs_that_would_not_fit_in_the_headers_are_e2big(fs, store):
    """OSS keeps 8 KB of user metadata per object; an xattr that would push the xattr
    header past its share is E2BIG, and nothing already stored is lost."""
    write_file(fs, "/f", b"data")
    fs.setxattr("/f", "user.small", b"v" * 1000, 0)
    assert errno_of(fs.setxattr, "/f", "user.big", b"x" * 8000, 0) == errno.E2BIG
    for i in range(20):
        try:
            fs.setxattr("/f", "user.k%d" % i, b"y" * 500, 0)
        except OssfsError as exc:
            assert to_errno(exc) == errno.E2BIG
            break
    else:
        pytest.fail("20 x 500 bytes of xattrs were all accepted")
    assert fs.getxattr("/f", "user.small") == b"v" * 1000
    assert "user.big" not in fs.listxattr("/f")
    assert len(store.head("f").meta["xattr"]) <= 7 * 1024


def test_rename_over_a_file_the_background_uploader_is_sending(make_fs, clock):
    """mv g f while the background uploader sends an older f: that upload ends first,
    and the renamed file is what stays at f."""
    import threading

    st = GatedStore(clock)
    fs = make_fs(st=st, name="gated2", retries=0)
    _leave_dirty(fs, st, "/f", b"old f, close failed")
    write_file(fs, "/g", b"the new f")
    rec = fs.cache.dirty_closed()[0]
    st.gate = threading.Event()
    sender = threading.Thread(target=fs.recover, args=("f", rec.file_id))
    sender.start()
    assert st.entered.wait(10)
    mover = threading.Thread(target=fs.rename, args=("/g", "/f"))
    mover.start()
    st.gate.set()
    sender.join(10)
    mover.join(10)
    assert not sender.is_alive() and not mover.is_alive()
    assert st.peek("f") == b"the new f"
    assert "g" not in st.keys()
    assert read_file(fs, "/f") == b"the new f"
    fs.destroy()
    assert st.peek("f") == b"the new f"


def test_a_rewrite_never_resumes_an_interrupted_upload_with_stale_parts(make_fs, clock, monkeypatch):
    """An upload interrupted after some parts leaves a checkpoint.  If the file is then
    changed, those parts are stale, even when size, mtime and inode look the same (a
    same-size rewrite within one timestamp tick, simulated here with a constant
    fingerprint): the next upload must not reuse them."""
    import ossfs.transfer as transfer

    class PartialStore(MemoryStore):
        failing = True

        def upload_part(self, key, upload_id, part_number, body):
            if self.failing and part_number >= 3:
                raise TransientError("down")
            return super().upload_part(key, upload_id, part_number, body)

    monkeypatch.setattr(transfer, "file_fingerprint", lambda fd: "same")
    st = PartialStore(clock=clock)
    fs = make_fs(st=st, name="partial", upload_threshold=200 * 1024, retries=0)
    old = b"a" * (400 * 1024)
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", old, 0, fh)
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    (rec,) = fs.cache.dirty_entries()
    assert rec.checkpoint and rec.checkpoint["parts"]
    new = b"b" * (400 * 1024)
    fs.write("/f", new, 0, fh)  # same size, "same" fingerprint
    st.failing = False
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert st.peek("f") == new


@pytest.mark.parametrize("size", [1000, 400 * 1024])
def test_kill9_keeps_writes_made_since_the_record_was_last_saved(make_fs, store, size):
    """After kill -9, the next mount uploads what was written but not closed: also the
    writes of the last second, which the saved record does not list yet (the journal
    does), instead of fetching the object's old bytes over them."""
    fs = make_fs(upload_threshold=200 * 1024)
    store.put("f", b"o" * size)
    fh = fs.open("/f", os.O_WRONLY, ME)
    fs.write("/f", b"EDIT", 500, fh)
    fs.write("/f", b"MORE", size - 2, fh)  # also grows the file
    fs._bg_stop.set()  # kill -9: nothing else runs, nothing is closed
    fs2 = make_fs(name="c", upload_threshold=200 * 1024)
    fs2.destroy()  # waits for its background recovery
    data = store.peek("f")
    assert data[500:504] == b"EDIT" and data[:500] == b"o" * 500
    assert data[size - 2:] == b"MORE" and len(data) == size + 2
    assert not [n for n in os.listdir(fs2.cache.files_dir) if n.endswith(".w")]


def test_a_write_does_not_wait_for_the_whole_background_fill(make_fs, clock):
    """The background filler stages a file in steps; a write to the file waits for the
    step under way, not for the rest of the file."""
    import threading

    class SlowStore(MemoryStore):
        def get_to_file(self, *a, **kw):  # the Downloader's ranged GETs
            threading.Event().wait(0.05)
            return super().get_to_file(*a, **kw)

    st = SlowStore(clock=clock)
    st.put("f", os.urandom(24 << 20))
    fs = make_fs(st=st, name="slowfill", fill=True)
    fh = fs.open("/f", os.O_RDWR, ME)
    fs.write("/f", b"X", 0, fh)
    sf = fs.cache.get_open("f")
    assert not sf.complete(), "the write waited for the whole fill"
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert st.peek("f")[:1] == b"X" and len(st.peek("f")) == 24 << 20


def test_appending_to_a_large_object_fetches_none_of_it(make_fs, store):
    """O_WRONLY|O_APPEND on an object above the multipart threshold: no background fill;
    the upload copies the untouched parts server-side and fetches only the last,
    partly written one."""
    old = os.urandom(2 << 20)
    store.put("log", old)
    fs = make_fs(upload_threshold=200 * 1024, fill=True)
    before = store.counts["GetObject"]
    fh = fs.open("/log", os.O_WRONLY | os.O_APPEND, ME)
    fs.write("/log", b"one more line\n", len(old), fh)
    fs.flush("/log", fh)
    fs.release("/log", fh)
    assert store.peek("log") == old + b"one more line\n"
    assert store.counts["GetObject"] - before <= 1


def test_background_round_stops_at_an_outage_and_sends_the_rest_later(make_fs, store):
    """With the bucket down, one pass of the background uploader tries at most
    RECOVERY_PARALLEL files (not every file, each spending its own retries); the next
    pass sends them all.  A permanent failure of one file does not hold back others."""
    from concurrent.futures import ThreadPoolExecutor

    from ossfs.errors import AccessDenied
    from ossfs.fs import RECOVERY_PARALLEL
    fs = make_fs(retries=0)
    n = RECOVERY_PARALLEL * 3
    for i in range(n):
        _leave_dirty(fs, store, "/f%d" % i, b"data %d" % i)
    assert len(fs.cache.dirty_closed()) == n
    with ThreadPoolExecutor(RECOVERY_PARALLEL) as pool:
        before = store.counts["PutObject"]
        store.fail_next("PutObject", TransientError("down"), times=10 * n)
        fs._background_round(pool, 30)
        assert 1 <= store.counts["PutObject"] - before <= RECOVERY_PARALLEL
        assert len(fs.cache.dirty_closed()) == n
        store.fail_next("PutObject", AccessDenied("no"), times=1)   # one file refused for good
        fs._background_round(pool, 30)
    assert len(fs.cache.dirty_closed()) == 1
    sent = [i for i in range(n) if "f%d" % i in store.keys() and store.peek("f%d" % i) == b"data %d" % i]
    assert len(sent) == n - 1
    (left,) = fs.cache.dirty_closed()
    assert left.key not in ["f%d" % i for i in sent]


def test_failed_directory_rename_leaves_nothing_cached_about_either_name(make_fs, store):
    """The copies landed but the delete of the old keys failed: both trees exist, stat
    says so, and renaming another directory onto the new name is refused (ENOTEMPTY),
    not merged into what the failed rename left there."""
    fs = make_fs(retries=0)
    fs.mkdir("/src", 0o755, ME)
    fs.mkdir("/other", 0o755, ME)
    for i in range(5):
        write_file(fs, "/src/f%d" % i, b"%d" % i)
    write_file(fs, "/other/mine", b"mine")
    store.fail_next("DeleteMultipleObjects", TransientError("down"), times=5)
    assert errno_of(fs.rename, "/src", "/dst") == errno.EIO
    assert stat.S_ISDIR(fs.getattr("/dst")["st_mode"])
    assert sorted(n for n, _ in fs.readdir("/dst"))[-5:] == ["f%d" % i for i in range(5)]
    assert errno_of(fs.rename, "/other", "/dst") == errno.ENOTEMPTY
    assert read_file(fs, "/other/mine") == b"mine"


def test_failed_rename_over_an_empty_directory_keeps_it(make_fs, store):
    """The empty directory a rename replaces goes only after the tree was copied: when
    the copies fail, it is still there, with its attributes."""
    fs = make_fs(retries=0)
    fs.mkdir("/src", 0o755, ME)
    write_file(fs, "/src/f", b"f")
    fs.mkdir("/dst", 0o700, ME)
    store.fail_next("CopyObject", TransientError("down"))
    assert errno_of(fs.rename, "/src", "/dst") == errno.EIO
    assert "dst/" in store.keys()
    assert stat.S_IMODE(fs.getattr("/dst")["st_mode"]) == 0o700
    assert read_file(fs, "/src/f") == b"f"
    fs.rename("/src", "/dst")
    assert sorted(k for k in store.keys() if k.startswith(("src", "dst"))) == ["dst/", "dst/f"]
    assert stat.S_IMODE(fs.getattr("/dst")["st_mode"]) == 0o755


def test_rename_over_an_empty_directory_of_another_form_deletes_its_marker(fs, store):
    """An s3fs "dst_$folder$" marker of the replaced directory does not survive the
    rename beside the moved tree's "dst/"."""
    store.put("dst_$folder$", b"")
    fs.mkdir("/src", 0o755, ME)
    write_file(fs, "/src/f", b"f")
    fs.rename("/src", "/dst")
    assert sorted(k for k in store.keys() if k.startswith(("src", "dst"))) == ["dst/", "dst/f"]
    assert read_file(fs, "/dst/f") == b"f"


def test_directory_rename_checks_every_new_key_length_before_copying(fs, store):
    fs.mkdir("/a", 0o755, ME)
    fs.mkdir("/a/" + "d" * 250, 0o755, ME)
    fs.mkdir("/a/" + "d" * 250 + "/" + "e" * 250, 0o755, ME)
    fs.mkdir("/a/" + "d" * 250 + "/" + "e" * 250 + "/" + "f" * 250, 0o755, ME)
    deep = "/a/" + "d" * 250 + "/" + "e" * 250 + "/" + "f" * 250 + "/" + "g" * 30  # key: 785 bytes
    write_file(fs, deep, b"x")
    copies = store.counts["CopyObject"]
    assert errno_of(fs.rename, "/a", "/" + "c" * 250) == errno.ENAMETOOLONG
    assert store.counts["CopyObject"] == copies
    assert read_file(fs, deep) == b"x"


def test_failed_parallel_copies_end_before_the_error_is_returned(fs):
    """_map: after the first failure nothing more starts, and the call returns only
    when the calls already started have ended."""
    import threading
    import time as _time
    lock = threading.Lock()
    state = {"started": 0, "running": 0}

    def fn(i):
        with lock:
            state["started"] += 1
            state["running"] += 1
        try:
            if i == 0:
                raise FsError(errno.EIO)
            _time.sleep(0.05)
        finally:
            with lock:
                state["running"] -= 1

    with pytest.raises(FsError):
        fs._map(fn, range(500))
    assert state["running"] == 0
    assert state["started"] < 500
    started = state["started"]
    _time.sleep(0.2)
    assert state["started"] == started


def test_rename_of_a_directory_takes_its_folder_marker_along(fs, store):
    """An s3fs/Hadoop tree: ``s_$folder$`` beside ``s/file``; after ``mv s s2`` the old
    name must not come back as an empty directory."""
    store.put("s_$folder$", b"")
    store.put("s/file", b"hello")
    fs.rename("/s", "/s2")
    assert "s_$folder$" not in store.keys()
    assert "s" not in [n for n, _ in fs.readdir("/")]
    assert errno_of(fs.getattr, "/s") == errno.ENOENT
    assert read_file(fs, "/s2/file") == b"hello"


def test_implicit_ancestors_vanish_with_their_last_descendant(fs, store):
    store.put("gp/a/b/c", b"x")
    assert [n for n, _ in fs.readdir("/gp/a/b")][-1:] == ["c"]
    for p in ("/gp", "/gp/a", "/gp/a/b"):
        assert stat.S_ISDIR(fs.getattr(p)["st_mode"])
    fs.unlink("/gp/a/b/c")
    for p in ("/gp/a/b", "/gp/a", "/gp"):
        assert errno_of(fs.getattr, p) == errno.ENOENT


def test_names_that_are_not_utf8(fs):
    """Object keys are UTF-8: a name with other bytes (a surrogate escape here) does not
    exist, and cannot be created."""
    bad = "/bad" + b"\xff".decode("utf-8", "surrogateescape")
    assert errno_of(fs.getattr, bad) == errno.ENOENT
    assert errno_of(fs.create, bad, 0o644, os.O_WRONLY | os.O_CREAT, ME) == errno.EILSEQ
    assert errno_of(fs.mkdir, bad, 0o755, ME) == errno.EILSEQ
    write_file(fs, "/good", b"x")
    assert errno_of(fs.rename, "/good", bad) == errno.EILSEQ
    assert errno_of(fs.unlink, bad) == errno.ENOENT
    assert read_file(fs, "/good") == b"x"


def test_failed_rename_over_a_file_with_unsent_changes_loses_nothing(make_fs, store):
    """The rename's copy fails: the replaced file's staged changes (open, and closed
    after a failed upload) are given back to it, and uploaded after all."""
    fs = make_fs(retries=0)
    write_file(fs, "/s", b"source")
    write_file(fs, "/t", b"old-t")
    _leave_dirty(fs, store, "/u", b"unsent u")              # closed, upload failed
    fh = fs.open("/t", os.O_WRONLY | os.O_TRUNC, ME)        # open, written, not closed
    fs.write("/t", b"precious new data of t", 0, fh)
    store.fail_next("CopyObject", TransientError("down"), times=2)
    assert errno_of(fs.rename, "/s", "/t") == errno.EIO
    assert errno_of(fs.rename, "/s", "/u") == errno.EIO
    fs.flush("/t", fh)
    fs.release("/t", fh)
    assert store.peek("t") == b"precious new data of t"
    assert read_file(fs, "/t") == b"precious new data of t"
    assert read_file(fs, "/u") == b"unsent u"
    assert read_file(fs, "/s") == b"source"
    fs.destroy()
    assert store.peek("u") == b"unsent u"


def test_failed_unlink_of_an_open_file_loses_nothing(make_fs, store):
    fs = make_fs(retries=0)
    write_file(fs, "/f", b"v1")
    fh = fs.open("/f", os.O_WRONLY | os.O_TRUNC, ME)
    fs.write("/f", b"v2 written before the rm", 0, fh)
    store.fail_next("DeleteObject", TransientError("down"), times=1)
    assert errno_of(fs.unlink, "/f") == errno.EIO
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert store.peek("f") == b"v2 written before the rm"
    fs.unlink("/f")                                         # and a working rm still works
    assert "f" not in store.keys()


def test_names_that_other_tools_read_as_directory_markers_are_refused(fs, store):
    assert errno_of(fs.create, "/x_$folder$", 0o644, os.O_WRONLY | os.O_CREAT, ME) == errno.EINVAL
    assert errno_of(fs.mkdir, "/y_$folder$", 0o755, ME) == errno.EINVAL
    write_file(fs, "/z", b"z")
    assert errno_of(fs.rename, "/z", "/z_$folder$") == errno.EINVAL
    assert store.keys() == ["z"]


def test_a_failed_open_leaves_no_broken_staged_file(fs, store, monkeypatch):
    """The staged file cannot be created (a cache directory made read-only): that open
    fails, and the next one, once the directory is writable again, works."""
    import ossfs.cache as cache_mod
    store.put("f", b"contents")
    real_open = cache_mod.os.open
    calls = {"n": 0}

    def failing_open(path, *a, **kw):
        if path.startswith(fs.cache.files_dir) and calls["n"] == 0:
            calls["n"] += 1
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(cache_mod.os, "open", failing_open)
    with pytest.raises(OSError) as info:          # the adapter passes it on as EROFS
        fs.open("/f", os.O_RDONLY, ME)
    assert info.value.errno == errno.EROFS and calls["n"] == 1
    assert read_file(fs, "/f") == b"contents"
    assert fs.cache.open_files() == []


def test_reading_an_open_file_another_client_deleted_is_estale(make_fs, store):
    fs = make_fs()
    data = os.urandom(3 << 20)
    store.put("big", data)
    fh = fs.open("/big", os.O_RDONLY, ME)
    assert fs.read("/big", 10, 0, fh) == data[:10]
    store.delete("big")
    assert errno_of(fs.read, "/big", 10, 2 << 20, fh) == errno.ESTALE
    fs.release("/big", fh)


def test_a_failed_rm_does_not_bring_back_a_version_an_earlier_rm_removed(make_fs, store):
    fs = make_fs(retries=0)
    write_file(fs, "/f", b"v1")
    a = fs.open("/f", os.O_RDWR, ME)
    store.put("f", b"v2 other client")
    b = fs.open("/f", os.O_RDONLY, ME)          # a's version is superseded
    fs.write("/f", b"A-stale", 0, a)
    fs.unlink("/f")                            # both versions detached
    write_file(fs, "/f", b"new")
    store.fail_next("DeleteObject", TransientError("down"), times=1)
    assert errno_of(fs.unlink, "/f") == errno.EIO
    fs.release("/f", b)
    fs.flush("/f", a)
    fs.release("/f", a)
    assert store.peek("f") == b"new"


def test_a_rename_that_fails_fetching_the_source_keeps_the_replaced_file(make_fs, store):
    """The source is a dirty file staged sparsely: before the old object goes, it must
    fetch what it misses; when that fails, the file the rename would replace keeps
    its unsent changes."""
    fs = make_fs(retries=0)
    _leave_dirty(fs, store, "/u", b"unsent u")
    store.put("s", b"x" * (3 << 20))
    h = fs.open("/s", os.O_WRONLY, ME)
    fs.write("/s", b"y", 0, h)
    store.fail_next("GetObject", TransientError("down"), times=20)
    assert errno_of(fs.rename, "/s", "/u") == errno.EIO
    store._failures.clear()
    assert read_file(fs, "/u") == b"unsent u"
    fs.flush("/s", h)
    fs.release("/s", h)
    fs.destroy()
    assert store.peek("u") == b"unsent u"
    assert store.peek("s") == b"y" + b"x" * ((3 << 20) - 1)


# --- what the mount shows vs what it writes ---

def test_umask_and_forced_owners_are_shown_not_written(make_fs, store, clock):
    """``umask=``, ``uid=`` and ``gid=`` change what this mount shows; touching,
    rewriting or tagging a file writes back the mode and owners its headers held, as
    s3fs does, so other clients keep seeing them."""
    fs = make_fs(umask=0o077, uid=1234, gid=1234)
    for name in ("touched", "rewritten", "tagged", "chmodded"):
        store.put(name, b"data", meta={"mode": "33188", "uid": "0", "gid": "0"})
    st = fs.getattr("/touched")
    assert (stat.S_IMODE(st["st_mode"]), st["st_uid"], st["st_gid"]) == (0o600, 1234, 1234)
    clock.t += 10
    fs.utimens("/touched")
    fh = fs.open("/rewritten", os.O_WRONLY | os.O_APPEND, ME)
    fs.write("/rewritten", b"more", 4, fh)
    st = fs.getattr("/rewritten", fh)
    assert (stat.S_IMODE(st["st_mode"]), st["st_uid"]) == (0o600, 1234)  # shown so while open too
    fs.flush("/rewritten", fh)
    fs.release("/rewritten", fh)
    fs.setxattr("/tagged", "user.k", b"v")
    for name in ("touched", "rewritten", "tagged"):
        meta = store.head(name).meta
        assert (meta["mode"], meta["uid"], meta["gid"]) == ("33188", "0", "0"), name
    assert store.peek("rewritten") == b"datamore"
    fs.chmod("/chmodded", 0o640)
    meta = store.head("chmodded").meta
    assert (meta["mode"], meta["uid"]) == (str(stat.S_IFREG | 0o640), "0")
    assert stat.S_IMODE(fs.getattr("/chmodded")["st_mode"]) == 0o600


def test_rewrite_and_chmod_of_open_file_keep_other_tools_headers(fs, store):
    """Headers ossfs does not own (another tool's x-oss-meta-*) survive a rewrite of
    the file and a chmod while it is open and dirty."""
    store.put("f", b"v1", meta={"mode": "33188", "custom": "keep-me"})
    fh = fs.open("/f", os.O_RDWR, ME)
    fs.write("/f", b"v2", 0, fh)
    fs.chmod("/f", 0o600)
    fs.flush("/f", fh)
    fs.release("/f", fh)
    meta = store.head("f").meta
    assert meta["custom"] == "keep-me" and meta["mode"] == str(stat.S_IFREG | 0o600)
    assert store.peek("f") == b"v2"


def test_chmod_reads_headers_again_when_its_entry_is_not_recent(make_fs, store, clock):
    """Another client's chown (a copy of the object onto itself: same ETag) is not
    undone by this mount's later chmod from an older cached entry."""
    fs = make_fs(stat_cache_expire=900)
    store.put("f", b"x", meta={"mode": "33188", "uid": "0", "gid": "0"})
    assert fs.getattr("/f")["st_uid"] == 0
    clock.t += 30
    store.copy("f", "f", meta={"mode": "33188", "uid": "1000", "gid": "1000"})
    fs.chmod("/f", 0o600)
    meta = store.head("f").meta
    assert (meta["mode"], meta["uid"], meta["gid"]) == (str(stat.S_IFREG | 0o600), "1000", "1000")


def test_a_garbage_mode_header_does_not_break_its_directory(fs, store):
    store.put("d/bad", b"x", meta={"mode": "\u00b2"})
    store.put("d/good", b"y")
    assert sorted(n for n, _ in fs.readdir("/d"))[-2:] == ["bad", "good"]
    assert stat.S_ISREG(fs.getattr("/d/bad")["st_mode"])


def test_readlink_follows_a_link_another_client_repointed(fs, store, clock):
    store.put("l", b"target-one", meta={"mode": str(stat.S_IFLNK | 0o777)})
    assert fs.readlink("/l") == "target-one"
    store.put("l", b"target-two", meta={"mode": str(stat.S_IFLNK | 0o777)})
    clock.t += 1  # a target read within the second is used again (LINK_TARGET_TTL)
    assert fs.readlink("/l") == "target-two"


def test_a_symlink_is_read_once_per_version(fs, store):
    """The kernel asks for a link's target at every path walk through it (40 times
    for a loop): within a second, one GET per link, not one per walk."""
    fs.symlink("/mine", "target-of-mine", ME)
    store.put("l", b"target-one", meta={"mode": str(stat.S_IFLNK | 0o777)})
    gets = store.counts["GetObject"]
    assert [fs.readlink("/mine") for _ in range(3)] == ["target-of-mine"] * 3
    assert [fs.readlink("/l") for _ in range(3)] == ["target-one"] * 3
    assert store.counts["GetObject"] == gets + 1


def test_listing_sees_another_clients_change_in_the_second_after_our_write(make_fs, store, clock):
    """Our own write's time stamp may be a second later than the object's Last-Modified,
    never earlier: a listed Last-Modified one second after ours is another client's
    change, whose headers a listing must not answer from our record."""
    fs = make_fs(stat_cache_expire=3)
    write_file(fs, "/f", b"x")
    clock.t += 1
    store.copy("f", "f", meta={"mode": str(stat.S_IFREG | 0o600), "uid": "1000", "gid": "1000"})
    clock.t += 10
    listed = dict(fs.readdir("/"))
    assert (stat.S_IMODE(listed["f"]["st_mode"]), listed["f"]["st_uid"]) == (0o600, 1000)


# --- upload path: failures part way ---

def test_chmod_after_an_interrupted_multipart_upload_reaches_the_bucket(make_fs, store):
    """An interrupted multipart upload was initiated with the old headers: a chmod of
    the dirty file afterwards makes its checkpoint unusable, so the next upload
    carries the new mode instead of completing the old upload."""
    fs = make_fs(retries=0, upload_threshold=200 * 1024)
    data = os.urandom(1 << 20)
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    fs.write("/f", data, 0, fh)
    store.fail_next("CompleteMultipartUpload", TransientError("down"), times=2)
    assert errno_of(fs.flush, "/f", fh) == errno.EIO
    fs.release("/f", fh)
    fs.chmod("/f", 0o600)
    fh = fs.open("/f", os.O_RDONLY, ME)
    fs.flush("/f", fh)
    fs.release("/f", fh)
    fs.destroy()
    assert store.peek("f") == data
    assert store.head("f").meta["mode"] == str(stat.S_IFREG | 0o600)


def test_unmount_checks_files_left_by_an_earlier_run_for_conflicts(make_fs, store, tmp_path):
    """A dirty file left by a crash is checked against the bucket before it is sent,
    at unmount as in the background: another writer's newer object is kept, ours goes
    beside it."""
    crashed = make_fs(name="c")
    fh = crashed.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    crashed.write("/f", b"LOCAL", 0, fh)        # never closed: the mount "crashes"
    store.put("f", b"OTHER")                    # another client writes meanwhile
    heads = store.counts["HeadObject"]
    store.fail_next("HeadObject", TransientError("down"))  # the background pass ends at once
    again = make_fs(name="c")                   # same cache directory
    for _ in range(500):                        # until the background pass has failed
        if store.counts["HeadObject"] > heads:
            break
        time.sleep(0.01)
    again.destroy()
    assert store.peek("f") == b"OTHER"
    conflicts = [k for k in store.keys() if k.startswith("f.ossfs-conflict")]
    assert len(conflicts) == 1 and store.peek(conflicts[0]) == b"LOCAL"


class _Killed(BaseException):
    """The daemon dies here (nothing in ossfs catches a BaseException)."""


def _crash_after_the_upload(fs, path, fh, monkeypatch) -> str:
    """Flush ``path`` and "kill -9" the mount ``fs`` right after the server completed
    the upload, before the cache index recorded it (the record stays dirty); returns
    the staged file's id."""
    from ossfs.cache import StagedFile
    persist = StagedFile.persist

    def dies_recording_the_upload(self, if_changed=False):
        if not self.rec.dirty and self.rec.etag is not None:
            raise _Killed()
        return persist(self, if_changed)
    with monkeypatch.context() as m:
        m.setattr(StagedFile, "persist", dies_recording_the_upload)
        with pytest.raises(_Killed):
            fs.flush(path, fh)
    (file_id,) = fs.cache._records
    assert fs.cache._index.get(file_id)["dirty"]    # the index does not know
    fs.cache._index.close()                         # the process is gone
    return file_id


@pytest.mark.parametrize("size", [50 * 1024, 250 * 1024], ids=["put", "multipart"])
@pytest.mark.parametrize("kind", ["memory", "oss"])
def test_an_upload_completed_just_before_a_crash_is_not_a_conflict(request, make_fs, monkeypatch, tmp_path, clock,
                                                                   kind, size):
    """kill -9 after the server completed an upload but before the index recorded it:
    the next mount finds the bucket holding exactly that file (size, CRC-64, headers)
    and records it as uploaded, sending nothing again and making no conflict copy.
    Also against ossfs-server through oss2: the headers compared are the real ones."""
    if kind == "memory":
        store = request.getfixturevalue("store")
        keys, counts = store.keys, lambda: dict(store.counts)
    else:
        from ossfs.store_oss import OssStore
        server = request.getfixturevalue("oss_server_session")
        prefix = "adopt-%s/" % os.urandom(6).hex()
        store = OssStore(server.endpoint, server.bucket, (server.access_key_id, server.access_key_secret),
                         prefix=prefix)

        def keys():
            import oss2
            return sorted(o.key[len(prefix):] for o in oss2.ObjectIterator(server.oss_bucket(), prefix=prefix))

        def counts():
            return dict(server.stats()["requests"])
    crashed = FileSystem(store, Config(bucket="b"), Cache(
        str(tmp_path / "c"), store, background_fill=False, clock=clock,
        uploader=Uploader(store, multipart_threshold=150 * 1024, part_size=100 * 1024, parallel=2)), clock=clock)
    data = os.urandom(size)
    fh = crashed.create("/f", 0o640, os.O_WRONLY | os.O_CREAT, ME)
    crashed.write("/f", data, 0, fh)
    _crash_after_the_upload(crashed, "/f", fh, monkeypatch)
    assert store.get_range("f", 0, size) == data    # the server has it
    sent = counts()
    again = make_fs(st=store, name="c", upload_threshold=150 * 1024)   # same cache directory
    for _ in range(500):
        if not again.cache.dirty_entries():
            break
        time.sleep(0.01)
    assert again.cache.dirty_entries() == []
    after = counts()
    assert keys() == ["f"]                           # no conflict copy
    assert store.get_range("f", 0, size) == data
    # a multipart upload's id is aborted too, in case it was not the one completed
    expected = {"HeadObject": 1} if size < 150 * 1024 else {"HeadObject": 1, "AbortMultipartUpload": 1}
    assert {op: n - sent.get(op, 0) for op, n in after.items() if n != sent.get(op, 0)} == expected
    assert read_file(again, "/f") == data
    assert stat.S_IMODE(again.getattr("/f")["st_mode"]) == 0o640


def test_a_file_renamed_while_recovery_asks_the_bucket_goes_to_its_new_name(tmp_path, monkeypatch):
    """Recovery asks the bucket about ``f`` (left dirty by a crash right after its
    upload completed); meanwhile the user renames it to ``g``, which deletes ``f``.
    The answer about ``f`` no longer describes the file: it is uploaded to ``g``, not
    recorded as already uploaded (nothing would ever send it) nor kept as a conflict."""
    clock = Clock()
    store = MemoryStore(clock=clock)

    def new_fs():
        cache = Cache(str(tmp_path / "c"), store, background_fill=False, clock=clock,
                      uploader=Uploader(store, multipart_threshold=1 << 30, part_size=100 * 1024, parallel=2),
                      downloader=Downloader(store, parallel=2, chunk_size=1 << 20))
        return FileSystem(store, Config(bucket="b"), cache, clock=clock)

    crashed = new_fs()
    data = os.urandom(5000)
    fh = crashed.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    crashed.write("/f", data, 0, fh)
    file_id = _crash_after_the_upload(crashed, "/f", fh, monkeypatch)

    again = new_fs()                      # not init(): drive recover() by hand
    again._unchecked = {file_id}
    real_head, renamed = store.head, []

    def head(key, *a, **kw):
        info = real_head(key, *a, **kw)
        if key == "f" and not renamed:    # the user's mv lands while recovery waits for the HEAD
            renamed.append(1)
            again.rename("/f", "/g")
        return info
    monkeypatch.setattr(store, "head", head)
    assert again.recover("f", file_id) == "g"
    monkeypatch.setattr(store, "head", real_head)
    assert store.keys() == ["g"] and store.peek("g") == data
    assert again.cache.dirty_entries() == []
    assert read_file(again, "/g") == data
    again.destroy()


def test_a_write_whose_early_upload_fails_still_returns_its_length(make_fs, store):
    """max_dirty_data makes a write upload early; when that upload fails the write
    itself succeeded (an O_APPEND writer retrying it would duplicate its record), and
    the flush reports the failure."""
    fs = make_fs(retries=0, max_dirty_data=1)
    fh = fs.create("/f", 0o644, os.O_WRONLY | os.O_CREAT, ME)
    record = b"r" * (1 << 20) + b"\n"          # over 1 MiB: uploaded by the write
    store.fail_next("PutObject", TransientError("down"))
    assert fs.write("/f", record, 0, fh) == len(record)
    assert store.counts["PutObject"] == 1       # the early upload was tried, and failed
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert store.peek("f") == record


def test_writes_on_an_append_handle_land_at_the_kernels_offset(fs, store):
    """The kernel places O_APPEND writes at its end of file; a write at another offset
    on such a handle is page-cache writeback of a shared mapping and must land there."""
    write_file(fs, "/f", b"a" * 8192)
    fh = fs.open("/f", os.O_RDWR | os.O_APPEND, ME)
    fs.write("/f", b"HELLO", 0, fh)
    fs.release("/f", fh)
    assert store.peek("f") == b"HELLO" + b"a" * 8187


def test_a_multipart_upload_aborted_on_the_server_is_started_again(make_fs, store):
    """NoSuchUpload from CompleteMultipartUpload (the upload was aborted meanwhile by an
    --incomplete-mpu-abort or a lifecycle rule) is not "the base object is gone": the
    close starts a new upload and returns 0."""
    from ossfs.errors import NotFound
    fs = make_fs(upload_threshold=200 * 1024)
    store.put("f", b"old")
    data = os.urandom(1 << 20)
    fh = fs.open("/f", os.O_WRONLY | os.O_TRUNC, ME)
    fs.write("/f", data, 0, fh)
    store.fail_next("CompleteMultipartUpload", NotFound("aborted", code="NoSuchUpload", status=404))
    fs.flush("/f", fh)
    fs.release("/f", fh)
    assert store.peek("f") == data
    assert [k for k in store.keys() if k != "f"] == []
