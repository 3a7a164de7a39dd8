"""Tests of the header <-> attribute codec: golden s3fs values, every fallback form,
garbage tolerance and property-based round trips."""
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ossfs import meta
from ossfs.meta import (DIR_CONTENT_TYPE, DIR_SIZE, Attr, Defaults, attr_from_info, decode_xattrs,
                        encode_xattrs, format_time, is_dir_content_type, meta_from_attr, parse_time)
from ossfs.store import ObjectInfo

D = Defaults(uid=1000, gid=1001)
LM = 1_600_000_000.5  # Last-Modified of the test objects


def info(m=None, size=10, lm=LM):
    return ObjectInfo(key="k", size=size, etag="E", last_modified=lm, meta=m)


def attr_of(m, is_dir=False, defaults=D, size=10):
    return attr_from_info(info(m, size=size), defaults, is_dir)


# --- golden values: what s3fs / ossfs 1.x write ---

def test_golden_canonical_headers():
    a = Attr(mode=stat.S_IFREG | 0o644, uid=0, gid=0, size=3, mtime_ns=1_700_000_000 * 10**9,
             ctime_ns=1_700_000_000 * 10**9 + 1, atime_ns=1_700_000_000 * 10**9, xattrs={})
    assert meta_from_attr(a) == {"mode": "33188", "uid": "0", "gid": "0", "mtime": "1700000000",
                                 "ctime": "1700000000.000000001", "atime": "1700000000"}


def test_golden_dir_mode_and_xattr_header():
    a = Attr(mode=stat.S_IFDIR | 0o755, uid=5, gid=6, size=0, mtime_ns=0, ctime_ns=0, atime_ns=0,
             xattrs={"user.foo": b"bar"})
    m = meta_from_attr(a)
    assert m["mode"] == "16877"
    assert m["xattr"] == "%7B%22user.foo%22%3A%22YmFy%22%7D"


@pytest.mark.parametrize("ns,text", [
    (0, "0"),
    (1_700_000_000 * 10**9, "1700000000"),
    (1_700_000_000 * 10**9 + 1, "1700000000.000000001"),
    (1_700_000_000 * 10**9 + 500_000_000, "1700000000.500000000"),
    (-1, "-1.999999999"),
    (-10**9, "-1"),
])
def test_format_time(ns, text):
    assert format_time(ns) == text
    assert parse_time(text) == ns


@pytest.mark.parametrize("text,ns", [
    ("1700000000.5", 1_700_000_000_500_000_000),       # rclone-style float
    ("1.7e9", 1_700_000_000 * 10**9),
    (" 42 ", 42 * 10**9),
    ("-1.5", -1_500_000_000),                          # not 9 digits: a decimal value
    ("1700000000.0000000019", 1_700_000_000_000_000_001),  # finer than ns: floor
    (".5", 500_000_000),
])
def test_parse_time_forms(text, ns):
    assert parse_time(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "1_000", "0x10", "1e99999", "1.2.3",
                                  str(2**64), "--1", None, "\u0661\u0662", "\u00b2", "\uff11\uff12"])
def test_parse_time_garbage(text):
    assert parse_time(text) is None


def test_golden_symlink_target_header():
    a = Attr(mode=stat.S_IFLNK | 0o777, uid=0, gid=0, size=0, mtime_ns=0, ctime_ns=0, atime_ns=0,
             xattrs={}, symlink_target="dir/a b")
    assert meta_from_attr(a, symlink_in_meta=True)["symlink-target"] == "header:7:dir/a%20b"
    assert "symlink-target" not in meta_from_attr(a)


# --- reading: fallbacks and defaults ---

def test_no_headers_uses_defaults():
    f = attr_of({})
    assert f.mode == stat.S_IFREG | 0o644 and (f.uid, f.gid) == (1000, 1001)
    assert f.size == 10 and f.mtime_ns == f.ctime_ns == f.atime_ns == int(LM * 10**9)
    assert f.xattrs == {} and f.symlink_target is None
    d = attr_of({}, is_dir=True)
    assert d.mode == stat.S_IFDIR | 0o755 and d.size == DIR_SIZE


def test_list_entry_without_meta():
    a = attr_of(None, size=77)
    assert a.mode == stat.S_IFREG | 0o644 and a.size == 77 and a.mtime_ns == int(LM * 10**9)


def test_configured_defaults_and_umask():
    d = Defaults(uid=1, gid=2, file_mode=0o640, dir_mode=0o750, umask=0o027)
    assert attr_of({}, defaults=d).mode == stat.S_IFREG | 0o640
    assert attr_of({"mode": str(stat.S_IFREG | 0o777)}, defaults=d).mode == stat.S_IFREG | 0o750
    assert attr_of({"mode": str(stat.S_IFLNK | 0o777)}, defaults=d).mode == stat.S_IFLNK | 0o777


def test_forced_ids_override_headers():
    d = Defaults(uid=7, gid=8, force_uid=True, force_gid=True)
    a = attr_of({"uid": "1", "gid": "2"}, defaults=d)
    assert (a.uid, a.gid) == (7, 8)
    assert (attr_of({"uid": "1", "gid": "2"}).uid, attr_of({"uid": "1", "gid": "2"}).gid) == (1, 2)


@pytest.mark.parametrize("m,expected", [
    ({"mode": "33261"}, stat.S_IFREG | 0o755),
    ({"mode": "493"}, stat.S_IFREG | 0o755),                     # no type bits: from context
    ({"permissions": "33184"}, stat.S_IFREG | 0o640),
    ({"goog-reserved-posix-mode": "600"}, stat.S_IFREG | 0o600),
    ({"goog-reserved-posix-mode": "100600"}, stat.S_IFREG | 0o600),
    ({"mode": "zz", "permissions": "420"}, stat.S_IFREG | 0o644),  # garbage falls through
    ({"mode": "33188", "permissions": "0"}, stat.S_IFREG | 0o644),  # mode wins
    ({"mode": str(stat.S_IFIFO | 0o600)}, stat.S_IFIFO | 0o600),
    ({"mode": str(stat.S_IFSOCK | 0o600)}, stat.S_IFSOCK | 0o600),
    ({"mode": str(stat.S_IFLNK | 0o644)}, stat.S_IFLNK | 0o777),
    ({"mode": str(stat.S_IFDIR | 0o700)}, stat.S_IFREG | 0o700),    # file object: kind wins
    ({"mode": str(0o170000 | 0o644)}, stat.S_IFREG | 0o644),       # invalid type bits
])
def test_mode_forms_for_files(m, expected):
    assert attr_of(m).mode == expected


@pytest.mark.parametrize("m,expected", [
    ({"mode": "16877"}, stat.S_IFDIR | 0o755),
    ({"mode": "448"}, stat.S_IFDIR | 0o700),
    ({"mode": "33188"}, stat.S_IFDIR | 0o644),  # directory object whose mode says regular
    ({"goog-reserved-posix-mode": "711"}, stat.S_IFDIR | 0o711),
])
def test_mode_forms_for_dirs(m, expected):
    assert attr_of(m, is_dir=True).mode == expected


@pytest.mark.parametrize("value", ["", "abc", "-1", "+5", "1e3", str(0o177777 + 1), "99999999999999",
                                   "0x1ff", "4 2", "\u0661\u0662", "\u00b2", "\uff11\uff12"])
def test_mode_garbage_gives_default(value):
    assert attr_of({"mode": value}).mode == stat.S_IFREG | 0o644
    assert attr_of({"goog-reserved-posix-mode": value + "9"}).mode == stat.S_IFREG | 0o644


@pytest.mark.parametrize("m,ids", [
    ({"uid": "5", "gid": "6"}, (5, 6)),
    ({"owner": "5", "group": "6"}, (5, 6)),
    ({"goog-reserved-posix-uid": "5", "goog-reserved-posix-gid": "6"}, (5, 6)),
    ({"uid": "x", "owner": "5", "gid": "-1", "goog-reserved-posix-gid": "6"}, (5, 6)),
    ({"uid": "4294967295", "gid": "99999999999"}, (1000, 1001)),
    ({"uid": "4294967294", "gid": "0"}, (4294967294, 0)),
])
def test_uid_gid_forms(m, ids):
    a = attr_of(m)
    assert (a.uid, a.gid) == ids


def test_time_fallbacks():
    a = attr_of({"goog-reserved-file-mtime": "1000"})
    assert a.mtime_ns == a.ctime_ns == a.atime_ns == 1000 * 10**9
    a = attr_of({"mtime": "junk", "goog-reserved-file-mtime": "1000", "atime": "3.000000004"})
    assert (a.mtime_ns, a.ctime_ns, a.atime_ns) == (1000 * 10**9, 1000 * 10**9, 3 * 10**9 + 4)
    a = attr_of({"mtime": "junk", "ctime": "junk"})
    assert a.mtime_ns == a.ctime_ns == int(LM * 10**9)


def test_symlink_target_from_headers():
    m = {"mode": str(stat.S_IFLNK | 0o777), "symlink-target": "header:5:a%2Fb%C3%A9"}
    assert meta.decode_symlink_target("header:5:a%2Fb%C3%A9") == "a/bé"
    a = attr_of(m, size=0)
    assert a.symlink_target == "a/bé" and a.size == 5
    # the target header is ignored on anything but a symlink
    assert attr_of({"symlink-target": "header:1:a"}).symlink_target is None


@pytest.mark.parametrize("value", ["a", "header:", "header:x:a", "header:3:ab", "header:-1:"])
def test_symlink_target_garbage(value):
    assert meta.decode_symlink_target(value) is None
    a = attr_of({"mode": str(stat.S_IFLNK | 0o777), "symlink-target": value}, size=9)
    assert a.symlink_target is None and a.size == 9


def test_xattr_golden_decode_and_empty():
    assert decode_xattrs("%7B%22user.foo%22%3A%22YmFy%22%7D") == {"user.foo": b"bar"}
    # an s3fs header that happens not to be url-encoded still reads
    assert decode_xattrs('{"user.a":"AAE="}') == {"user.a": b"\x00\x01"}
    assert encode_xattrs({}) is None
    assert "xattr" not in meta_from_attr(attr_of({}))


@pytest.mark.parametrize("value", ["%7B", "not json", "[1,2]", "%FF%FE", '"x"', '{"a":1}', "{"])
def test_xattr_garbage(value):
    assert decode_xattrs(value) == {}
    assert attr_of({"xattr": value}).xattrs == {}


def test_xattr_bad_entry_skipped():
    assert decode_xattrs('{"user.bad":"!!!%25","user.ok":"YQ==","user.n":1,"user.e":""}') == {
        "user.ok": b"a", "user.e": b""}


def test_dir_content_type():
    assert is_dir_content_type(DIR_CONTENT_TYPE)
    assert is_dir_content_type("httpd/unix-directory")
    assert is_dir_content_type("application/x-directory; charset=UTF-8")
    assert not is_dir_content_type("application/octet-stream")
    assert not is_dir_content_type("") and not is_dir_content_type(None)


# --- properties ---

FILE_TYPES = [stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK]
times = st.integers(min_value=-(2**63) * 10**9, max_value=(2**63 - 1) * 10**9 + 10**9 - 1)
ids = st.integers(min_value=0, max_value=2**32 - 2)
xattr_dicts = st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=64), max_size=5)


@st.composite
def attrs(draw):
    is_dir = draw(st.booleans())
    ftype = stat.S_IFDIR if is_dir else draw(st.sampled_from(FILE_TYPES))
    perms = 0o777 if ftype == stat.S_IFLNK else draw(st.integers(0, 0o7777))
    target = None
    if ftype == stat.S_IFLNK and draw(st.booleans()):
        target = draw(st.text(min_size=1, max_size=50))
    size = DIR_SIZE if is_dir else (len(target.encode("utf-8", "surrogateescape")) if target
                                    else draw(st.integers(0, 2**40)))
    a = Attr(mode=ftype | perms, uid=draw(ids), gid=draw(ids), size=size, mtime_ns=draw(times),
             ctime_ns=draw(times), atime_ns=draw(times), xattrs=draw(xattr_dicts), symlink_target=target)
    return a, is_dir


@settings(max_examples=300, deadline=None)
@given(attrs())
def test_round_trip(case):
    a, is_dir = case
    m = meta_from_attr(a, symlink_in_meta=True)
    assert all(isinstance(v, str) and v.isascii() for v in m.values())
    back = attr_from_info(info(m, size=a.size), Defaults(uid=1, gid=2, umask=0), is_dir)
    assert back == a


@settings(max_examples=200, deadline=None)
@given(times)
def test_time_round_trip(ns):
    assert parse_time(format_time(ns)) == ns


@settings(max_examples=200, deadline=None)
@given(xattr_dicts)
def test_xattr_round_trip(x):
    encoded = encode_xattrs(x)
    assert (encoded is None) == (not x)
    assert decode_xattrs(encoded) == x


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["mode", "permissions", "goog-reserved-posix-mode", "uid", "gid",
                                        "owner", "group", "goog-reserved-posix-uid", "mtime", "ctime",
                                        "atime", "goog-reserved-file-mtime", "xattr", "symlink-target"]),
                       st.text(max_size=30)),
       st.booleans(), st.floats(allow_nan=True, allow_infinity=True))
def test_garbage_never_raises(m, is_dir, lm):
    a = attr_from_info(info(m, lm=lm), D, is_dir)
    assert stat.S_ISDIR(a.mode) == is_dir
    assert 0 <= a.uid <= 2**32 - 2 and 0 <= a.gid <= 2**32 - 2
