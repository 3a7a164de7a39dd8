"""Paths to attributes: HEAD/LIST resolution, directory listings, the stat cache and
the negative cache.

Owns the mapping from a mount-relative path (``/a/b``) to an :class:`Entry` (what
the object store holds there, and its :class:`~ossfs.meta.Attr`), and every cache of
that mapping.  It writes nothing to the store.

Resolving a path ``/a/b`` (key ``a/b``), cheapest evidence first:

1. ``HEAD a/b``.  Found: a directory if its Content-Type says so
   (``application/x-directory``, ``httpd/unix-directory``) or its mode header says
   ``S_IFDIR`` (old s3fs), or if it is a zero-byte object without a mode header
   that has children (the legacy ``name`` form); otherwise a file (symlinks, FIFOs
   and sockets are files with their type in the mode).
2. ``LIST a/b/`` (delimiter ``/``, one key).  Anything there makes a directory:
   the marker form when the first key is ``a/b/`` itself (then ``HEAD a/b/`` for its
   attributes), else an implicit directory (no object at all; attributes from the
   mount defaults).
3. ``HEAD a/b_$folder$`` (the form of old s3fs/Hadoop tools): an empty directory.
4. Otherwise ENOENT, remembered in the negative cache.

Decision on ``a`` (file) and ``a/`` (directory) both existing: a non-empty ``a``, or
one whose mode header says it is not a directory, is the file and hides ``a/``
(s3fs resolves the same way, HEAD of the plain name first); a zero-byte ``a``
without a mode header is the legacy directory form.  ``listdir`` shows the name
once, with the same answer.

Caches (invariants):

* The stat cache maps a path to the last :class:`Entry` seen, for
  ``stat_cache_expire`` seconds (-1: forever, 0: not cached) and at most
  ``max_stat_cache_size`` entries (least recently used dropped first).  Entries
  are never mutated once cached: writers build a new one and call
  :meth:`remember`.  ``lookup(fresh=True)`` (used by open) never answers from it.
* A listing refreshes the cache: a cached file entry (even expired) whose ETag,
  size and Last-Modified equal the LIST entry's is still right (same object
  version; a header change by copy-onto-itself moves Last-Modified) and is shown
  without a HEAD, keeping its age (so ``stat`` still HEADs it after the expiry);
  every other entry is HEADed in parallel (``multireq_max`` at once), starting as
  soon as its LIST page arrives while the next page is fetched, so that ``ls -l``
  shows the real modes and owners.  Last-Modified has whole seconds: a
  header change made within the second of the previous write is seen by listings
  only once ``stat`` has refreshed the entry.
* The persistent metadata cache (``metacache.py``, optional) backs the stat cache on
  disk: every entry read or written is recorded there, a listing validates records
  of files not in memory by the same ETag/size/Last-Modified rule (so ``ls -l`` after
  a remount costs LIST pages only), ``lookup`` uses a record only within
  ``stat_cache_expire`` of when it was confirmed, and a listing deletes the records
  of children it no longer shows.  Entries passed to :meth:`remember` come from this
  mount's writes: their Last-Modified (the server's answer time) may differ from the
  listed one by a second, which is tolerated once and then corrected.
* A complete listing of a directory is negative evidence for ``stat_cache_expire``
  (with ``neg_cache``): a name it did not show is ENOENT without a request.  This
  mount's creates and deletes keep that name set current; a directory made here
  (``remember`` of a directory that was known missing) starts as an empty listing.
* The negative cache remembers missing paths for the same lifetime, unless
  disabled (``neg_cache`` false, ``-o disable_noobj_cache``).  Every path this mount
  creates is removed from it by :meth:`remember`; a listing removes what it saw.

Threads: ``_lock`` guards ``_stat``, ``_neg`` and ``_listed`` and is never held across
a store call or a metadata-cache call (``MetaCache`` has its own lock).  HEADs run on
a pool of ``multireq_max`` threads, the next LIST page of a listing on a separate pool
of ``LIST_THREADS`` (so a LIST never queues behind HEADs); neither pool's work submits
to a pool and waits, so neither can deadlock.  Two threads may resolve the same path
at once; both answers are valid and the later one wins in the cache.
"""
from __future__ import annotations

import collections
import errno
import logging
import posixpath
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

from .errors import FsError, NotFound, StoreError
from .meta import Attr, Defaults, attr_from_info, implicit_dir_attr, is_decimal, is_dir_content_type, shown_attr
from .metacache import MetaCache, Record
from .store import ObjectInfo

log = logging.getLogger(__name__)

FOLDER_SUFFIX = "_$folder$"
MAX_LISTINGS = 4096  # directories whose complete name list is kept as negative evidence
LIST_THREADS = 4     # listings whose next LIST page can be fetched at once
SETTLED = 2.0        # seconds between an object's Last-Modified and our HEAD that prove no later same-second change

# Forms an entry takes in the bucket.
FILE = "file"          # a plain object (regular file, symlink, fifo, socket)
MARKER = "marker"      # directory object "name/"
LEGACY = "legacy"      # directory object "name" (zero bytes or a directory content type)
FOLDER = "folder"      # directory object "name_$folder$"
IMPLICIT = "implicit"  # directory without any object: only keys under "name/"
ROOT = "root"          # the mountpoint


@dataclass(frozen=True)
class Entry:
    """What the bucket holds at one path.  ``key`` is the object carrying the
    attributes (None for implicit directories and the root); ``info`` the HEAD
    result (None when only LIST data or nothing was available)."""

    path: str
    form: str
    attr: Attr
    key: Optional[str] = None
    info: Optional[ObjectInfo] = None

    @property
    def is_dir(self) -> bool:
        return self.form not in (FILE,)

    @property
    def etag(self) -> str:
        return self.info.etag if self.info else ""

    @property
    def content_type(self) -> str:
        return self.info.content_type if self.info else ""


def key_of(path: str) -> str:
    """Object key of a mount-relative path: ``/a/b`` -> ``a/b``, ``/`` -> ``""``."""
    return path.strip("/")


def is_utf8(text: str) -> bool:
    """False for a path holding bytes that are not UTF-8 (the kernel's bytes arrive as
    surrogate escapes); no object key is named so."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dir_prefix(path: str) -> str:
    """LIST prefix of the children of directory ``path``: ``/a`` -> ``a/``, ``/`` -> ``""``."""
    key = key_of(path)
    return key + "/" if key else ""


def join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


def _mode_header_type(info: ObjectInfo) -> Optional[int]:
    """The file type the ``mode`` header states, None when absent or unreadable."""
    value = (info.meta or {}).get("mode")
    if value is None or not is_decimal(value.strip()):
        return None
    mode = int(value)
    if mode > 0o177777:  # garbage (meta.py reads it as "no mode"); S_IFMT would overflow
        return None
    return stat.S_IFMT(mode) or None


class Namespace:
    """Path resolution and its caches over one store (see the module docstring)."""

    def __init__(self, store, defaults: Defaults, *, root_mode: int = 0o755, stat_cache_expire: float = 900,
                 max_stat_cache_size: int = 100000, neg_cache: bool = True, multireq_max: int = 20,
                 list_max_keys: int = 1000, clock: Callable[[], float] = time.time,
                 metacache: Optional[MetaCache] = None):
        self.store = store
        self.disk = metacache
        self.defaults = defaults
        self.expire = stat_cache_expire
        self.max_size = max_stat_cache_size
        self.neg_cache = neg_cache
        self.multireq_max = max(1, multireq_max)
        self.list_max_keys = list_max_keys
        self.clock = clock
        now_ns = int(clock() * 1e9)
        self.root = Entry("/", ROOT, Attr(stat.S_IFDIR | (root_mode & 0o7777), defaults.uid, defaults.gid,
                                          4096, now_ns, now_ns, now_ns))
        self._lock = threading.Lock()
        self._stat: collections.OrderedDict = collections.OrderedDict()  # GUARDED_BY(_lock) path -> (Entry, t)
        self._neg: collections.OrderedDict = collections.OrderedDict()   # GUARDED_BY(_lock) path -> t
        # GUARDED_BY(_lock) directory path -> (set of child names, t, pruned): the names a
        # complete listing showed at t, kept up to date with this mount's own creates and
        # deletes; ``pruned`` when it came from a listing, which checks the directory's
        # persisted children (a directory made by mkdir is known empty without one).
        self._listed: collections.OrderedDict = collections.OrderedDict()
        self._pool: Optional[ThreadPoolExecutor] = None       # GUARDED_BY(_pool_lock)
        self._list_pool: Optional[ThreadPoolExecutor] = None  # GUARDED_BY(_pool_lock)
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        with self._pool_lock:
            for pool in (self._pool, self._list_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._pool = self._list_pool = None
        if self.disk is not None:
            self.disk.close()

    # --- caches ---

    def _fresh(self, t: float) -> bool:
        if self.expire < 0:
            return True
        return self.clock() - t < self.expire

    def _caching(self) -> bool:
        return self.expire != 0 and self.max_size > 0

    def cached(self, path: str) -> Optional[Entry]:
        """The cached entry for ``path`` if still valid: from memory, else from the
        persistent cache when its record was checked within ``stat_cache_expire``."""
        with self._lock:
            item = self._stat.get(path)
            if item is not None and self._fresh(item[1]):
                self._stat.move_to_end(path)
                return item[0]
        if self.disk is None or path == "/" or not self._caching():
            return None
        rec = self.disk.get(key_of(path))
        if rec is None or not self._fresh(rec.checked):
            return None
        entry = self._entry_from_record(path, rec)
        self._keep([(entry, rec.checked, rec.own)])
        return entry

    def _keep(self, items) -> None:
        """Put ``[(Entry, t, own)]`` in the memory cache (no disk write)."""
        with self._lock:
            for entry, t, own in items:
                self._neg.pop(entry.path, None)
                self._add_name(entry.path)
                if not self._caching():
                    continue
                self._stat[entry.path] = (entry, t, own)
                self._stat.move_to_end(entry.path)
            while len(self._stat) > self.max_size:
                self._stat.popitem(last=False)

    def remember(self, entry: Entry) -> None:
        """Cache ``entry``, which this mount has just written (PUT, copy, completed
        upload: ``entry.info`` is the server's answer plus the headers sent), and forget
        that its path was missing.  A directory written where nothing was known to exist
        (mkdir) is known to be empty."""
        now = self.clock()
        with self._lock:
            new_dir = entry.is_dir and self._missing_locked(entry.path)
        self._keep([(entry, now, True)])
        if new_dir and self.neg_cache:
            with self._lock:
                self._set_listing(entry.path, set(), now)
        self._persist([(entry, now, True)])

    def _remember_read(self, entries, now: float) -> None:
        """Cache entries just read from the server (HEAD or LIST)."""
        items = [(e, now, False) for e in entries]
        self._keep(items)
        self._persist(items)

    def _persist(self, items) -> None:
        if self.disk is None or not self._caching():
            return
        records = [r for r in (self._record_of(e, t, own) for e, t, own in items) if r is not None]
        self.disk.put_many(records)

    def forget(self, path: str, missing: bool = False) -> None:
        """Drop what is cached about ``path``; with ``missing``, remember it is gone."""
        with self._lock:
            self._stat.pop(path, None)
            self._neg.pop(path, None)
            if missing:
                self._drop_name(path)
            else:
                self._add_name(path)
            if missing and self.neg_cache and self._caching():
                self._neg[path] = self.clock()
                while len(self._neg) > self.max_size:
                    self._neg.popitem(last=False)
        if self.disk is not None and path != "/":
            self.disk.delete_many([key_of(path)])

    def forget_tree(self, path: str) -> None:
        """Drop every cached entry at or below ``path`` (after a directory rename)."""
        below = path.rstrip("/") + "/"
        with self._lock:
            for cache in (self._stat, self._neg, self._listed):
                for p in [p for p in cache if p == path or p.startswith(below)]:
                    del cache[p]
            self._add_name(path)
        if self.disk is not None and path != "/":
            self.disk.delete_tree(key_of(path))

    # Directory listings as negative evidence; callers hold _lock.

    def _set_listing(self, path: str, names: set, t: float, pruned: bool = False) -> None:
        self._listed[path] = (names, t, pruned)
        self._listed.move_to_end(path)
        while len(self._listed) > MAX_LISTINGS:
            self._listed.popitem(last=False)

    def _add_name(self, path: str) -> None:
        if path == "/":
            return
        parent, name = path.rsplit("/", 1)
        item = self._listed.get(parent or "/")
        if item is not None:
            item[0].add(name)

    def _drop_name(self, path: str) -> None:
        if path == "/":
            return
        parent, name = path.rsplit("/", 1)
        item = self._listed.get(parent or "/")
        if item is not None:
            item[0].discard(name)

    def _missing_locked(self, path: str) -> bool:
        t = self._neg.get(path)
        if t is not None:
            if self._fresh(t):
                return True
            del self._neg[path]
        if not self.neg_cache or path == "/":
            return False
        parent, name = path.rsplit("/", 1)
        item = self._listed.get(parent or "/")
        if item is None:
            return False
        if not self._fresh(item[1]):
            del self._listed[parent or "/"]
            return False
        return name not in item[0]

    def _known_missing(self, path: str) -> bool:
        with self._lock:
            return self._missing_locked(path)

    # Entries <-> persistent records.

    def _record_of(self, entry: Entry, t: float, own: bool) -> Optional[Record]:
        if entry.form == ROOT:
            return None
        info = entry.info
        if info is None:
            if entry.form != IMPLICIT:
                return None
            return Record(key_of(entry.path), IMPLICIT, None, checked=t)
        if info.meta is None:
            return None  # only LIST data (a failed HEAD): not worth keeping
        return Record(key_of(entry.path), entry.form, info.key, info.size, info.etag, info.last_modified,
                      info.content_type, info.meta, info.object_type, t, own, info.headers)

    def _entry_from_record(self, path: str, rec: Record) -> Entry:
        if rec.form == IMPLICIT or rec.obj_key is None:
            return self.implicit_entry(path)
        # rec.meta was decoded for this record alone: no copy needed.
        info = ObjectInfo(rec.obj_key, rec.size, rec.etag, rec.last_modified, rec.content_type,
                          rec.meta if rec.meta is not None else {}, None, rec.object_type, rec.headers)
        return self.entry_from_info(path, info, rec.form)

    # --- resolution ---

    def entry_from_info(self, path: str, info: ObjectInfo, form: str) -> Entry:
        attr = attr_from_info(info, self.defaults, form != FILE)
        return Entry(path, form, attr, info.key, info)

    def implicit_entry(self, path: str) -> Entry:
        """A directory that only a prefix makes (no marker object): the mount's default
        attributes, and the mount's time as its times, the same at every look (a
        changing mtime would make backup and sync tools see a change that is not)."""
        return Entry(path, IMPLICIT, shown_attr(implicit_dir_attr(self.defaults, self.root.attr.mtime_ns),
                                                self.defaults))

    def lookup(self, path: str, *, fresh: bool = False) -> Entry:
        """The entry at ``path``; raises FsError(ENOENT).  ``fresh`` bypasses the caches
        (open's close-to-open revalidation)."""
        if path == "/":
            return self.root
        if not is_utf8(path):
            raise FsError(errno.ENOENT)
        if not fresh:
            entry = self.cached(path)
            if entry is not None:
                return entry
            if self._known_missing(path):
                raise FsError(errno.ENOENT)
        return self._lookup_fresh(path)

    def lookup_recent(self, path: str, within: float = SETTLED) -> Entry:
        """The entry at ``path`` for a read-modify-write of its headers (chmod, chown,
        utime, xattrs): the cached one only when it was learnt (by a HEAD, or from this
        mount's own write) less than ``within`` seconds ago, else as the bucket has it
        now.  A change of headers alone keeps an object's ETag, so a copy pinned to
        the ETag of an older entry could undo another client's chmod."""
        if path != "/":
            with self._lock:
                item = self._stat.get(path)
            if (item is not None and self.clock() - item[1] < within
                    and (item[0].info is None or item[0].info.meta is not None)):
                return item[0]
        return self.lookup(path, fresh=True)

    def _lookup_fresh(self, path: str, first: Optional[Callable[[str], Optional[ObjectInfo]]] = None) -> Entry:
        """The entry at ``path`` as the bucket has it now (see :meth:`_resolve`),
        remembered in the caches; FsError(ENOENT) when there is none."""
        now = self.clock()
        entry = self._resolve(path, first)
        if entry is None:
            self.forget(path, missing=True)
            raise FsError(errno.ENOENT)
        self._remember_read([entry], now)
        return entry

    def lookup_reading(self, path: str, length: int) -> Tuple[Entry, Optional[bytes]]:
        """``lookup(path, fresh=True)`` that asks for the object with a GET of its first
        ``length`` bytes instead of a HEAD (:meth:`ObjectStore.get_first`): the entry,
        and those bytes when the entry is a file (None otherwise)."""
        if path == "/":
            return self.root, None
        if not is_utf8(path):
            raise FsError(errno.ENOENT)
        got = []

        def first(key: str) -> Optional[ObjectInfo]:
            try:
                info, data = self.store.get_first(key, length)
            except NotFound:
                return None
            got.append(data)
            return info

        entry = self._lookup_fresh(path, first)
        return entry, (got[0] if got and entry.form == FILE else None)

    def _head(self, key: str) -> Optional[ObjectInfo]:
        try:
            return self.store.head(key)
        except NotFound:
            return None

    def _resolve(self, path: str, first: Optional[Callable[[str], Optional[ObjectInfo]]] = None
                 ) -> Optional[Entry]:
        """The entry at ``path`` from the bucket.  ``first`` asks for the object at the
        path's own key (default: HEAD); the other forms are found by LIST and HEAD."""
        key = key_of(path)
        info = (first or self._head)(key)
        if info is not None:
            mtype = _mode_header_type(info)
            if is_dir_content_type(info.content_type) or mtype == stat.S_IFDIR:
                return self.entry_from_info(path, info, LEGACY)
            if info.size == 0 and mtype is None and self.has_children(path):
                return self.entry_from_info(path, info, LEGACY)
            return self.entry_from_info(path, info, FILE)
        prefix = key + "/"
        page = self.store.list(prefix, "/", None, 1)
        if page.objects or page.prefixes:
            if page.objects and page.objects[0].key == prefix:
                marker = self._head(prefix)
                if marker is not None:
                    return self.entry_from_info(path, marker, MARKER)
            return self.implicit_entry(path)
        folder = self._head(key + FOLDER_SUFFIX)
        if folder is not None:
            return self.entry_from_info(path, folder, FOLDER)
        return None

    def has_children(self, path: str) -> bool:
        """True if any key other than the directory's own marker lies under ``path/``."""
        prefix = dir_prefix(path)
        page = self.store.list(prefix, "/", None, 2)
        return bool(page.prefixes) or any(o.key != prefix for o in page.objects)

    def walk_keys(self, path: str) -> list:
        """Every object under directory ``path`` (recursive, LIST without delimiter),
        as ObjectInfo without meta, in key order."""
        prefix = dir_prefix(path)
        out, token = [], None
        while True:
            page = self.store.list(prefix, "", token, self.list_max_keys)
            out.extend(page.objects)
            token = page.next_token
            if token is None:
                return out

    # --- listings ---

    def _get_pool(self, listing: bool = False) -> ThreadPoolExecutor:
        """The HEAD pool (``multireq_max`` threads), or with ``listing`` the small pool
        that fetches the next LIST page of each listing under way.  Two pools, so that
        a LIST never waits behind another listing's HEADs."""
        with self._pool_lock:
            if listing:
                if self._list_pool is None:
                    self._list_pool = ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="ossfs-list")
                return self._list_pool
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.multireq_max, thread_name_prefix="ossfs-head")
            return self._pool

    def _pages(self, prefix: str):
        """The LIST pages of ``prefix`` (delimiter ``/``), each next page requested
        while the caller handles the current one.  A caller that stops early leaves
        at most one request running."""
        pool = self._get_pool(listing=True)
        future = pool.submit(self.store.list, prefix, "/", None, self.list_max_keys)
        while future is not None:
            page = future.result()
            future = None
            if page.next_token is not None:
                future = pool.submit(self.store.list, prefix, "/", page.next_token, self.list_max_keys)
            yield page

    def listdir(self, path: str) -> list:
        """``[(name, Entry)]`` of the children of directory ``path``, sorted by name.

        One paginated LIST with delimiter; the entries of each page are checked against
        the caches (and those whose attributes are not known for that object version
        HEADed, in parallel) while the next page is fetched."""
        prefix = dir_prefix(path)
        now = self.clock()
        files: dict = {}    # name -> ObjectInfo (LIST data)
        dirs: dict = {}     # name -> form hint (FOLDER if only a _$folder$ object was seen)
        reused = {}         # name -> (Entry, t, own, changed): validated by LIST data, no HEAD
        heads = {}          # name -> Future of Optional[Entry]
        pool = self._get_pool()
        for page in self._pages(prefix):
            plain = {}
            for info in page.objects:
                name = info.key[len(prefix):]
                if name in ("", ".", ".."):
                    continue  # the directory's own marker, or names no path can reach
                if name.endswith(FOLDER_SUFFIX) and len(name) > len(FOLDER_SUFFIX):
                    dirs.setdefault(name[:-len(FOLDER_SUFFIX)], FOLDER)
                    continue
                files[name] = plain[name] = info
            for p in page.prefixes:
                name = p[len(prefix):-1]
                if name not in ("", ".", "..") and "/" not in name:
                    dirs[name] = MARKER  # a marker or implicit: the HEAD of "name/" tells
            records = {}
            if self.disk is not None and plain and self._caching():
                with self._lock:
                    missing = [n for n in plain if join(path, n) not in self._stat]
                if missing:
                    records = self.disk.get_many(key_of(join(path, n)) for n in missing)
            for name, info in plain.items():
                child = join(path, name)
                item = self._validated(child, info, records.get(key_of(child)), now)
                if item is not None:
                    reused[name] = item
                else:
                    heads[name] = pool.submit(self._head_file, child, info)

        jobs = {}   # name -> callable returning Optional[Entry]
        result = {}
        for name in [n for n in files if n in dirs]:
            dirs.pop(name)
            if files[name].size == 0:
                # an empty object and a prefix of the same name: what lookup says wins
                reused.pop(name, None)
                head = heads.pop(name, None)
                if head is not None:
                    head.cancel()
                jobs[name] = (lambda c=join(path, name): self._lookup_quiet(c))
            # a non-empty file hides the directory (module docstring)
        for name, form in dirs.items():
            child = join(path, name)
            cached = self.cached(child)
            if cached is not None and cached.is_dir:
                result[name] = cached
            else:
                jobs[name] = (lambda c=child, f=form: self._head_dir(c, f))
        if len(jobs) == 1 and not heads:
            done = {name: fn() for name, fn in jobs.items()}
        else:
            heads.update((name, pool.submit(fn)) for name, fn in jobs.items())
            done = {name: fut.result() for name, fut in heads.items()}
        if done:
            fetched = [entry for entry in done.values() if entry is not None]
            self._remember_read(fetched, now)
            for entry in fetched:
                result[posixpath.basename(entry.path)] = entry
        if reused:
            self._keep([item[:3] for item in reused.values()])
            # Rows whose check time moved or whose own Last-Modified was corrected.
            self._persist([item[:3] for item in reused.values() if item[3]])
        names = set(files) | set(dirs) | set(result)
        with self._lock:
            prev = self._listed.get(path)
            previous = set(prev[0]) if prev is not None and prev[2] else None
            if self.neg_cache and self._caching():
                self._set_listing(path, set(names), now, pruned=True)
            for name in names:
                self._neg.pop(join(path, name), None)
        self._prune(path, names, now, previous)
        result.update((name, item[0]) for name, item in reused.items())
        return sorted(result.items())

    def _prune(self, path: str, names: set, listed_at: float, previous: Optional[set] = None) -> None:
        """Forget the children of ``path`` that the listing started at ``listed_at``
        no longer shows (rows written after it started may describe newer objects).

        ``previous``: the names of the last listing of ``path``, as kept since (every
        entry cached or persisted since then went through :meth:`_keep`, which adds its
        name), given only when that listing pruned too, so a full prune of ``path`` ran
        in this mount.  Then the only rows that can be stale are those of ``previous -
        names``, and a warm listing costs no scan of the persistent cache.  Without it (the first listing
        of a directory after the mount), every persisted child is checked."""
        if self.disk is None:
            return
        prefix = dir_prefix(path)
        if previous is not None:
            keys = [key_of(join(path, n)) for n in previous - names]
            if not keys:
                return
            records = self.disk.get_many(keys)
            with self._lock:
                gone = [k for k in keys if self._stat.get("/" + k, (None, -1.0))[1] < listed_at
                        and (k not in records or records[k].checked < listed_at)]
        else:
            gone = [k for k, checked in self.disk.children(prefix)
                    if checked < listed_at and k[len(prefix):] not in names]
        if not gone:
            return
        with self._lock:
            for k in gone:
                item = self._stat.get("/" + k)
                if item is not None and item[1] < listed_at:
                    del self._stat["/" + k]
        self.disk.delete_many(gone)

    def _validated(self, path: str, info: ObjectInfo, rec: Optional[Record], now: float):
        """``(Entry, t, own, changed)`` of a cached file (memory, or ``rec`` from disk; even
        expired) still describing the LIST's object version, else None.  ``t`` moves to
        ``now`` (once a quarter of ``stat_cache_expire`` has passed) when the record was
        taken at least ``SETTLED`` seconds after the object's Last-Modified: a later
        change would have moved Last-Modified."""
        with self._lock:
            item = self._stat.get(path)
        if item is not None:
            entry, t, own = item
            if entry.form != FILE or entry.info is None or entry.info.meta is None:
                return None
            etag, size, lm = entry.info.etag, entry.info.size, entry.info.last_modified
        elif rec is not None:
            if rec.form != FILE or rec.meta is None:
                return None
            entry, t, own = None, rec.checked, rec.own
            etag, size, lm = rec.etag, rec.size, rec.last_modified
        else:
            return None
        if etag != info.etag or size != info.size:
            return None
        if own:
            # our time stamp is the answer's (Last-Modified, else Date): never before
            # the object's own, at most a second after it; a listed time later than
            # ours is another client's change
            if not 0 <= lm - info.last_modified <= 1.0:
                return None
        elif lm != info.last_modified:
            return None
        if entry is None:
            entry = self._entry_from_record(path, rec)
        if own:
            # Our write's time stamp came from the server's answer; LIST has the object's own.
            entry = replace(entry, info=replace(entry.info, last_modified=info.last_modified))
            return entry, t, False, True
        # Refreshing every row on every listing would cost a disk write per entry; a
        # quarter of the lifetime left over is plenty for the stat calls that follow.
        if self.expire >= 0 and t - lm >= SETTLED and now - t >= self.expire / 4:
            return entry, now, own, True
        return entry, t, own, False

    def _lookup_quiet(self, path: str) -> Optional[Entry]:
        try:
            return self.lookup(path, fresh=True)
        except FsError:
            return None

    def _head_file(self, path: str, listed: ObjectInfo) -> Optional[Entry]:
        try:
            info = self.store.head(listed.key)
        except NotFound:
            return None  # deleted since the LIST
        except StoreError as exc:
            # Show the entry with what LIST said rather than fail the whole listing.
            log.warning("HEAD %r failed during a listing: %s", listed.key, exc)
            return self.entry_from_info(path, listed, FILE)
        if is_dir_content_type(info.content_type) or _mode_header_type(info) == stat.S_IFDIR:
            return self.entry_from_info(path, info, LEGACY)
        return self.entry_from_info(path, info, FILE)

    def _head_dir(self, path: str, form: str) -> Optional[Entry]:
        key = key_of(path)
        try:
            if form == FOLDER:
                return self.entry_from_info(path, self.store.head(key + FOLDER_SUFFIX), FOLDER)
            return self.entry_from_info(path, self.store.head(key + "/"), MARKER)
        except NotFound:
            return self.implicit_entry(path)
        except StoreError as exc:
            log.warning("HEAD of directory %r failed during a listing: %s", key, exc)
            return self.implicit_entry(path)
