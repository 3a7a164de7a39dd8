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
  every other entry is HEADed in parallel (``multireq_max`` at once) so that
  ``ls -l`` shows the real modes and owners.  Last-Modified has whole seconds: a
  header change made within the second of the previous write is seen by listings
  only once ``stat`` has refreshed the entry.
* The negative cache remembers missing paths for the same lifetime, unless
  disabled (``neg_cache`` false, ``-o disable_noobj_cache``).  Every path this mount
  creates is removed from it by :meth:`remember`; a listing removes what it saw.

Threads: ``_lock`` guards ``_stat`` and ``_neg`` and is never held across a store
call.  Two threads may resolve the same path at once; both answers are valid and
the later one wins in the cache.
"""
from __future__ import annotations

import collections
import errno
import logging
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import FsError, NotFound, StoreError
from .meta import Attr, Defaults, attr_from_info, is_dir_content_type
from .store import ObjectInfo

log = logging.getLogger(__name__)

FOLDER_SUFFIX = "_$folder$"

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


def dir_prefix(path: str) -> str:
    """LIST prefix of the children of directory ``path``: ``/a`` -> ``a/``, ``/`` -> ``""``."""
    key = key_of(path)
    return key + "/" if key else ""


def join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


def _mode_header_type(info: ObjectInfo) -> Optional[int]:
    """The file type the ``mode`` header states, None when absent or unreadable."""
    value = (info.meta or {}).get("mode")
    if value is None or not value.strip().isdigit():
        return None
    return stat.S_IFMT(int(value)) or None


class Namespace:
    """Path resolution and its caches over one store (see the module docstring)."""

    def __init__(self, store, defaults: Defaults, *, root_mode: int = 0o755, stat_cache_expire: float = 900,
                 max_stat_cache_size: int = 100000, neg_cache: bool = True, multireq_max: int = 20,
                 list_max_keys: int = 1000, clock: Callable[[], float] = time.time):
        self.store = store
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
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    # --- caches ---

    def _fresh(self, t: float) -> bool:
        if self.expire < 0:
            return True
        return self.clock() - t < self.expire

    def cached(self, path: str) -> Optional[Entry]:
        """The cached entry for ``path`` if still valid."""
        with self._lock:
            item = self._stat.get(path)
            if item is None:
                return None
            if not self._fresh(item[1]):
                return None
            self._stat.move_to_end(path)
            return item[0]

    def remember(self, entry: Entry) -> None:
        """Cache ``entry`` (this mount just created or read it) and forget that its path
        was missing."""
        with self._lock:
            self._neg.pop(entry.path, None)
            if self.expire == 0 or self.max_size <= 0:
                return
            self._stat[entry.path] = (entry, self.clock())
            self._stat.move_to_end(entry.path)
            while len(self._stat) > self.max_size:
                self._stat.popitem(last=False)

    def forget(self, path: str, missing: bool = False) -> None:
        """Drop what is cached about ``path``; with ``missing``, remember it is gone."""
        with self._lock:
            self._stat.pop(path, None)
            self._neg.pop(path, None)
            if missing and self.neg_cache and self.expire != 0 and self.max_size > 0:
                self._neg[path] = self.clock()
                while len(self._neg) > self.max_size:
                    self._neg.popitem(last=False)

    def forget_tree(self, path: str) -> None:
        """Drop every cached entry at or below ``path`` (after a directory rename)."""
        below = path.rstrip("/") + "/"
        with self._lock:
            for cache in (self._stat, self._neg):
                for p in [p for p in cache if p == path or p.startswith(below)]:
                    del cache[p]

    def _known_missing(self, path: str) -> bool:
        with self._lock:
            t = self._neg.get(path)
            if t is None:
                return False
            if self._fresh(t):
                return True
            del self._neg[path]
            return False

    # --- resolution ---

    def entry_from_info(self, path: str, info: ObjectInfo, form: str) -> Entry:
        attr = attr_from_info(info, self.defaults, form != FILE)
        return Entry(path, form, attr, info.key, info)

    def implicit_entry(self, path: str) -> Entry:
        d = self.defaults
        ns = int(self.clock() * 1e9)
        mode = stat.S_IFDIR | (d.dir_mode & ~d.umask & 0o7777)
        return Entry(path, IMPLICIT, Attr(mode, d.uid, d.gid, 4096, ns, ns, ns))

    def lookup(self, path: str, *, fresh: bool = False) -> Entry:
        """The entry at ``path``; raises FsError(ENOENT).  ``fresh`` bypasses the caches
        (open's close-to-open revalidation)."""
        if path == "/":
            return self.root
        if not fresh:
            entry = self.cached(path)
            if entry is not None:
                return entry
            if self._known_missing(path):
                raise FsError(errno.ENOENT)
        entry = self._resolve(path)
        if entry is None:
            self.forget(path, missing=True)
            raise FsError(errno.ENOENT)
        self.remember(entry)
        return entry

    def _head(self, key: str) -> Optional[ObjectInfo]:
        try:
            return self.store.head(key)
        except NotFound:
            return None

    def _resolve(self, path: str) -> Optional[Entry]:
        key = key_of(path)
        info = self._head(key)
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

    def _get_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.multireq_max, thread_name_prefix="ossfs-head")
            return self._pool

    def listdir(self, path: str) -> list:
        """``[(name, Entry)]`` of the children of directory ``path``, sorted by name.

        One paginated LIST with delimiter, then HEADs (in parallel) for the entries
        whose attributes are not already known for that object version."""
        prefix = dir_prefix(path)
        files: dict = {}    # name -> ObjectInfo (LIST data)
        dirs: dict = {}     # name -> form hint (FOLDER if only a _$folder$ object was seen)
        token = None
        while True:
            page = self.store.list(prefix, "/", token, self.list_max_keys)
            for info in page.objects:
                name = info.key[len(prefix):]
                if name in ("", ".", ".."):
                    continue  # the directory's own marker, or names no path can reach
                if name.endswith(FOLDER_SUFFIX) and len(name) > len(FOLDER_SUFFIX):
                    dirs.setdefault(name[:-len(FOLDER_SUFFIX)], FOLDER)
                    continue
                files[name] = info
            for p in page.prefixes:
                name = p[len(prefix):-1]
                if name not in ("", ".", "..") and "/" not in name:
                    dirs[name] = MARKER  # a marker or implicit: the HEAD of "name/" tells
            token = page.next_token
            if token is None:
                break

        jobs = {}   # name -> callable returning Optional[Entry]
        result = {}
        reused = {}  # validated by LIST data: not re-remembered, so their age still bounds staleness
        for name, info in files.items():
            child = join(path, name)
            if name in dirs:
                if info.size > 0:
                    dirs.pop(name)  # a non-empty file hides the directory (module docstring)
                else:
                    dirs.pop(name)
                    jobs[name] = (lambda c=child: self._lookup_quiet(c))
                    continue
            cached = self._validated(child, info)
            if cached is not None:
                reused[name] = cached
            else:
                jobs[name] = (lambda c=child, i=info: self._head_file(c, i))
        for name, form in dirs.items():
            child = join(path, name)
            cached = self.cached(child)
            if cached is not None and cached.is_dir:
                result[name] = cached
            else:
                jobs[name] = (lambda c=child, f=form: self._head_dir(c, f))

        if jobs:
            if len(jobs) == 1:
                done = {name: fn() for name, fn in jobs.items()}
            else:
                pool = self._get_pool()
                futures = {name: pool.submit(fn) for name, fn in jobs.items()}
                done = {name: fut.result() for name, fut in futures.items()}
            for name, entry in done.items():
                if entry is not None:
                    result[name] = entry
        for entry in result.values():
            self.remember(entry)
        result.update(reused)
        return sorted(result.items())

    def _validated(self, path: str, info: ObjectInfo) -> Optional[Entry]:
        """A cached file entry (even expired) still describing the LIST's object version."""
        with self._lock:
            item = self._stat.get(path)
        if item is None:
            return None
        entry = item[0]
        if (entry.form == FILE and entry.info is not None and entry.info.etag == info.etag
                and entry.info.size == info.size and entry.info.last_modified == info.last_modified):
            return entry
        return None

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
