"""Path resolution, listings and the stat/negative caches."""
import errno
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


def test_listing_notices_header_changes_by_other_clients(store, clock):
    store.put("d/f", b"x", meta={"mode": "33188"})
    ns = make_ns(store, clock, stat_cache_expire=5)
    assert dict(ns.listdir("/d"))["f"].attr.mode == 0o100644
    clock.t += 1
    store.copy("d/f", "d/f", meta={"mode": "33152"})  # another client's chmod: same ETag and size
    assert dict(ns.listdir("/d"))["f"].attr.mode == 0o100600
