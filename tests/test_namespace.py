"""Path resolution, listings and the stat/negative caches."""
import errno
import os
import stat

import pytest

from ossfs.errors import FsError
from ossfs.meta import Defaults
from ossfs.namespace import FILE, FOLDER, IMPLICIT, LEGACY, MARKER, Namespace
from ossfs.store_mem import MemoryStore


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


def make_ns(store, clock, **kw):
    return Namespace(store, Defaults(uid=7, gid=8), clock=clock, **kw)


def test_forms(store, clock):
    store.put("f", b"abc", meta={"mode": "33261"})
    store.put("m/", b"", content_type="application/x-directory")
    store.put("i/x", b"")
    store.put("l", b"")
    store.put("l/x", b"")
    store.put("old", b"", meta={"mode": str(stat.S_IFDIR | 0o700)})  # old s3fs directory object
    store.put("h_$folder$", b"")
    ns = make_ns(store, clock)
    forms = {p: ns.lookup(p).form for p in ("/f", "/m", "/i", "/l", "/old", "/h")}
    assert forms == {"/f": FILE, "/m": MARKER, "/i": IMPLICIT, "/l": LEGACY, "/old": LEGACY, "/h": FOLDER}
    assert ns.lookup("/f").attr.mode == stat.S_IFREG | 0o755
    assert ns.lookup("/i").attr.mode == stat.S_IFDIR | 0o755 and ns.lookup("/i").attr.uid == 7
    with pytest.raises(FsError) as info:
        ns.lookup("/none")
    assert info.value.errno == errno.ENOENT
    ns.close()


def test_stat_cache_lifetime_and_size(store, clock):
    store.put("a", b"1")
    store.put("b", b"1")
    ns = make_ns(store, clock, stat_cache_expire=10, max_stat_cache_size=1)
    ns.lookup("/a")
    heads = store.counts["HeadObject"]
    ns.lookup("/a")
    assert store.counts["HeadObject"] == heads
    ns.lookup("/b")  # evicts /a (size 1)
    ns.lookup("/a")
    assert store.counts["HeadObject"] == heads + 2
    clock.t += 11
    ns.lookup("/a")
    assert store.counts["HeadObject"] == heads + 3
    ns.lookup("/a", fresh=True)
    assert store.counts["HeadObject"] == heads + 4


def test_stat_cache_forever_and_never(store, clock):
    store.put("a", b"1")
    forever = make_ns(store, clock, stat_cache_expire=-1)
    never = make_ns(store, clock, stat_cache_expire=0)
    forever.lookup("/a")
    never.lookup("/a")
    clock.t += 10 ** 6
    heads = store.counts["HeadObject"]
    forever.lookup("/a")
    never.lookup("/a")
    assert store.counts["HeadObject"] == heads + 1


def test_negative_cache(store, clock):
    ns = make_ns(store, clock, stat_cache_expire=10)
    off = make_ns(store, clock, stat_cache_expire=10, neg_cache=False)
    for n in (ns, off):
        with pytest.raises(FsError):
            n.lookup("/x")
    store.put("x", b"1")
    with pytest.raises(FsError):
        ns.lookup("/x")
    assert off.lookup("/x").form == FILE
    clock.t += 11
    assert ns.lookup("/x").form == FILE


def test_listdir_heads_in_parallel_and_revalidates_by_etag(store, clock):
    for i in range(25):
        store.put("d/f%02d" % i, b"x", meta={"uid": str(i)})
    store.put("d/sub/", b"", content_type="application/x-directory", meta={"mode": str(stat.S_IFDIR | 0o700)})
    store.put("d/imp/y", b"")
    ns = make_ns(store, clock, multireq_max=4, list_max_keys=10, stat_cache_expire=5)
    listing = dict(ns.listdir("/d"))
    assert len(listing) == 27
    assert listing["f03"].attr.uid == 3
    assert listing["sub"].form == MARKER and listing["sub"].attr.mode == stat.S_IFDIR | 0o700
    assert listing["imp"].form == IMPLICIT
    clock.t += 100  # expired, but LIST shows the same ETag and size: no HEAD needed for files
    store.put("d/f05", b"changed", meta={"uid": "99"})
    heads = store.counts["HeadObject"]
    listing = dict(ns.listdir("/d"))
    assert listing["f05"].attr.uid == 99 and listing["f05"].attr.size == 7
    assert store.counts["HeadObject"] == heads + 1 + 2  # f05, plus the two directories
    ns.close()


def test_listing_pages_split_a_name_from_its_directory(store, clock):
    """A file "x" and the prefix "x/" land on different LIST pages (keys "x!" .. sort
    between them): the pages are handled as they arrive, and the rules for a name that
    is both still hold: an empty object with children is the directory, a non-empty
    file hides it."""
    store.put("d/a", b"")
    store.put("d/a!1", b"1")
    store.put("d/a!2", b"2")
    store.put("d/a/c", b"")
    store.put("d/b", b"data", meta={"uid": "5"})
    store.put("d/b!1", b"1")
    store.put("d/b!2", b"2")
    store.put("d/b/c", b"")
    store.put("d/z", b"", meta={"uid": "6"})
    ns = make_ns(store, clock, multireq_max=4, list_max_keys=2, stat_cache_expire=5)
    pages = store.counts["ListObjects"]
    listing = dict(ns.listdir("/d"))
    assert store.counts["ListObjects"] - pages >= 4  # the split the test is about happened
    assert sorted(listing) == ["a", "a!1", "a!2", "b", "b!1", "b!2", "z"]
    assert stat.S_ISDIR(listing["a"].attr.mode) and listing["a"].form == LEGACY
    assert stat.S_ISREG(listing["b"].attr.mode) and listing["b"].attr.uid == 5 and listing["b"].attr.size == 4
    assert listing["z"].attr.uid == 6
    assert ns.lookup("/d/a").form == LEGACY and stat.S_ISREG(ns.lookup("/d/b").attr.mode)
    ns.close()


def test_heads_of_a_page_start_while_the_next_page_is_listed(store, clock):
    """The entries of the first page are HEADed while the second page is still being
    fetched, so a cold listing overlaps the LIST round trips with its HEADs."""
    import threading
    for i in range(4):
        store.put("d/f%d" % i, b"x", meta={"uid": str(i)})
    head_started = threading.Event()
    seen = []
    real_list, real_head = store.list, store.head

    def head(key, *a, **kw):
        head_started.set()
        return real_head(key, *a, **kw)

    def list_(prefix, delimiter="/", token=None, max_keys=1000):
        if token is not None:
            seen.append(head_started.wait(10))  # bounded: a serial listing fails, not hangs
        return real_list(prefix, delimiter, token, max_keys)

    store.head, store.list = head, list_
    ns = make_ns(store, clock, multireq_max=4, list_max_keys=2, stat_cache_expire=5)
    listing = dict(ns.listdir("/d"))
    assert [listing["f%d" % i].attr.uid for i in range(4)] == [0, 1, 2, 3]
    assert seen and seen[0] is True
    ns.close()


def test_listing_notices_header_changes_by_other_clients(store, clock):
    store.put("d/f", b"x", meta={"mode": "33188"})
    ns = make_ns(store, clock, stat_cache_expire=5)
    assert dict(ns.listdir("/d"))["f"].attr.mode == 0o100644
    clock.t += 1
    store.copy("d/f", "d/f", meta={"mode": "33152"})  # another client's chmod: same ETag and size
    assert dict(ns.listdir("/d"))["f"].attr.mode == 0o100600


# --- the persistent metadata cache (metacache.py) ---

def disk_ns(store, clock, path, **kw):
    from ossfs.metacache import MetaCache
    return make_ns(store, clock, metacache=MetaCache(str(path), clock=clock), **kw)


def requests(store) -> dict:
    return {k: v for k, v in store.counts.items() if v}


def test_attributes_survive_a_remount_and_are_used_only_for_the_same_version(store, clock, tmp_path):
    for i in range(30):
        store.put("d/f%02d" % i, b"x", meta={"uid": str(i)})
    clock.t += 3  # HEADs taken seconds after the last change prove the versions (SETTLED)
    ns = disk_ns(store, clock, tmp_path, list_max_keys=10, stat_cache_expire=5)
    assert len(ns.listdir("/d")) == 30
    ns.close()
    assert oct(os.stat(tmp_path / "meta.sqlite").st_mode & 0o777) == "0o600"

    clock.t += 1000  # long expired: only the LIST match makes a record usable
    store.put("d/f05", b"changed", meta={"uid": "99"})
    store.copy("d/f06", "d/f06", meta={"uid": "98"})  # same ETag and size, new Last-Modified
    store.delete("d/f07")
    store.counts.clear()
    ns = disk_ns(store, clock, tmp_path, list_max_keys=10, stat_cache_expire=5)
    listing = dict(ns.listdir("/d"))
    assert requests(store) == {"ListObjects": 3, "HeadObject": 2}
    assert listing["f05"].attr.uid == 99 and listing["f06"].attr.uid == 98 and listing["f08"].attr.uid == 8
    assert "f07" not in listing and ns.disk.get("d/f07") is None
    # stat of a listed entry right after the listing: no request.
    store.counts.clear()
    assert ns.lookup("/d/f09").attr.uid == 9
    assert requests(store) == {}
    ns.close()


def test_second_listing_forgets_what_other_clients_deleted_without_scanning_the_disk(store, clock, tmp_path):
    for i in range(12):
        store.put("d/f%02d" % i, b"x", meta={"uid": str(i)})
    clock.t += 3
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=5)
    assert len(ns.listdir("/d")) == 12
    scans = []
    children = ns.disk.children
    ns.disk.children = lambda prefix: scans.append(prefix) or children(prefix)
    store.delete("d/f03")  # another client
    clock.t += 1
    listing = dict(ns.listdir("/d"))
    assert "f03" not in listing and len(listing) == 11
    assert ns.disk.get("d/f03") is None and ns.disk.get("d/f04") is not None
    with pytest.raises(FsError):
        ns.lookup("/d/f03")
    # This mount's own create and unlink between two listings.
    ns.remember(ns.entry_from_info("/d/new", store.put("d/new", b"2", meta={"uid": "3"}), FILE))
    store.delete("d/new")  # gone again by another client, before the next listing
    clock.t += 1
    assert "new" not in dict(ns.listdir("/d")) and ns.disk.get("d/new") is None
    assert scans == []  # the directory's rows were checked against the first listing only
    # After a remount the first listing checks every persisted child again.
    ns.close()
    store.delete("d/f05")
    clock.t += 1
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=5)
    assert "f05" not in dict(ns.listdir("/d")) and ns.disk.get("d/f05") is None
    ns.close()


def test_stat_without_listing_uses_the_disk_only_within_stat_cache_expire(store, clock, tmp_path):
    store.put("a", b"1", meta={"uid": "5"})
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=10)
    ns.lookup("/a")
    ns.close()
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=10)
    store.counts.clear()
    assert ns.lookup("/a").attr.uid == 5 and requests(store) == {}
    ns.close()
    clock.t += 11
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=10)
    ns.lookup("/a")
    assert requests(store) == {"HeadObject": 1}
    ns.close()


def test_own_writes_cost_no_head_in_the_next_listing(store, clock, tmp_path):
    from dataclasses import replace as dc_replace
    ns = disk_ns(store, clock, tmp_path)
    info = store.put("d/new", b"abc", meta={"uid": "4"})
    # A PUT answer's time stamp may be a second later than the object's Last-Modified.
    ns.remember(ns.entry_from_info("/d/new", dc_replace(info, last_modified=info.last_modified + 1), FILE))
    store.counts.clear()
    listing = dict(ns.listdir("/d"))
    assert listing["new"].attr.uid == 4 and requests(store) == {"ListObjects": 1}
    assert ns.disk.get("d/new").own is False  # took the listed Last-Modified
    ns.close()


def test_a_listing_answers_lookups_of_names_it_did_not_show(store, clock, tmp_path):
    store.put("d/a", b"1")
    ns = disk_ns(store, clock, tmp_path, stat_cache_expire=10)
    (tmp_path / "off").mkdir()
    off = disk_ns(store, clock, tmp_path / "off", stat_cache_expire=10, neg_cache=False)
    for n in (ns, off):
        n.listdir("/d")
    store.counts.clear()
    with pytest.raises(FsError):
        ns.lookup("/d/b")
    assert requests(store) == {}
    with pytest.raises(FsError):
        off.lookup("/d/b")
    assert requests(store) != {}
    # This mount's own create makes the name known again.
    ns.remember(ns.entry_from_info("/d/b", store.put("d/b", b"2", meta={}), FILE))
    assert ns.lookup("/d/b").form == FILE
    # A directory made by this mount is known to be empty.
    with pytest.raises(FsError):
        ns.lookup("/d/sub")
    ns.remember(ns.entry_from_info("/d/sub", store.put("d/sub/", b"", meta={},
                                                         content_type="application/x-directory"), MARKER))
    store.counts.clear()
    with pytest.raises(FsError):
        ns.lookup("/d/sub/x")
    assert requests(store) == {}
    clock.t += 11  # the listing's evidence expires like the negative cache
    with pytest.raises(FsError):
        ns.lookup("/d/sub/x")
    assert requests(store) != {}
    ns.close()
    off.close()


def test_unreadable_cache_is_replaced_and_size_is_bounded(store, clock, tmp_path):
    from ossfs.metacache import MetaCache, Record
    (tmp_path / "meta.sqlite").write_bytes(b"not a database" * 100)
    mc = MetaCache(str(tmp_path), max_records=100, clock=clock)
    mc.put_many(Record("k%04d" % i, FILE, "k%04d" % i, checked=float(i)) for i in range(1200))
    assert len(mc) <= 100 and mc.get("k1199") is not None and mc.get("k0000") is None
    mc.close()


def test_a_cache_of_the_previous_version_keeps_its_rows(clock, tmp_path):
    """A metadata cache written before the standard headers were kept (schema 1) gains
    the column: its rows stay usable, with the headers unknown (None, so a header
    rewrite asks the server for them), and new rows keep theirs."""
    import sqlite3
    from ossfs.metacache import MetaCache, Record
    db = sqlite3.connect(str(tmp_path / "meta.sqlite"))
    db.execute("CREATE TABLE records (path_key TEXT PRIMARY KEY, form TEXT NOT NULL, obj_key TEXT, size INTEGER, "
               "etag TEXT, last_modified REAL, content_type TEXT, meta TEXT, object_type TEXT, checked REAL, "
               "own INTEGER) WITHOUT ROWID")
    db.execute("INSERT INTO records VALUES ('old', 'file', 'old', 3, 'E', 1.0, 'text/plain', '{\"mode\":\"33188\"}', "
               "'Normal', 2.0, 0)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    mc = MetaCache(str(tmp_path), clock=clock)
    old = mc.get("old")
    assert old is not None and old.meta == {"mode": "33188"} and old.size == 3 and old.headers is None
    mc.put_many([Record("new", FILE, "new", 1, "F", 1.0, "", {}, headers={"cache-control": "no-cache"}),
                 Record("plain", FILE, "plain", 1, "G", 1.0, "", {}, headers={})])
    mc.close()
    mc = MetaCache(str(tmp_path), clock=clock)
    assert mc.get("new").headers == {"cache-control": "no-cache"} and mc.get("plain").headers == {}
    assert mc.get("old").headers is None
    mc.close()
