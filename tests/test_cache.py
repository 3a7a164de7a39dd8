"""Staged files: range sets, the durable index, eviction, ENOSPC, uploads."""
import collections
import errno
import os
import stat
import time

import pytest

from ossfs.cache import Cache, RangeSet, mount_cache_dir
from ossfs.errors import FsError, TransientError
from ossfs.store_mem import MemoryStore
from ossfs.transfer import Downloader, Uploader

KB = 1024
MiB = 1 << 20
Usage = collections.namedtuple("Usage", "total used free")


def plenty(_path):
    return Usage(1 << 40, 0, 1 << 40)


@pytest.fixture
def store():
    return MemoryStore()


def make_cache(directory, store, **kw):
    kw.setdefault("background_fill", False)
    kw.setdefault("disk_usage", plenty)
    kw.setdefault("uploader", Uploader(store, multipart_threshold=200 * KB, part_size=100 * KB, parallel=2))
    kw.setdefault("downloader", Downloader(store, parallel=2, chunk_size=64 * KB))
    return Cache(str(directory), store, **kw)


def test_rangeset():
    r = RangeSet()
    r.add(10, 20)
    r.add(30, 40)
    assert r.missing(0, 50) == [(0, 10), (20, 30), (40, 50)]
    r.add(15, 35)
    assert r.as_list() == [[10, 40]]
    r.add(40, 45)
    r.add(0, 5)
    assert r.as_list() == [[0, 5], [10, 45]]
    assert r.missing(3, 12) == [(5, 10)]
    assert r.total() == 40
    r.clip(12)
    assert r.as_list() == [[0, 5], [10, 12]]
    assert r.missing(0, 12) == [(5, 10)]
    assert RangeSet([(5, 6), (1, 2)]).as_list() == [[1, 2], [5, 6]]
    r = RangeSet([(0, 10), (20, 30)])
    assert r.overlap(5, 25) == 10 and r.overlap(10, 20) == 0 and r.overlap(7, 3) == 0
    r.remove(5, 25)
    assert r.as_list() == [[0, 5], [25, 30]]
    r.remove(0, 100)
    assert r.as_list() == [] and r.total() == 0


def test_files_are_private_and_not_named_after_keys(tmp_path, store):
    store.put("secret/name.txt", b"abc")
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("secret/name.txt", store.head("secret/name.txt"))
    assert sf.read(0, 10) == b"abc"
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sf.path).st_mode) == 0o600
    assert "name" not in os.path.basename(sf.path) and len(os.path.basename(sf.path)) == 32
    cache.release(sf)
    cache.close()
    a = mount_cache_dir("/r", "bkt", "")
    b = mount_cache_dir("/r", "bkt", "sub/")
    assert a != b and os.path.basename(a).startswith("bkt-")


def test_index_survives_a_crash(tmp_path, store):
    store.put("old", b"0123456789")
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("old", store.head("old"))
    sf.write(2, b"XX")
    sf.set_meta({"mode": "33188"}, "text/plain")
    new = cache.open("new", None)
    new.write(0, b"fresh")
    new.set_meta({"mode": "33261"})
    new.write(5, b" and more")  # within a second of the last save: not in the record yet
    store.put("clean", b"clean bytes")
    clean = cache.open("clean", store.head("clean"))
    assert clean.read(0, 100) == b"clean bytes"
    cache.release(clean)
    # kill -9: nothing closed, nothing uploaded.  A new mount opens the same directory.
    again = make_cache(tmp_path / "c", store)
    dirty = {r.key: r for r in again.dirty_entries()}
    assert set(dirty) == {"old", "new"}
    # Clean staged files of a cache not closed cleanly are not trusted.
    assert {r.key for r in again._records.values()} == {"old", "new"}
    assert dirty["old"].etag == store.head("old").etag and dirty["old"].meta == {"mode": "33188"}
    assert dirty["new"].etag is None and dirty["new"].meta == {"mode": "33261"}
    assert again.upload_all() == []
    assert store.peek("old") == b"01XX456789"
    assert store.head("old").content_type == "text/plain"
    assert store.peek("new") == b"fresh and more" and store.head("new").meta == {"mode": "33261"}
    assert again.dirty_entries() == []
    again.check_invariants()
    again.close()


def test_clean_staged_file_reused_after_restart(tmp_path, store):
    data = os.urandom(300 * KB)
    store.put("f", data)
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    cache.release(sf)
    cache.close()
    gets = store.counts["GetObject"]
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    assert store.counts["GetObject"] == gets
    cache.release(sf)
    # A changed object is staged again.
    store.put("f", b"new")
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, 100) == b"new"
    cache.release(sf)
    cache.close()


def test_reading_a_small_file_writes_its_index_row_once(tmp_path, store):
    """Open (with the first bytes the open fetched), read, release of a clean file: one
    index write, and the row is there for the next mount; a crash while it is open
    loses only the staged copy (the next load deletes a file without a row)."""
    data = os.urandom(5 * KB)
    store.put("f", data)
    cache = make_cache(tmp_path / "c", store)
    writes = []
    real_set = cache._index.set
    cache._index.set = lambda k, v, *a, **kw: (writes.append(k), real_set(k, v, *a, **kw))[1]
    sf = cache.open("f", store.head("f"), head_bytes=data)
    assert sf.read(0, len(data)) == data
    cache.release(sf)
    assert len(writes) == 1
    cache.close()
    gets = store.counts["GetObject"]
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    assert store.counts["GetObject"] == gets      # the row told the bytes are staged
    cache.release(sf)
    cache.close()
    # open without a single fetch, then "crash": no row, and the orphan goes at load
    store.put("g", data)
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("g", store.head("g"))
    orphan = sf.path
    assert os.path.exists(orphan)
    cache = make_cache(tmp_path / "c", store)
    assert not os.path.exists(orphan)
    sf = cache.open("g", store.head("g"))
    assert sf.read(0, len(data)) == data
    cache.release(sf)
    cache.close()


def test_sequential_reader_grows_its_window(tmp_path, store):
    data = os.urandom(4 << 20)
    store.put("f", data)
    cache = make_cache(tmp_path / "c", store, downloader=Downloader(store, parallel=1, chunk_size=64 << 20))
    sf = cache.open("f", store.head("f"))
    out = b"".join(sf.read(off, 64 * KB) for off in range(0, len(data), 64 * KB))
    assert out == data
    # 64 reads of 64 KiB; with a read-ahead window doubling up to 8 MiB, one GET per
    # window: 128K, 256K, ... covers 4 MiB in a handful of rounds.
    assert store.counts["GetObject"] <= 6
    cache.release(sf)
    cache.close()


def test_background_fill_completes_the_file(tmp_path, store):
    data = os.urandom(1 << 20)
    store.put("f", data)
    cache = make_cache(tmp_path / "c", store, background_fill=True)
    sf = cache.open("f", store.head("f"))
    deadline = time.monotonic() + 10
    while not sf.complete() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sf.complete()
    gets = store.counts["GetObject"]
    assert sf.read(0, len(data)) == data
    assert store.counts["GetObject"] == gets
    cache.release(sf)
    cache.close()


def _stage(cache, store, key, size, clock):
    store.put(key, os.urandom(size))
    sf = cache.open(key, store.head(key))
    sf.read(0, size)
    clock[0] += 1
    return sf


def test_eviction_is_lru_and_spares_dirty_and_open(tmp_path, store):
    clock = [1000.0]
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1, clock=lambda: clock[0])
    a = _stage(cache, store, "a", 300 * KB, clock)
    cache.release(a)
    b = _stage(cache, store, "b", 300 * KB, clock)
    cache.release(b)
    o = _stage(cache, store, "open", 100 * KB, clock)       # stays open
    d = cache.open("dirty", None)
    d.write(0, b"x" * (100 * KB))
    store.fail_next("PutObject", TransientError("down"))
    with pytest.raises(TransientError):
        d.upload()
    cache.release(d)                                          # closed, dirty
    c = _stage(cache, store, "c", 300 * KB, clock)           # needs room: "a" (oldest) goes
    keys = {r.key for r in cache._records.values()}
    assert "a" not in keys and {"b", "open", "dirty", "c"} <= keys
    cache.release(c)
    e = _stage(cache, store, "e", 400 * KB, clock)           # "b" then "c" go; never open/dirty
    keys = {r.key for r in cache._records.values()}
    assert {"open", "dirty", "e"} <= keys and "b" not in keys
    assert o.read(0, 10) and cache.dirty_record("dirty") is not None
    cache.check_invariants()
    for sf in (o, e):
        cache.release(sf)
    cache.check_invariants()
    cache.close()


def test_enospc_when_nothing_can_be_evicted(tmp_path, store):
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1)
    sf = cache.open("f", None)
    sf.write(0, b"a" * (900 * KB))
    with pytest.raises(FsError) as info:
        sf.write(900 * KB, b"b" * (200 * KB))
    assert info.value.errno == errno.ENOSPC
    assert sf.size == 900 * KB
    assert sf.read(0, 1 << 20) == b"a" * (900 * KB)  # nothing already written is harmed
    sf.write(0, b"c" * 10)  # overwriting staged bytes needs no room
    sf.upload()
    assert store.peek("f") == b"c" * 10 + b"a" * (900 * KB - 10)
    cache.release(sf)
    cache.close()


def test_disk_free_limits_and_direct_reads(tmp_path, store):
    store.put("f", b"z" * (200 * KB))
    tight = lambda _p: Usage(100 << 20, 95 << 20, 5 << 20)  # 5% free, 10% must stay free
    cache = make_cache(tmp_path / "c", store, disk_usage=tight)
    sf = cache.open("f", store.head("f"))
    assert sf.read(1000, 10) == b"z" * 10  # served from the store, not staged
    assert sf.ranges.total() == 0
    with pytest.raises(FsError) as info:
        sf.write(0, b"y")
    assert info.value.errno == errno.ENOSPC
    cache.release(sf)
    cache.close()
    cache = make_cache(tmp_path / "c", store, disk_usage=lambda _p: Usage(100 << 20, 0, 50 << 20),
                       free_space_ratio=0, ensure_diskfree_mb=60)
    sf = cache.open("g", None)
    with pytest.raises(FsError):
        sf.write(0, b"y")
    cache.release(sf)
    cache.close()


def test_failed_multipart_upload_resumes_from_checkpoint(tmp_path, store):
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("big", None)
    data = os.urandom(450 * KB)
    sf.write(0, data)
    store.fail_next("CompleteMultipartUpload", TransientError("down"))
    with pytest.raises(TransientError):
        sf.upload()
    rec = cache.dirty_record("big") or sf.rec
    assert rec.checkpoint is not None and len(rec.checkpoint["parts"]) == 5
    parts = store.counts["UploadPart"]
    cache.release(sf)
    cache.close()
    again = make_cache(tmp_path / "c", store)  # even across a restart
    assert again.upload_all() == []
    assert store.counts["UploadPart"] == parts  # no part sent twice
    assert store.peek("big") == data
    again.close()


def test_append_to_large_object_copies_unchanged_parts(tmp_path, store):
    data = os.urandom(500 * KB)
    cache = make_cache(tmp_path / "c", store)
    store.put("log", data)
    sf = cache.open("log", store.head("log"))
    sf.write(len(data), b"tail")
    sf.upload()
    assert store.peek("log") == data + b"tail"
    # 6 parts of 100 KiB: the 5 untouched ones are copied server-side, nothing is downloaded.
    assert store.counts["UploadPartCopy"] == 5 and store.counts["UploadPart"] == 1
    assert store.counts["GetObject"] == 0
    cache.release(sf)
    cache.close()


def test_del_cache_keeps_dirty_files(tmp_path, store):
    store.put("clean", b"c")
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("clean", store.head("clean"))
    sf.read(0, 1)
    cache.release(sf)
    d = cache.open("dirty", None)
    d.write(0, b"d")
    cache.release(d)
    cache.close()
    cache = make_cache(tmp_path / "c", store, del_cache=True)
    assert [r.key for r in cache._records.values()] == ["dirty"]
    assert len(os.listdir(tmp_path / "c" / "files")) == 1
    cache.close()


def test_cache_location_from_options(tmp_path, store, monkeypatch):
    from ossfs.config import Config
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    chosen = Cache.from_config(Config(bucket="bkt"), store)
    assert chosen.dir.startswith(str(tmp_path / "xdg" / "ossfs" / "bkt-"))
    chosen.close()
    chosen = Cache.from_config(Config(bucket="bkt", use_cache=str(tmp_path / "uc"),
                                      tmpdir=str(tmp_path / "t"), explicit=frozenset({"tmpdir"})), store)
    assert chosen.dir.startswith(str(tmp_path / "uc" / "bkt-"))
    chosen.close()
    chosen = Cache.from_config(Config(bucket="bkt", tmpdir=str(tmp_path / "t"), explicit=frozenset({"tmpdir"})),
                               store)
    assert chosen.dir.startswith(str(tmp_path / "t" / "ossfs-"))
    assert stat.S_IMODE(os.stat(chosen.dir).st_mode) == 0o700
    chosen.close()


def test_rangeset_many_fragments():
    r = RangeSet()
    for i in range(0, 20000, 2):
        r.add(i * 10, i * 10 + 10)
    assert r.missing(100_000, 100_030) == [(100_010, 100_020)]
    assert r.missing(5, 15) == [(10, 15)]
    r.add(0, 200_000)
    assert r.as_list() == [[0, 200_000]]


def test_concurrent_appends_never_overlap(tmp_path, store):
    import threading
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("log", None)
    lines = [("%02d" % t).encode() * 50 + b"\n" for t in range(8)]

    def append(line):
        for _ in range(100):
            sf.write(0, line, append=True)

    threads = [threading.Thread(target=append, args=(line,)) for line in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    content = sf.read(0, 1 << 20)
    assert len(content) == 8 * 100 * 101
    assert sorted(content.splitlines(keepends=True)) == sorted(lines * 100)
    cache.release(sf)
    cache.close()


def test_holes_of_a_sparse_file_take_no_room(tmp_path, store):
    """A file made sparse by truncate or by a write past its end counts only the bytes
    written against ``cache_size_mb``: other files can still be written, and writing
    into the hole later takes room like any write."""
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1)
    big = cache.open("sparse", None)
    big.truncate(50 << 20)                   # 50 MiB of hole, far over the 1 MiB cap
    big.write(60 << 20, b"end")              # and a second hole before these bytes
    assert big.size == (60 << 20) + 3
    other = cache.open("other", None)
    other.write(0, b"o" * (600 * KB))        # fits: the holes take no room
    with pytest.raises(FsError) as info:     # filling the hole takes room: over the cap
        big.write(1 << 20, b"h" * (500 * KB))
    assert info.value.errno == errno.ENOSPC
    big.write(10, b"h" * (300 * KB))         # what fits is written
    assert big.read(0, 12) == b"\0" * 10 + b"hh"
    assert big.read((60 << 20) - 2, 10) == b"\0\0end"
    assert cache._used() == 600 * KB + 300 * KB + 3
    cache.check_invariants()
    for sf in (big, other):
        sf.upload()
        cache.release(sf)
    assert store.peek("sparse")[:12] == b"\0" * 10 + b"hh" and len(store.peek("sparse")) == (60 << 20) + 3
    cache.close()


def test_holes_are_remembered_across_a_restart(tmp_path, store):
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1)
    sf = cache.open("sparse", None)
    sf.write(0, b"head")
    sf.truncate(40 << 20)
    store.fail_next("InitiateMultipartUpload", TransientError("down"))
    with pytest.raises(TransientError):
        sf.upload()
    cache.release(sf)                        # closed, dirty, mostly hole
    cache.close()
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1)
    assert 4 <= cache._used() < 64 * KB      # the block holding "head", not the hole
    other = cache.open("other", None)
    other.write(0, b"o" * (900 * KB))        # fits beside the dirty sparse file
    cache.release(other)
    cache.close()


def test_writes_into_a_hole_are_counted_after_a_crash(tmp_path, store):
    """A new file (no ETag: its writes are not journaled) truncated to 64 MiB (saved:
    all hole), then 32 MiB written into the hole before the record is saved again;
    kill -9.  The next mount asks the file system where the holes still are, so those
    32 MiB count as staged."""
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1024)
    sf = cache.open("sparse", None)
    sf.truncate(64 * MiB)
    for off in range(0, 32 * MiB, MiB):
        sf.write(off, b"x" * MiB)
    cache._index.close()                   # crash: no release, no persist
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1024)
    blocks = os.stat(os.path.join(cache.files_dir, next(iter(cache._records)))).st_blocks * 512
    assert blocks >= 32 * MiB and cache._used() >= 32 * MiB
    assert cache._used() < 64 * MiB          # the rest is still a hole
    cache.close()


def test_a_truncate_is_never_seen_half_done_by_the_space_check(tmp_path, store):
    """The space check reads a live file's staged bytes without that file's lock (lock
    order): a check that runs while a truncate extends the file (here: between its
    two range updates) must not see the extension as staged, evict every clean file
    and fail its own reservation."""
    cache = make_cache(tmp_path / "c", store, cache_size_mb=16)
    store.put("clean", b"c" * (4 * MiB))
    c = cache.open("clean", store.head("clean"))
    c.fetch(0, 4 * MiB)
    cache.release(c)
    big = cache.open("big", None)
    seen = []
    real_add = big.zeros.add

    def add(s, e):                         # another thread runs here (GIL switch)
        seen.append(cache._used())
        try:
            cache.ensure_space(8 * MiB)
            cache.release_space(8 * MiB)
        except Exception as exc:           # noqa: BLE001
            seen.append(exc)
        real_add(s, e)
    big.zeros.add = add
    cache._budget = 0                      # the last measurement's budget is spent
    big.truncate(1 << 40)
    assert seen and seen[0] < 16 * MiB
    assert cache.is_staged("clean") and not any(isinstance(x, Exception) for x in seen)
    cache.release(big)
    cache.close()


def test_random_writes_truncates_match_a_model(tmp_path):
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as hs

    ops = hs.lists(hs.one_of(
        hs.tuples(hs.just("w"), hs.integers(0, 300 * KB), hs.binary(min_size=1, max_size=3000)),
        hs.tuples(hs.just("t"), hs.integers(0, 400 * KB), hs.none()),
        hs.tuples(hs.just("up"), hs.none(), hs.none())), max_size=12)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(initial=hs.integers(0, 350 * KB), ops=ops)
    # An upload that copied clean parts server-side once marked them present locally.
    @example(initial=200 * KB, ops=[("w", 0, b"\0"), ("up", None, None)])
    def check(initial, ops):
        store = MemoryStore()
        model = bytearray(os.urandom(initial))
        store.put("f", bytes(model))
        cache = make_cache(tmp_path / os.urandom(4).hex(), store)
        sf = cache.open("f", store.head("f"))
        for op, a, b in ops:
            if op == "w":
                sf.write(a, b)
                if a > len(model):
                    model.extend(b"\0" * (a - len(model)))
                model[a:a + len(b)] = b
            elif op == "t":
                sf.truncate(a)
                del model[a:]
                model.extend(b"\0" * (a - len(model)))
            else:
                sf.upload()
                assert store.peek("f") == bytes(model)
            assert sf.size == len(model)
            cache.check_invariants()
            for s, e in sf.zeros.as_list():  # holes read as zeros
                assert model[s:e] == bytes(e - s)
        assert sf.read(0, len(model) + 10) == bytes(model)
        sf.upload()
        assert store.peek("f") == bytes(model)
        cache.release(sf)
        cache.check_invariants()
        cache.close()

    check()


def _staged_on_disk(cache) -> int:
    return sum(os.lstat(os.path.join(cache.files_dir, n)).st_blocks * 512 for n in os.listdir(cache.files_dir))


class GatedStore(MemoryStore):
    """Downloads of the keys in ``gated`` wait for ``release`` (bytes stay in flight)."""

    def __init__(self):
        super().__init__()
        import threading
        self.gated = set()
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_to_file(self, key, fileobj, start=0, length=None, if_match=None):
        if key in self.gated:
            self.entered.set()
            assert self.release.wait(10)
        return super().get_to_file(key, fileobj, start, length, if_match=if_match)


def test_bytes_in_flight_count_against_the_cache_size(tmp_path):
    """A fetch still downloading holds its room: a second fetch of another file (the
    background fill of one file and the read-ahead of the next) must evict to fit,
    not fit into the same room (the staged total once reached limit + a chunk)."""
    import threading
    store = GatedStore()
    clock = [1000.0]
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1, clock=lambda: clock[0],
                       downloader=Downloader(store, parallel=2, chunk_size=1 << 20))  # one GET, inline
    old = _stage(cache, store, "old", 400 * KB, clock)
    cache.release(old)                                      # clean, closed: evictable
    store.put("a", os.urandom(500 * KB))
    store.put("b", os.urandom(500 * KB))
    a = cache.open("a", store.head("a"))
    b = cache.open("b", store.head("b"))
    store.gated.add("a")
    errors = []

    def fetch_a():
        try:
            a.fetch(0, 500 * KB)
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=fetch_a)
    t.start()
    try:
        assert store.entered.wait(10)       # a's 500 KB are reserved, not yet present
        b.fetch(0, 500 * KB)                # must make room for a's bytes as well
        assert "old" not in {r.key for r in cache._records.values()}
    finally:
        store.release.set()
        t.join(10)
    assert not errors and a.complete() and b.complete()
    assert cache._used() <= cache.cache_size
    assert _staged_on_disk(cache) <= cache.cache_size
    assert cache._reserved == 0
    for sf in (a, b):
        cache.release(sf)
    cache.check_invariants()
    cache.close()


def test_in_flight_bytes_that_cannot_fit_give_enospc(tmp_path):
    """Nothing evictable: a second reservation while the first is in flight fails
    (a read is then served from the store), and the staged total stays in bounds."""
    import threading
    store = GatedStore()
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1,
                       downloader=Downloader(store, parallel=2, chunk_size=1 << 20))
    store.put("a", os.urandom(600 * KB))
    store.put("b", os.urandom(600 * KB))
    a = cache.open("a", store.head("a"))
    b = cache.open("b", store.head("b"))
    store.gated.add("a")
    t = threading.Thread(target=a.fetch, args=(0, 600 * KB))
    t.start()
    try:
        assert store.entered.wait(10)
        with pytest.raises(FsError) as info:
            b.fetch(0, 600 * KB)
        assert info.value.errno == errno.ENOSPC
        assert b.read(0, 600 * KB) == store.peek("b")      # served straight from the store
        assert b.ranges.total() == 0
    finally:
        store.release.set()
        t.join(10)
    assert a.complete() and cache._reserved == 0
    assert _staged_on_disk(cache) <= cache.cache_size
    for sf in (a, b):
        cache.release(sf)
    cache.close()


def test_slow_path_of_ensure_space_is_serialised(tmp_path, store):
    """Two threads that both run out of budget at once measure the limits one after
    the other, so they never both take the same room."""
    import threading
    inside = [0]
    most = [0]
    lock = threading.Lock()

    def slow_usage(_path):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)  # the other thread arrives meanwhile
        with lock:
            inside[0] -= 1
        return plenty(_path)

    cache = make_cache(tmp_path / "c", store, cache_size_mb=1, disk_usage=slow_usage)
    results = []

    def reserve():
        try:
            cache.ensure_space(600 * KB)
            results.append("ok")
        except FsError as exc:
            results.append(exc.errno)

    threads = [threading.Thread(target=reserve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 1
    assert sorted(results, key=str) == sorted(["ok", errno.ENOSPC], key=str)
    assert cache._reserved == 600 * KB
    cache.release_space(600 * KB)
    assert cache._reserved == 0
    cache.close()


def test_failed_fetch_and_refused_write_release_their_reservation(tmp_path, store):
    from ossfs.errors import TransientError as Down
    store.put("f", os.urandom(300 * KB))
    cache = make_cache(tmp_path / "c", store, cache_size_mb=1)
    sf = cache.open("f", store.head("f"))
    store.fail_next("GetObject", Down("down"))
    with pytest.raises(Down):
        sf.fetch(0, 300 * KB)   # one of its chunks failed
    assert cache._reserved == 0
    sf.fetch(0, 300 * KB)
    assert cache._reserved == 0 and sf.complete()
    w = cache.open("w", None)
    with pytest.raises(FsError):
        w.write(0, b"x" * (900 * KB))   # 300 KB staged + 900 KB > 1 MiB, "f" is open
    assert cache._reserved == 0
    w.write(0, b"x" * (600 * KB))
    assert cache._reserved == 0
    for s in (sf, w):
        cache.release(s)
    cache.close()


def test_a_staged_file_deleted_behind_the_cache_is_fetched_again(tmp_path, store):
    """A tmp cleaner or an ``rm`` in the cache directory took staged files (or the
    whole ``files/`` directory): the next open must not serve the zeros a recreated
    file starts as, and a file with unsent changes must not upload them."""
    import shutil
    data = os.urandom(300 * KB)
    store.put("f", data)
    cache = make_cache(tmp_path / "c", store)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    path = sf.path
    cache.release(sf)
    os.unlink(path)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    cache.release(sf)
    shutil.rmtree(cache.files_dir)
    sf = cache.open("f", store.head("f"))
    assert sf.read(0, len(data)) == data
    # unsent changes whose staged file vanished: the bucket's version stays
    sf.write(0, b"changed")
    assert sf.dirty
    cache.release(sf)
    os.unlink(sf.path)
    puts = store.counts["PutObject"] + store.counts["UploadPart"]
    sf = cache.open_dirty("f")
    assert sf is not None and not sf.dirty
    assert sf.read(0, len(data)) == data
    cache.release(sf)
    assert cache.upload_all() == []
    assert store.counts["PutObject"] + store.counts["UploadPart"] == puts
    assert store.peek("f") == data
    cache.close()
