"""Staged files on local disk, their durable index, eviction and the dirty-file list.

Owns the cache directory of one mount (bucket + prefix): the staged copies of
objects (``files/<uuid4 hex>``, never named after keys; directory 0700, files
0600) and an index (a ``diskcache.Cache`` in ``index/``) holding one
:class:`IndexRecord` per staged file.  The filesystem core (``fs.py``) reads and
writes objects only through :class:`StagedFile`; data moves between a staged file
and the store only through ``transfer.Downloader`` / ``transfer.Uploader``.

Staging and reading (the essay)
-------------------------------
Opening an object downloads at most its first bytes.  A staged file starts sparse,
at the object's size, with an empty *range set* of bytes present, except for what
the open itself fetched (a read-only open of an object with nothing staged asks the
bucket with a GET of its first MiB instead of a HEAD: :meth:`StagedFile.seed`).  A
read first makes its own bytes present, plus a read-ahead window: 128 KiB for a
reader that jumps around, doubling up to 8 MiB while the reader stays sequential
(each read starts where the previous one ended).  So ``head -c 100`` of a 1 GiB
object costs one GET of 1 MiB, and ``cat`` of a small file one GET.  Meanwhile a
background filler (a small pool shared by every staged file) fetches the missing
bytes in order, ``parallel_count`` ranged GETs of :data:`DOWNLOAD_CHUNK` at a time,
until the file is complete or closed: a sequential reader of a cold file reads at
the speed of that many parallel streams.
Every GET is pinned with If-Match to the ETag seen at open: a staged file is never
stitched from two versions of an object.  A staged file whose ETag and size are
unchanged at the next open is reused with the ranges it has.

Writes go to the staged file (random writes anywhere, holes are zeros) and mark
the file dirty.  Uploading needs every byte, so missing ranges are fetched first;
the Uploader may still copy parts that were not written server-side
(``base``/``dirty_ranges``), so appending to a large object sends little.

Invariants
----------
* ``dirty`` is written to the index **before** the first byte that makes a file
  dirty is written to it.  A staged file recorded clean is therefore byte-equal to
  its object version where its ranges say so, even after a crash (kill -9), and the
  next mount can list dirty files with :meth:`Cache.dirty_entries`.  The ranges of
  a dirty file are persisted at the clean->dirty transition, at most every second
  while it is written, and at every flush/upload.  Between two persists, every write
  into a file staged from an object also appends its extent to the file's journal
  (``files/<id>.w``, 16 bytes a write, after the bytes are written, under the
  record's lock; emptied by each persist): so after a crash (kill -9) recovery knows
  which bytes the user wrote and never fetches the object's old bytes over them.
  The journal is not fsynced: after a power loss, writes not acknowledged by close()
  are best effort; acknowledged data is uploaded already.
* Dirty files and open files are never evicted.  Clean, closed files are evicted in
  least-recently-used order whenever a write or a fetch would exceed a limit:
  ``cache_size_mb`` (bytes staged; the holes of a sparse file, made by a truncate
  or a write past the end, are present but take no disk and count for nothing until
  written: ``zeros`` of the record), ``ensure_diskfree`` (MB free on the disk) or
  ``free_space_ratio`` (percent free), and always ``INDEX_RESERVE`` free for the
  index.  When nothing more can be evicted a write
  fails with ENOSPC before touching the file (nothing written is corrupted); a
  read that cannot be staged is served straight from the store instead.
  Room is *reserved* before bytes move (:meth:`Cache.reserve`) and the reservation
  is released once they are marked present (or the move failed), so bytes still
  in flight (a background fill and a read-ahead of two files at once) count
  against the limits as much as bytes already present: staged + reserved never
  exceeds ``cache_size_mb``.  Checking the limits (a disk stat, a sum over the
  index) is done at most once per ``BUDGET_MAX`` bytes: each check hands out a
  budget, and reservations within it cost one lock round.
* A failed upload leaves the file dirty, its data and its upload checkpoint
  (persisted through ``on_checkpoint``) in place; the next upload resumes.
* ``del_cache`` (as in ossfs 1.x) empties the cache at mount and unmount, except
  dirty files: those are users' data that did not reach the bucket.
* A cache that was not closed cleanly (crash, kill -9, power loss: the ``in-use``
  file is still there) loses its clean staged files at the next mount, because
  their ranges may have been recorded before their bytes reached the disk; dirty
  files are kept.

Threads and locks (order, outermost first)
------------------------------------------
``StagedFile.io_lock`` (serialises data movement into/out of one staged file:
fetches, writes, truncates, uploads; held across the network for a fetch or an
upload of that file only) -> ``StagedFile.lock`` (its size, ranges, dirty state,
record; never held across the network) -> ``Cache._lock`` (``_open``,
``_records``, ``open_count`` of every record, ``_budget``, ``_reserved``,
eviction).  Reads of bytes already present take only ``StagedFile.lock``
briefly, so they never wait for the network.

``Cache._space_lock`` serialises the slow path of :meth:`Cache.ensure_space`
(measure the limits, evict, hand out the next budget), so that two threads never
both fit into the same room.  It may be taken with a ``StagedFile.io_lock`` held,
never with a ``StagedFile.lock`` held, and before ``Cache._lock``:
``StagedFile.io_lock`` -> ``Cache._space_lock`` -> ``Cache._lock``.  It is never
held across the network (only across a disk stat and the unlinking of victims).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import re
import shutil
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import diskcache

from .errors import FsError, NotFound, PreconditionFailed, StoreError
from .store import ObjectInfo
from .transfer import BaseObject, Downloader, UploadCheckpoint, Uploader, crc64_of

log = logging.getLogger(__name__)

MB = 1024 * 1024
READAHEAD_MIN = 128 * 1024
READAHEAD_MAX = 8 * MB
DOWNLOAD_CHUNK = 8 * MB  # one ranged GET of a fetch; a fill step is parallel_count of them
PERSIST_INTERVAL = 1.0
BUDGET_MAX = 32 * MB
# Kept free on the cache disk whatever ensure_diskfree/free_space_ratio say: the index
# and the metadata cache must be able to record a file's state (dirty, checkpoint)
# after its data filled the disk, or a full disk would turn into EIO on every open.
INDEX_RESERVE = 4 * MB


class RangeSet:
    """Sorted disjoint half-open intervals ``[start, end)``.  Not thread-safe: the
    owner's lock guards it."""

    def __init__(self, ranges=()):
        self._r: list = []
        for s, e in ranges:
            self.add(s, e)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        r = self._r
        i = bisect.bisect_left(r, [start, start])
        if i > 0 and r[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(r) and r[j][0] <= end:
            start, end = min(start, r[j][0]), max(end, r[j][1])
            j += 1
        r[i:j] = [[start, end]]

    def remove(self, start: int, end: int) -> None:
        """Drop ``[start, end)`` from the set."""
        if end <= start:
            return
        out = []
        for s, e in self._r:
            if e <= start or s >= end:
                out.append([s, e])
                continue
            if s < start:
                out.append([s, start])
            if e > end:
                out.append([end, e])
        self._r = out

    def overlap(self, start: int, end: int) -> int:
        """How many bytes of ``[start, end)`` are in the set."""
        if end <= start:
            return 0
        return end - start - sum(e - s for s, e in self.missing(start, end))

    def clip(self, limit: int) -> None:
        """Drop everything at or beyond ``limit``."""
        out = []
        for s, e in self._r:
            if s >= limit:
                break
            out.append([s, min(e, limit)])
        self._r = out

    def missing(self, start: int, end: int) -> list:
        """Sub-intervals of ``[start, end)`` not in the set."""
        out, pos = [], start
        first = max(0, bisect.bisect_right(self._r, [start, float("inf")]) - 1)
        for s, e in self._r[first:]:
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
            if pos >= end:
                break
        if pos < end:
            out.append((pos, end))
        return out

    def total(self) -> int:
        return sum(e - s for s, e in self._r)

    def as_list(self) -> list:
        return [list(x) for x in self._r]

    def __eq__(self, other):
        return isinstance(other, RangeSet) and self._r == other._r

    def __repr__(self):
        return "RangeSet(%r)" % self._r


@dataclass
class IndexRecord:
    """What the index knows about one staged file (persisted as a plain dict)."""

    file_id: str
    bucket: str
    key: str
    etag: Optional[str]        # object version staged from; None for a file not yet uploaded
    base_size: int             # size of that version
    size: int                  # current size of the staged file
    ranges: list               # [[start, end), ...] of bytes present
    dirty: bool = False
    open_count: int = 0
    last_use: float = 0.0
    meta: dict = field(default_factory=dict)      # headers the next upload carries
    content_type: str = ""
    checkpoint: Optional[dict] = None             # transfer.UploadCheckpoint as a dict
    dirty_ranges: Optional[list] = None           # written since staged from etag; None: all
    fetch_limit: int = 0                          # bytes of the base version still meaningful
    zeros: list = field(default_factory=list)     # holes: present (read as zeros), no disk blocks


def default_cache_root(environ=os.environ) -> str:
    """``/var/cache/ossfs`` for root, else ``$XDG_CACHE_HOME/ossfs`` (``~/.cache/ossfs``).

    Not ``/tmp`` (1.x's default): staged files hold unsent data that must survive a
    reboot, and tmpfs would put whole objects in memory.  ``-o tmpdir=`` given
    explicitly is honoured (``<tmpdir>/ossfs-<uid>``); ``-o use_cache=`` wins over both."""
    if os.geteuid() == 0:
        return "/var/cache/ossfs"
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ossfs")


def cache_dir_of(config) -> str:
    """The cache directory of a mount: under ``use_cache=``, else under ``tmpdir=`` when
    given (``<tmpdir>/ossfs-<uid>``, 1.x's option), else under :func:`default_cache_root`;
    then :func:`mount_cache_dir`.  An absolute path: the daemon changes to ``/``."""
    if config.use_cache:
        root = config.use_cache
    elif "tmpdir" in (config.explicit or ()):
        root = os.path.join(config.tmpdir, "ossfs-%d" % os.geteuid())
    else:
        root = default_cache_root()
    return mount_cache_dir(os.path.abspath(root), config.bucket, config.prefix or "")


def mount_cache_dir(root: str, bucket: str, prefix: str = "") -> str:
    """Per bucket+prefix directory under ``root``: readable name plus a hash, so two
    prefixes of one bucket never share staged files."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", bucket)[:64]
    digest = hashlib.sha256(("%s:%s" % (bucket, prefix)).encode("utf-8")).hexdigest()[:12]
    return os.path.join(root, "%s-%s" % (safe, digest))


def _add_written(rec: IndexRecord, extents) -> None:
    """Mark ``[(start, end), ...]`` of record ``rec`` as written by the user: present,
    no longer holes, and dirty (when the record tracks dirty ranges)."""
    ranges, zeros = RangeSet(rec.ranges), RangeSet(rec.zeros)
    dirty = None if rec.dirty_ranges is None else RangeSet(rec.dirty_ranges)
    for start, end in extents:
        ranges.add(start, end)
        zeros.remove(start, end)
        if dirty is not None:
            dirty.add(start, end)
    rec.ranges, rec.zeros = ranges.as_list(), zeros.as_list()
    rec.dirty_ranges = None if dirty is None else dirty.as_list()


def _confirmed_holes(path: str, zeros: list) -> list:
    """The parts of ``zeros`` (``[[start, end), ...]``) holding no data in the file
    ``path``, as ``lseek(SEEK_DATA)`` tells; where it cannot tell, none (counting bytes
    as staged that are not is the safe side)."""
    if not zeros:
        return []
    out = []
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return []
    try:
        for start, end in zeros:
            pos = start
            while pos < end:
                try:
                    data = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no data from pos to the end
                        return out
                    data = end
                if data > pos:
                    out.append([pos, min(data, end)])
                if data >= end:
                    break
                try:
                    pos = os.lseek(fd, data, os.SEEK_HOLE)
                except OSError:
                    return out
    finally:
        os.close(fd)
    return out


def _staged_bytes(rec: IndexRecord) -> int:
    """Disk bytes the staged file of ``rec`` takes: its present ranges less its holes
    (an open file keeps the same count, newer, in ``StagedFile.staged``)."""
    return sum(e - s for s, e in rec.ranges) - sum(e - s for s, e in rec.zeros)


JOURNAL_SUFFIX = ".w"              # files/<id>.w: extents written since the record was saved
_EXTENT = struct.Struct("<QQ")       # one journal entry: start, end


class StagedFile:
    """One object staged on local disk; shared by every handle open on it."""

    def __init__(self, cache: "Cache", rec: IndexRecord):
        self.cache = cache
        self.rec = rec                      # GUARDED_BY(lock)
        self.ranges = RangeSet(rec.ranges)  # GUARDED_BY(lock)
        self.zeros = RangeSet(rec.zeros)    # GUARDED_BY(lock): holes, a subset of ranges
        # Disk bytes staged (ranges less holes), set in one assignment after each change
        # of the two sets, so that Cache._used_locked, which cannot take this file's
        # lock (lock order), never sees one set changed and not the other.
        self.staged = self.ranges.total() - self.zeros.total()
        self.dirty_ranges = None if rec.dirty_ranges is None else RangeSet(rec.dirty_ranges)
        self.path = os.path.join(cache.files_dir, rec.file_id)
        self.io_lock = threading.Lock()
        self.lock = threading.RLock()
        self.fd: Optional[int] = None       # open while open_count > 0
        self.detached = False               # unlinked or renamed over: deleted at last release, never uploaded
        # Replaced in the open-file registry by a newer version of the object that
        # another open found in the bucket.  Its handles keep reading the version they
        # opened; what they write is still uploaded at their flush (the last close
        # wins, as between two hosts).  Deleted at the last release if clean.
        self.superseded = False
        self.closing = False
        self.uploading = False
        self.progress = (0, 0)
        self.attr = None                    # GUARDED_BY(lock): the open file's stored meta.Attr, owned by fs.py
        self.meta_extra: dict = {}          # GUARDED_BY(lock): its other headers, owned by fs.py
        self.unsent = 0                     # GUARDED_BY(lock): bytes written since the last upload
        self._seq_end = -1                  # read-ahead state
        self._window = READAHEAD_MIN
        self._last_persist = 0.0
        self._saved = None                  # GUARDED_BY(lock): the row persist() wrote last
        self._jfd: Optional[int] = None     # GUARDED_BY(lock): the journal, open once written

    # --- state ---

    @property
    def key(self) -> str:
        return self.rec.key

    @property
    def size(self) -> int:
        with self.lock:
            return self.rec.size

    @property
    def dirty(self) -> bool:
        with self.lock:
            return self.rec.dirty

    @property
    def etag(self) -> Optional[str]:
        with self.lock:
            return self.rec.etag

    def complete(self) -> bool:
        with self.lock:
            return not self._missing(0, self.rec.size)

    def _missing(self, start: int, end: int) -> list:
        end = min(end, self.rec.size, self.rec.fetch_limit)
        if start >= end or self.rec.etag is None:
            return []
        return self.ranges.missing(start, end)

    def _restaged_locked(self) -> None:
        """Call after changing ``ranges`` or ``zeros`` (caller holds lock)."""
        self.staged = self.ranges.total() - self.zeros.total()

    def _sync_rec(self) -> None:
        self.rec.ranges = self.ranges.as_list()
        self.rec.zeros = self.zeros.as_list()
        self.rec.dirty_ranges = None if self.dirty_ranges is None else self.dirty_ranges.as_list()

    def persist(self, if_changed: bool = False) -> None:
        """Write the record to the index; with ``if_changed``, only when it differs
        from what was written last (a clean file closed unchanged costs no write).
        A detached file is not in the index any more (:meth:`Cache._detach`)."""
        with self.lock:
            if self.detached:
                return
            self._sync_rec()
            row = dict(vars(self.rec))  # flat: diskcache pickles it at once
            same = {**row, "open_count": 0} == self._saved
            if if_changed and same and not self.rec.dirty:
                return
            self._last_persist = time.monotonic()
            self.cache._save(self.rec, row)
            self._saved = {**row, "open_count": 0}
            if self._jfd is not None:
                os.ftruncate(self._jfd, 0)  # its extents are in the record now

    # --- the journal of written extents (module invariants) ---

    def _journal_locked(self, start: int, end: int) -> None:
        """Record that bytes [start, end) were written.  Caller holds ``lock`` and has
        just added them to the ranges."""
        if self._jfd is None:
            self._jfd = os.open(self.path + JOURNAL_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._jfd, _EXTENT.pack(start, end))

    def _close_journal_locked(self, remove: bool = False) -> None:
        if self._jfd is not None:
            os.close(self._jfd)
            self._jfd = None
        if remove:
            _unlink(self.path + JOURNAL_SUFFIX)

    def _open_fd(self) -> None:
        """Open the staged file (caller holds ``io_lock``), creating it, and the cache's
        ``files/`` directory, when missing.  A staged file that vanished behind the
        cache's back (a tmp cleaner, an ``rm`` in the cache directory) holds none of
        the bytes its record says are present: a file created here never serves the
        zeros it starts as, see :meth:`_vanished`."""
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                os.makedirs(self.cache.files_dir, mode=0o700, exist_ok=True)
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._vanished()
            if os.fstat(self.fd).st_size != self.rec.size:
                os.ftruncate(self.fd, self.rec.size)

    def _vanished(self) -> None:
        """The staged file was just created in place of one that is gone: nothing is
        present any more.  A clean file is fetched again as reads need it.  Unsent
        changes are lost with the file: the record goes back to the version it was
        staged from (never uploading the zeros in their place), with an ERROR."""
        with self.lock:
            if not self.ranges.total() and not self.rec.dirty:
                return  # a new staged file: nothing was there
            if self.rec.dirty:
                log.error("the staged file of %r with unsent changes was deleted from the cache directory "
                          "(%s): those changes are lost; the bucket's version is kept", self.rec.key, self.path)
            else:
                log.warning("the staged file of %r was deleted from the cache directory; fetching it again",
                            self.rec.key)
            self.rec.dirty = False
            self.rec.size = self.rec.base_size if self.rec.etag is not None else 0
            self.rec.fetch_limit = self.rec.size
            self.rec.checkpoint = None
            self.ranges = RangeSet()
            self.zeros = RangeSet()
            self._restaged_locked()
            self.dirty_ranges = None
            self.persist()

    def set_meta(self, meta: dict, content_type: Optional[str] = None) -> None:
        """Headers the next upload carries (persisted for recovery)."""
        with self.lock:
            changed = dict(meta) != self.rec.meta or content_type not in (None, self.rec.content_type)
            if changed and self.rec.checkpoint is not None and self.rec.checkpoint.get("fingerprint"):
                # its upload was initiated with the old headers: it cannot carry these
                self.rec.checkpoint = dict(self.rec.checkpoint, fingerprint="")
            self.rec.meta = dict(meta)
            if content_type is not None:
                self.rec.content_type = content_type
            if self.rec.dirty:
                self.persist()

    # --- reading ---

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            end = min(offset + size, self.rec.size)
            if offset >= end:
                return b""
            if offset == self._seq_end:
                self._window = min(self._window * 2, READAHEAD_MAX)
            else:
                self._window = READAHEAD_MIN
            self._seq_end = end
            need = bool(self._missing(offset, end))
            window = self._window
        if need:
            try:
                self.fetch(offset, end + window)
            except NotFound as exc:
                # the version this handle reads is gone from the bucket (deleted by
                # another client): as for a replaced one, its handle is stale
                raise FsError(errno.ESTALE, "%s: %s" % (self.key, exc)) from exc
            except FsError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return self._read_direct(offset, end)
        self.cache._touch(self)
        return os.pread(self.fd, end - offset, offset)

    def _read_direct(self, offset: int, end: int) -> bytes:
        """Serve a read the cache has no room for straight from the store."""
        with self.lock:
            miss = self._missing(offset, end)
            etag, key = self.rec.etag, self.rec.key
        buf = bytearray(os.pread(self.fd, end - offset, offset))
        buf.extend(b"\0" * (end - offset - len(buf)))
        for s, e in miss:
            data = self.cache.store.get_range(key, s, e - s, if_match=etag)
            buf[s - offset:s - offset + len(data)] = data
        return bytes(buf)

    def fetch(self, start: int, end: int) -> None:
        """Make ``[start, end)`` present (clipped to what the base version holds)."""
        with self.io_lock:
            self._fetch_locked(start, end)

    def seed(self, etag: str, data: bytes) -> None:
        """Store ``data``, the first bytes of object version ``etag`` fetched by the
        open, as present.  Does nothing if the staged file is of another version, is
        dirty or holds any of those bytes already, or if the cache has no room (the
        reads fetch them then)."""
        with self.io_lock:
            with self.lock:
                if self.fd is None or self.rec.dirty or self.rec.etag != etag:
                    return
                end = min(len(data), self.rec.size, self.rec.fetch_limit)
                if end <= 0 or self._missing(0, end) != [(0, end)]:
                    return
            try:
                with self.cache.reserve(end):
                    written = 0
                    while written < end:
                        written += os.pwrite(self.fd, data[written:end], written)
                    with self.lock:
                        self.ranges.add(0, end)
                        self._restaged_locked()
                        # not saved here: the last release records the ranges (a crash
                        # before it costs this GET again, nothing else)
            except FsError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def _fetch_locked(self, start: int, end: int) -> None:
        with self.lock:
            miss = self._missing(start, end)
            key, etag = self.rec.key, self.rec.etag
        if not miss:
            return
        # The reservation lasts until the bytes are marked present (or the fetch
        # failed): meanwhile they count as staged for every other reservation.
        with self.cache.reserve(sum(e - s for s, e in miss)):
            self.cache.downloader.fetch(key, etag, self.fd, [(s, e - s) for s, e in miss])
            with self.lock:
                for s, e in miss:
                    self.ranges.add(s, e)
                self._restaged_locked()
                self._maybe_persist(force=not self.rec.dirty)

    def _maybe_persist(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_persist >= PERSIST_INTERVAL:
            self.persist()

    def fill_step(self) -> bool:
        """Fetch the next missing chunk; False when there is nothing left to do."""
        with self.io_lock:
            if self.closing or self.fd is None:
                return False
            with self.lock:
                miss = self._missing(0, self.rec.size)
            if not miss:
                return False
            s, e = miss[0]
            dl = self.cache.downloader
            self._fetch_locked(s, min(e, s + dl.chunk_size * dl.parallel))
            return True

    # --- writing ---

    def _mark_dirty_locked(self) -> None:
        """Persist dirty=True before the first byte that makes the file differ from
        its recorded version (see the module invariants); likewise, before the first
        byte that changes a file with an interrupted upload, make that upload's
        checkpoint unusable: its parts were cut from the bytes before (the upload's
        own check, size + mtime + inode, can miss a same-size rewrite within one
        timestamp tick)."""
        if self.rec.checkpoint is not None and self.rec.checkpoint.get("fingerprint"):
            self.rec.checkpoint = dict(self.rec.checkpoint, fingerprint="")
            if self.rec.dirty:
                self.persist()
        if not self.rec.dirty:
            self.rec.dirty = True
            if self.dirty_ranges is None and self.rec.etag is not None:
                self.dirty_ranges = RangeSet()
            self.persist()

    def write(self, offset: int, data: bytes, append: bool = False) -> int:
        """Write ``data`` at ``offset`` (at the end of the file with ``append``, decided
        under the file's lock so that concurrent appenders never overlap)."""
        n = len(data)
        with self.io_lock:
            with self.lock:
                old = self.rec.size
                if append:
                    offset = old
                end = offset + n
                # disk taken: bytes past the end (not the hole before them), and bytes
                # not present or only a hole so far
                growth = max(0, end - max(old, offset)) + sum(
                    e - s for s, e in self.ranges.missing(offset, min(end, old))) \
                    + self.zeros.overlap(offset, min(end, old))
            with self.cache.reserve(growth):
                with self.lock:
                    self._mark_dirty_locked()
                written = 0
                while written < n:
                    written += os.pwrite(self.fd, data[written:], offset + written)
                with self.lock:
                    self.ranges.add(offset, end)
                    self.zeros.remove(offset, end)
                    if offset > self.rec.size:
                        self.ranges.add(self.rec.size, offset)  # the hole reads as zeros
                        self.zeros.add(self.rec.size, offset)
                    self._restaged_locked()
                    if self.dirty_ranges is not None:
                        self.dirty_ranges.add(min(offset, self.rec.size), end)
                    if self.rec.etag is not None:  # a recovery would fetch the object's bytes here
                        self._journal_locked(min(offset, self.rec.size), end)
                    self.rec.size = max(self.rec.size, end)
                    self.unsent += n
                    self._maybe_persist()
        return n

    def truncate(self, length: int) -> None:
        with self.io_lock:
            with self.lock:
                self._mark_dirty_locked()
                old = self.rec.size
                os.ftruncate(self.fd, length)
                if length < old:
                    self.ranges.clip(length)
                    self.zeros.clip(length)
                    self.rec.fetch_limit = min(self.rec.fetch_limit, length)
                else:
                    self.ranges.add(old, length)
                    self.zeros.add(old, length)
                self._restaged_locked()
                if self.dirty_ranges is not None:
                    self.dirty_ranges.add(min(old, length), max(old, length))
                self.rec.size = length
                self.persist()

    # --- uploading ---

    def upload(self) -> Optional[ObjectInfo]:
        """Upload if dirty (with the headers of :meth:`set_meta`); returns the new
        object's info, or None when clean.  On failure the file stays dirty."""
        with self.io_lock:
            with self.lock:
                if not self.rec.dirty or self.detached:
                    return None
                size = self.rec.size
            for start, end in self._bytes_to_send(size):
                self._fetch_locked(start, end)  # pinned to the base version
            with self.lock:
                rec = self.rec
                key, meta, ctype = rec.key, dict(rec.meta), rec.content_type
                checkpoint = UploadCheckpoint(**rec.checkpoint) if rec.checkpoint else None
                base = BaseObject(key, rec.etag, rec.fetch_limit) if rec.etag and self.dirty_ranges is not None \
                    else None
                dirty = [(s, e - s) for s, e in self.dirty_ranges.as_list()] if base else None
                self.uploading = True
                self.progress = (0, size)
            try:
                try:
                    info = self.cache.uploader.upload(
                        key, self.path, meta=meta, content_type=ctype, checkpoint=checkpoint,
                        on_checkpoint=self._on_checkpoint, on_progress=self._on_progress,
                        base=base, dirty_ranges=dirty)
                except PreconditionFailed:
                    if base is None:
                        raise
                    # The base object changed under us; every byte is local, send them all.
                    log.info("upload of %r: base object changed, sending the whole file", key)
                    self._fetch_locked(0, size)
                    with self.lock:
                        checkpoint = UploadCheckpoint(**self.rec.checkpoint) if self.rec.checkpoint else None
                    info = self.cache.uploader.upload(
                        key, self.path, meta=meta, content_type=ctype, checkpoint=checkpoint,
                        on_checkpoint=self._on_checkpoint, on_progress=self._on_progress)
            finally:
                with self.lock:
                    self.uploading = False
            with self.lock:
                # Headers set while the bytes were on the wire (a chmod, a utime) are not
                # in the object: the file stays dirty, with nothing written since this
                # version, so that the next upload sends them (copying the data
                # server-side where it can).  Writes cannot land meanwhile: io_lock.
                self._uploaded_locked(info.etag, size, rec.meta != meta or rec.content_type != ctype)
                if rec.key != key:  # renamed meanwhile: the object went to the old name
                    self.rec.etag = None
                    self.rec.dirty = True
                    self.dirty_ranges = None
                # self.ranges stays: parts copied server-side were never fetched, and
                # what is local equals the new version where present.
                self.persist()
                if not self.rec.dirty:
                    self._close_journal_locked(remove=True)
            return info

    def _uploaded_locked(self, etag: str, size: int, headers_changed: bool) -> None:
        """Record that object version ``etag`` holds this file's ``size`` bytes (caller
        holds io_lock and lock, and saves the record); with ``headers_changed``, not
        its headers yet, so it stays dirty with nothing written since that version."""
        self.rec.etag = etag
        self.rec.base_size = self.rec.fetch_limit = size
        self.rec.dirty = headers_changed
        self.rec.checkpoint = None
        self.unsent = 0
        self.dirty_ranges = RangeSet() if headers_changed else None

    def adopt_if_same(self, info: ObjectInfo, staged_from: Optional[str]) -> bool:
        """If the bucket's object ``info`` (a HEAD) already is this dirty file, record it
        as uploaded and return True: the file becomes clean, staged from ``info``.  That
        is what an upload that completed just before a crash (kill -9 between the
        server's answer and :meth:`persist`) leaves.  "Is" means the same size and
        CRC-64 (every byte local), the same ``x-oss-meta-*`` headers (which carry this
        file's mtime) and Content-Type.  Otherwise nothing changes and it returns
        False.  Holds io_lock throughout: no write can land between the check and the
        record.  ``staged_from``: the ETag the caller saw the file staged from before it
        asked for ``info``; a file renamed or re-based since (a ``mv`` while the caller
        waited for the server) is not the one ``info`` describes."""
        with self.io_lock:
            with self.lock:
                size = self.rec.size
                if (not self.rec.dirty or self.detached or self.rec.key != info.key
                        or self.rec.etag != staged_from or info.crc64 is None or info.size != size
                        or info.meta != self.rec.meta or info.content_type != self.rec.content_type
                        or self._missing(0, size)):
                    return False
            if crc64_of(self.path, size) != info.crc64:
                return False
            with self.lock:
                # the checkpoint: the completed upload's, or one for these same bytes
                stale = UploadCheckpoint(**self.rec.checkpoint) if self.rec.checkpoint else None
            if stale is not None:  # gone if it completed; else its parts would stay.  Aborted
                self.cache.uploader.discard(stale)  # first: a crash now retries, never leaks it
            with self.lock:
                self._uploaded_locked(info.etag, size, False)
                self.persist()
                self._close_journal_locked(remove=True)
            return True

    def _bytes_to_send(self, size: int) -> list:
        """Ranges the upload reads from the staged file: everything, except the parts a
        multipart upload copies server-side from the base object (wholly clean parts
        inside it), so that appending to a large object downloads nothing."""
        up = self.cache.uploader
        with self.lock:
            if self.rec.etag is None or self.dirty_ranges is None or size < up.multipart_threshold:
                return [(0, size)]
            limit = self.rec.fetch_limit
            out = []
            part = up.part_size_for(size)
            for start in range(0, size, part):
                end = min(start + part, size)
                if end <= limit and self.dirty_ranges.missing(start, end) == [(start, end)]:
                    continue  # copied server-side
                out.append((start, end))
            return out

    def _on_checkpoint(self, cp: UploadCheckpoint) -> None:
        with self.lock:
            self.rec.checkpoint = asdict(cp)
            self.persist()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress = (done, total)

    def forget_base(self) -> None:
        """The base object is going away (rename, unlink): make every byte local and
        treat the whole file as written, so that no upload copies from the old key."""
        with self.io_lock:
            with self.lock:
                size = self.rec.size
            self._fetch_locked(0, size)
            with self.lock:
                self._mark_dirty_locked()
                self.rec.etag = None
                self.dirty_ranges = None
                self.persist()

    def make_standalone(self) -> int:
        """Cut the file loose from the object it was staged from (recovery of a
        conflicting version): fetch what is missing while that version still exists,
        then treat every byte as written.  Bytes the bucket no longer has (the object
        was replaced or deleted since) stay as the zeros of the sparse staged file;
        returns how many, so that the caller can say so."""
        with self.io_lock:
            with self.lock:
                size = self.rec.size
            lost = 0
            try:
                self._fetch_locked(0, size)
            except (PreconditionFailed, NotFound):
                with self.lock:
                    miss = self._missing(0, size)
                    lost = sum(e - s for s, e in miss)
                    for s, e in miss:
                        self.ranges.add(s, e)
                        self.zeros.add(s, e)
                    self._restaged_locked()
            with self.lock:
                self._mark_dirty_locked()
                self.rec.etag = None
                self.dirty_ranges = None
                self.persist()
            return lost

    def close_fd(self) -> None:
        """Close the fd at unmount, whatever the handle count."""
        self.closing = True
        with self.io_lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            with self.lock:
                self._close_journal_locked()


class Cache:
    """The staged files of one mount (see the module docstring)."""

    def __init__(self, directory: str, store, *, bucket: str = "", uploader: Optional[Uploader] = None,
                 downloader: Optional[Downloader] = None, cache_size_mb: int = 10240, ensure_diskfree_mb: int = 0,
                 free_space_ratio: int = 10, del_cache: bool = False, background_fill: bool = True,
                 clock: Callable[[], float] = time.time, disk_usage=shutil.disk_usage):
        self.dir = directory
        self.store = store
        self.bucket = bucket or getattr(store, "bucket", "")
        self.uploader = uploader or Uploader(store, multipart_threshold=25 * MB, part_size=10 * MB, parallel=5)
        self.downloader = downloader or Downloader(store, parallel=5, chunk_size=DOWNLOAD_CHUNK)
        self.cache_size = cache_size_mb * MB
        self.ensure_diskfree = ensure_diskfree_mb * MB
        self.free_space_ratio = free_space_ratio
        self.del_cache = del_cache
        self.background_fill = background_fill
        self.clock = clock
        self.disk_usage = disk_usage
        self.files_dir = os.path.join(directory, "files")
        os.makedirs(self.files_dir, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        os.chmod(self.files_dir, 0o700)
        # Never evicted or culled: a lost row would be a dirty file forgotten (and a
        # set that skips the size check costs a third less CPU).
        self._index = diskcache.Cache(os.path.join(directory, "index"), eviction_policy="none", cull_limit=0)
        self._lock = threading.Lock()
        self._records: dict = {}   # GUARDED_BY(_lock): file_id -> IndexRecord (closed and open)
        self._open: dict = {}      # GUARDED_BY(_lock): key -> StagedFile registered for that key
        self._live: dict = {}      # GUARDED_BY(_lock): file_id -> StagedFile with open_count > 0
        self._dirty_ids: set = set()  # GUARDED_BY(_lock): file_ids of dirty records (fast lookups)
        self._by_key: dict = {}    # GUARDED_BY(_lock): key -> set of file_ids (INVARIANT: mirrors rec.key)
        self._budget = 0           # GUARDED_BY(_lock): bytes known to fit without checking again
        self._reserved = 0         # GUARDED_BY(_lock): bytes reserved, not yet marked present
        # Serialises the slow path of ensure_space() (see the module docstring); taken
        # before _lock, never with a StagedFile.lock held.
        self._space_lock = threading.Lock()
        self._fill_pool: Optional[ThreadPoolExecutor] = None
        self._load()
        # Staged bytes reach the disk after the index says they are present (no fsync per
        # fetch).  After a crash or power loss a clean record may describe bytes that
        # never reached the disk, so clean records of a cache not closed cleanly are
        # dropped (they are re-downloaded on demand); dirty ones are kept (best effort).
        self._in_use = os.path.join(directory, "in-use")
        if os.path.exists(self._in_use):
            log.info("cache %s was not closed cleanly: dropping its clean staged files", directory)
            self.drop_clean()
        elif del_cache:
            self.drop_clean()
        with open(self._in_use, "w"):
            pass

    @classmethod
    def from_config(cls, config, store, **kw) -> "Cache":
        """The cache a mount uses, built from the ossfs options."""
        directory = cache_dir_of(config)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        part = max(config.multipart_size * MB, 100 * 1024)
        threshold = (1 << 62) if config.nomultipart else config.multipart_threshold * MB
        uploader = Uploader(store, multipart_threshold=threshold, part_size=part, parallel=config.parallel_count)
        downloader = Downloader(store, parallel=config.parallel_count, chunk_size=DOWNLOAD_CHUNK)
        return cls(directory, store, bucket=config.bucket, uploader=uploader, downloader=downloader,
                   cache_size_mb=config.cache_size_mb, ensure_diskfree_mb=config.ensure_diskfree,
                   free_space_ratio=config.free_space_ratio, del_cache=config.del_cache, **kw)

    # --- index ---

    def _load(self) -> None:
        known = set()
        for file_id in list(self._index.iterkeys()):
            raw = self._index.get(file_id)
            if not isinstance(raw, dict):
                continue
            try:
                rec = IndexRecord(**raw)
            except TypeError:
                log.warning("dropping unreadable cache index record %s", file_id)
                self._index.delete(file_id)
                continue
            if rec.bucket != self.bucket:
                continue
            if not os.path.exists(os.path.join(self.files_dir, rec.file_id)):
                if rec.dirty:
                    log.error("staged file of dirty %r is missing from the cache", rec.key)
                self._index.delete(file_id)
                continue
            rec.open_count = 0  # no process holds it open after a restart
            if rec.dirty:
                # The record of a dirty file may lag its data by up to PERSIST_INTERVAL:
                # the file's own size is the truth, and bytes past the recorded size were
                # written (or zero-extended) by the user.
                actual = os.stat(os.path.join(self.files_dir, rec.file_id)).st_size
                if actual > rec.size:
                    _add_written(rec, [(rec.size, actual)])
                    rec.size = actual
                self._replay_journal(rec)
                # Writes into a hole of a file with no object yet are not journaled:
                # keep only the holes the file system still reports as holes.
                rec.zeros = _confirmed_holes(os.path.join(self.files_dir, rec.file_id), rec.zeros)
            self._add(rec)
            if rec.dirty:
                self._dirty_ids.add(file_id)
            known.add(file_id)
        for name in os.listdir(self.files_dir):
            if name not in known:  # staged but never indexed (crash before the first save)
                _unlink(os.path.join(self.files_dir, name))

    def _replay_journal(self, rec: IndexRecord) -> None:
        """Add the extents a crash left in the journal of dirty ``rec`` to its ranges
        (written by the user: present, and dirty), save the record, drop the journal."""
        path = os.path.join(self.files_dir, rec.file_id + JOURNAL_SUFFIX)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        extents = [(s, min(e, rec.size)) for s, e in _EXTENT.iter_unpack(data[:len(data) - len(data) % _EXTENT.size])
                   if s < min(e, rec.size)]
        if extents and rec.etag is not None:
            _add_written(rec, extents)
            log.info("recovered %d written extent(s) of %r from its journal", len(extents), rec.key)
            self._index.set(rec.file_id, asdict(rec))
        _unlink(path)

    def _save(self, rec: IndexRecord, row: Optional[dict] = None) -> None:
        self._index.set(rec.file_id, asdict(rec) if row is None else row)
        with self._lock:
            if rec.dirty and rec.file_id in self._records:
                self._dirty_ids.add(rec.file_id)
            else:
                self._dirty_ids.discard(rec.file_id)

    # Record table helpers; callers hold _lock.  _by_key mirrors rec.key of every record.

    def _add(self, rec: IndexRecord) -> None:
        self._records[rec.file_id] = rec
        self._by_key.setdefault(rec.key, set()).add(rec.file_id)

    def _drop(self, file_id: str) -> Optional[IndexRecord]:
        rec = self._records.pop(file_id, None)
        if rec is not None:
            ids = self._by_key.get(rec.key)
            if ids is not None:
                ids.discard(file_id)
                if not ids:
                    del self._by_key[rec.key]
        self._dirty_ids.discard(file_id)
        return rec

    def _set_key(self, rec: IndexRecord, key: str) -> None:
        if rec.file_id in self._records:
            self._drop(rec.file_id)
            rec.key = key
            self._add(rec)
            if rec.dirty:
                self._dirty_ids.add(rec.file_id)
        else:
            rec.key = key

    def _recs_for(self, key: str) -> list:
        return [self._records[i] for i in self._by_key.get(key, ())]

    def check_invariants(self) -> None:
        """Assert the INVARIANTs of the record tables (tests call it when quiescent)."""
        with self._lock:
            by_key = {}
            for file_id, rec in self._records.items():
                assert rec.file_id == file_id, file_id
                by_key.setdefault(rec.key, set()).add(file_id)
            assert by_key == self._by_key, (by_key, self._by_key)
            assert self._dirty_ids == {i for i, r in self._records.items() if r.dirty}
            for file_id, sf in self._live.items():
                assert sf.rec is self._records.get(file_id) and sf.rec.open_count > 0, file_id
            for key, sf in self._open.items():
                assert sf.key == key and not sf.detached and not sf.superseded, key
            live = list(self._live.values())
        for sf in live:  # StagedFile.lock comes before Cache._lock
            with sf.lock:
                assert not [m for s, e in sf.zeros.as_list() for m in sf.ranges.missing(s, e)], \
                    (sf.key, sf.zeros, sf.ranges)  # holes are present bytes
                assert sf.staged == sf.ranges.total() - sf.zeros.total(), sf.key

    def _forget(self, rec: IndexRecord) -> None:
        with self._lock:
            self._drop(rec.file_id)
        self._delete_files(rec)

    def _delete_files(self, rec: IndexRecord) -> None:
        """Delete the index row, staged file and journal of ``rec`` (no longer in the table)."""
        self._index.delete(rec.file_id)
        _unlink(os.path.join(self.files_dir, rec.file_id))
        _unlink(os.path.join(self.files_dir, rec.file_id + JOURNAL_SUFFIX))

    def dirty_entries(self) -> list:
        """Copies of the records of every dirty staged file (open or closed), e.g. left
        by a crash, for recovery and ``ossfs status``."""
        with self._lock:
            return [dataclasses.replace(r, ranges=list(r.ranges), meta=dict(r.meta))
                    for r in self._records.values() if r.dirty]

    def dirty_record(self, key: str) -> Optional[IndexRecord]:
        """The dirty record of ``key`` that is not open (unsent data of a closed file)."""
        with self._lock:
            return self._closed_dirty_locked(key)

    def _closed_dirty_locked(self, key: str, file_id: Optional[str] = None) -> Optional[IndexRecord]:
        """The dirty record of ``key`` not open (only ``file_id``, when given).  Caller holds _lock."""
        for i in self._dirty_ids:
            rec = self._records.get(i)
            if rec is not None and rec.key == key and i not in self._live and file_id in (None, i):
                return rec
        return None

    def dirty_closed(self) -> list:
        """Dirty records of files not open (their unsent data is the latest version)."""
        with self._lock:
            return [self._records[i] for i in self._dirty_ids if i in self._records and i not in self._live]

    def _touch(self, sf: StagedFile) -> None:
        sf.rec.last_use = self.clock()

    # --- open / release ---

    def _new_record(self, key: str, info: Optional[ObjectInfo]) -> IndexRecord:
        size = info.size if info else 0
        return IndexRecord(file_id=uuid.uuid4().hex, bucket=self.bucket, key=key,
                           etag=info.etag if info else None, base_size=size, size=size,
                           ranges=[] if info else [], fetch_limit=size, last_use=self.clock(),
                           content_type=info.content_type if info else "")

    def open(self, key: str, info: Optional[ObjectInfo], *, meta: Optional[dict] = None,
             content_type: Optional[str] = None, head_bytes: Optional[bytes] = None,
             fill: bool = True) -> StagedFile:
        """A staged file for ``key`` whose object is ``info`` (None: a new, empty,
        dirty file), with one more open handle.  A file already open and dirty, or at
        the same ETag, is shared; a dirty closed file left by an earlier failure or
        crash wins over the bucket (it holds the user's latest data).  ``meta`` and
        ``content_type``: the headers of a new file (``info`` None), recorded in the
        same index write as the rest of the record.  ``head_bytes``: the first bytes
        of version ``info``, already fetched (see :meth:`StagedFile.seed`).  ``fill``:
        start the background filler if this open stages the file (False for a writer
        of a large object, whose upload copies the parts it leaves alone server-side).

        ``info`` None makes a new empty file when ``key`` has no dirty one: only
        ``create`` means that.  To reach unsent data, use :meth:`open_dirty`, which
        never turns a file that was uploaded meanwhile into an empty one."""
        with self._lock:
            sf = self._open.get(key)
            # sf.rec fields are read without sf.lock here (lock order: sf.lock -> _lock).
            if sf is not None and info is not None and not sf.rec.dirty and sf.rec.etag != info.etag:
                sf.superseded = True  # its handles keep their version (see StagedFile.superseded)
                del self._open[key]
                sf = None
            if sf is None:
                rec = self._pick_record(key, info)
                sf = StagedFile(self, rec)
                self._add(rec)
                self._open[key] = sf
            first = self._hold(sf)
        return self._opened_or_release(sf, first, info is None, meta, content_type, head_bytes, info, fill)

    def open_dirty(self, key: str, file_id: Optional[str] = None) -> Optional[StagedFile]:
        """The staged file holding unsent data of ``key`` (the record ``file_id`` only,
        when given), with one more open handle; None when there is none (any more):
        uploaded and clean, dropped, or, with ``file_id``, replaced by another record.
        Checking and opening are one step under the cache lock, so a file whose upload
        finished since the caller looked is never reopened as a new, empty file."""
        with self._lock:
            sf = self._open.get(key)
            if sf is not None:
                if not sf.rec.dirty or (file_id is not None and sf.rec.file_id != file_id):
                    return None
            else:
                rec = self._closed_dirty_locked(key, file_id)
                if rec is None:
                    return None
                sf = StagedFile(self, rec)
                self._open[key] = sf
            first = self._hold(sf)
        return self._opened_or_release(sf, first, False, None, None, None, None)

    def _opened_or_release(self, sf: StagedFile, first: bool, *args) -> StagedFile:
        """:meth:`_opened`, giving the handle taken by :meth:`_hold` back if it fails
        (a cache directory that became read-only or vanished, a full disk): otherwise
        the file would stay registered as open without a descriptor, and every later
        open of the key would share that broken state until the next mount."""
        try:
            return self._opened(sf, first, *args)
        except BaseException:
            try:
                self.release(sf)
            except Exception as exc:  # noqa: BLE001 - the open's own error is the one to report
                log.warning("could not give back the failed open of %r: %s", sf.key, exc)
            raise

    def _hold(self, sf: StagedFile) -> bool:
        """One more handle on the registered ``sf``; True for the first.  Caller holds _lock."""
        self._live[sf.rec.file_id] = sf
        first = sf.rec.open_count == 0
        sf.rec.open_count += 1
        sf.rec.last_use = self.clock()
        return first

    def _opened(self, sf: StagedFile, first: bool, new_file: bool, meta: Optional[dict],
                content_type: Optional[str], head_bytes: Optional[bytes],
                info: Optional[ObjectInfo], fill: bool = True) -> StagedFile:
        """The rest of an open, outside _lock: the fd, the record (``new_file``: the
        headers of a file being created, and dirty from now on), the first bytes."""
        new = False
        if first:
            # Only the first handle opens the fd; later ones find it open (a release
            # racing with us re-checks the count before closing), so they never wait
            # behind an upload holding io_lock.
            with sf.io_lock:
                new = sf.fd is None
                sf.closing = False
                sf._open_fd()
        with sf.lock:
            if new_file:
                if meta is not None:
                    sf.rec.meta = dict(meta)
                if content_type is not None:
                    sf.rec.content_type = content_type
            if new_file and not sf.rec.dirty:
                sf._mark_dirty_locked()  # persists the record, dirty
            elif sf.rec.dirty:
                sf.persist()
            # A clean record is saved once bytes are fetched into it (fetch, seed) and
            # at the last release, not here: a crash before then leaves a staged file
            # without a row, which the next load deletes (it held nothing the bucket
            # does not).  Reading a small file costs one index write, not two.
        if head_bytes and info is not None:
            sf.seed(info.etag, head_bytes)
        if new and fill and self.background_fill and not sf.complete():
            self._start_fill(sf)
        return sf

    def _pick_record(self, key: str, info: Optional[ObjectInfo]) -> IndexRecord:
        """Caller holds _lock."""
        candidates = [r for r in self._recs_for(key) if r.open_count == 0
                      and r.file_id not in self._live]
        candidates.sort(key=lambda r: (r.dirty, r.last_use), reverse=True)
        chosen = None
        for rec in candidates:
            if chosen is None and (rec.dirty or (info is not None and rec.etag == info.etag
                                                 and rec.base_size == info.size)):
                chosen = rec
                if rec.dirty and info is not None and rec.etag not in (None, info.etag):
                    log.warning("%r changed in the bucket, but unsent local changes win", key)
            elif not rec.dirty:
                self._drop(rec.file_id)
                self._index.delete(rec.file_id)
                _unlink(os.path.join(self.files_dir, rec.file_id))
        if chosen is not None:
            return chosen
        if info is None:
            return self._new_record(key, None)
        return self._new_record(key, info)

    def is_staged(self, key: str) -> bool:
        """True if a staged file of ``key`` (open or not) exists: its bytes may be
        reusable, so opening it is better checked with a HEAD than with a GET."""
        with self._lock:
            return bool(self._by_key.get(key)) or key in self._open

    def get_open(self, key: str) -> Optional[StagedFile]:
        """The staged file registered for ``key`` with handles open, if any."""
        with self._lock:
            sf = self._open.get(key)
            return sf if sf is not None and sf.rec.open_count > 0 else None

    def open_version(self, key: str) -> Optional[StagedFile]:
        """:meth:`get_open`, else the newest older version of ``key`` still open
        (superseded, not detached): what a handle on the name may hold."""
        sf = self.get_open(key)
        if sf is not None:
            return sf
        with self._lock:
            older = [o for o in self._live.values()
                     if o.superseded and o.key == key and not o.detached and o.rec.open_count > 0]
        return older[-1] if older else None

    def superseded_open(self, key: str) -> bool:
        """True while a handle on an older version of ``key`` (superseded) is open."""
        with self._lock:
            return any(o.superseded and o.key == key and o.rec.open_count > 0 for o in self._live.values())

    def open_files(self) -> list:
        with self._lock:
            return list(self._live.values())

    def release(self, sf: StagedFile) -> int:
        """One handle fewer; at the last one the fd is closed, and a detached file
        (unlinked, or superseded by a newer version) is deleted.  Returns the count.

        The file stays registered until its fd is closed and its record saved, so an
        open() racing with the last release shares it (and keeps it open) instead of
        building a second StagedFile over the same record."""
        with self._lock:
            sf.rec.open_count -= 1
            remaining = sf.rec.open_count
        if remaining:
            return remaining
        with sf.io_lock:
            with self._lock:
                if sf.rec.open_count:
                    return sf.rec.open_count  # reopened meanwhile
            sf.closing = True
            if sf.fd is not None:
                os.close(sf.fd)
                sf.fd = None
        failure: Optional[BaseException] = None
        try:
            if not sf.detached:
                sf.persist(if_changed=True)
            with sf.lock:
                sf._close_journal_locked()
        except Exception as exc:  # noqa: BLE001 - unregistered first, raised below
            failure = exc
        with self._lock:
            reopened = sf.rec.open_count
            if not reopened:
                # closed: unregistered even when its record could not be saved, so
                # that it can be evicted and the next open starts afresh
                self._live.pop(sf.rec.file_id, None)
                if self._open.get(sf.key) is sf:
                    del self._open[sf.key]
        if failure is not None:
            raise failure
        if reopened:
            return reopened
        if sf.detached or (sf.superseded and not sf.dirty):
            self._forget(sf.rec)
        return 0

    def rekey(self, sf: StagedFile, new_key: str) -> None:
        """Point ``sf`` (open) at ``new_key`` after a rename."""
        with self._lock:
            if self._open.get(sf.key) is sf:
                del self._open[sf.key]
            old = self._open.get(new_key)
            self._set_key(sf.rec, new_key)
            self._open[new_key] = sf
        if old is not None:
            self._detach(old)
        sf.persist()

    def rekey_closed(self, old_key: str, new_key: str) -> None:
        """Closed staged files follow a rename: a dirty one fetches what it misses from
        the old object (still there) and moves to ``new_key``; clean ones are dropped."""
        with self._lock:
            clean = [r for r in self._recs_for(old_key) if r.file_id not in self._live and not r.dirty]
        for rec in clean:
            self._forget(rec)

        def move(sf: StagedFile) -> None:
            sf.forget_base()
            self.rekey(sf, new_key)

        self._each_closed_dirty(old_key, move)

    def forget_bases_closed(self, key: str) -> None:
        """Closed dirty staged files of ``key`` fetch what they miss of the object they
        were staged from (:meth:`StagedFile.forget_base`), while it still exists: a
        rename is about to delete it."""
        self._each_closed_dirty(key, StagedFile.forget_base)

    def _each_closed_dirty(self, key: str, fn: Callable[[StagedFile], None]) -> None:
        """``fn(sf)`` for each closed dirty staged file of ``key``, opened for the call."""
        with self._lock:
            recs = [r for r in self._recs_for(key) if r.file_id not in self._live and r.dirty]
        for rec in recs:
            sf = self.open_dirty(key, rec.file_id)
            if sf is None:
                continue  # uploaded (or replaced) since the list was made
            try:
                fn(sf)
            finally:
                self.release(sf)

    def discard_key(self, key: str) -> "Discard":
        """The object is being deleted (or renamed over): take its staged copies away
        from the key, and wait for an upload of one that is under way (a close, the
        background uploader), so that the caller's delete or copy has the last word.

        Open ones are detached (their handles keep working, nothing of theirs is
        uploaded); closed ones are hidden from every lookup.  Nothing is deleted yet:
        the caller ends it with :meth:`Discard.commit` once its delete or copy
        succeeded, or :meth:`Discard.undo` when it failed, which gives everything back
        to the key (unsent changes included: a failed ``rm`` or rename loses nothing).
        The caller holds no staged file's ``io_lock``."""
        with self._lock:
            sf = self._open.pop(key, None)
            recs = [r for r in self._recs_for(key) if r.file_id not in self._live]
            superseded = [o for o in self._live.values()
                          if o.superseded and o.key == key and not o.detached]
            detached = superseded + ([sf] if sf is not None else [])
            for old in detached:
                self._hold(old)  # alive until commit or undo, whatever its handles do
            for rec in recs:
                self._drop(rec.file_id)
        for old in detached:
            self._detach(old)  # from now on StagedFile.upload does nothing for it
        for old in detached:
            with old.io_lock:  # held by an upload until it ends
                pass
        return Discard(self, key, sf, detached, recs)

    def _detach(self, sf: StagedFile) -> None:
        """``sf`` (open) lost its name: its handles keep reading and writing it, but it
        is never uploaded, and its index row goes now, so that neither an unmount with
        the handles still open nor a crash brings the name back.  Its file is deleted
        at the last release (or, after a crash, by the start-up scan)."""
        with sf.lock:
            sf.detached = True
        self._index.delete(sf.rec.file_id)

    # --- background fill ---

    def _start_fill(self, sf: StagedFile) -> None:
        with self._lock:
            if self._fill_pool is None:
                self._fill_pool = ThreadPoolExecutor(2, thread_name_prefix="ossfs-fill")
            pool = self._fill_pool
        pool.submit(self._fill, sf)

    def _fill(self, sf: StagedFile) -> None:
        try:
            while sf.fill_step():
                pass
        except FsError as exc:
            log.debug("background fill of %r stopped: %s", sf.key, exc)
        except (StoreError, OSError) as exc:
            log.info("background fill of %r stopped: %s", sf.key, exc)

    # --- space ---

    def _used_locked(self) -> int:
        """Bytes staged (present ranges less holes); an open file's live range sets are
        newer than its record's.  Caller holds _lock."""
        return sum(self._live[r.file_id].staged if r.file_id in self._live else _staged_bytes(r)
                   for r in self._records.values())

    def _used(self) -> int:
        with self._lock:
            return self._used_locked()

    def _headroom(self) -> int:
        """Bytes that fit before a limit is reached (negative: over a limit), counting
        bytes reserved but not yet marked present as staged.  Staged and reserved
        bytes are read in one hold of _lock: a reservation is released only after its
        bytes are marked present, so they are counted once or twice, never zero times."""
        with self._lock:
            staged = self._used_locked() + self._reserved
            reserved = self._reserved
        room = self.cache_size - staged if self.cache_size > 0 else 1 << 62
        du = self.disk_usage(self.dir)
        floor = max(self.ensure_diskfree, du.total * self.free_space_ratio // 100, INDEX_RESERVE)
        return min(room, du.free - floor - reserved)

    @contextlib.contextmanager
    def reserve(self, need: int):
        """Room for ``need`` more bytes for the duration of the ``with`` block: the
        caller moves them and marks them present inside it (see :meth:`ensure_space`)."""
        self.ensure_space(need)
        try:
            yield
        finally:
            self.release_space(need)

    def release_space(self, need: int) -> None:
        """End a reservation of :meth:`ensure_space` (its bytes are marked present
        now, or were never written)."""
        if need <= 0:
            return
        with self._lock:
            self._reserved -= need
            assert self._reserved >= 0, self._reserved

    def ensure_space(self, need: int) -> None:
        """Reserve room for ``need`` more bytes, evicting clean closed files (LRU) if
        they do not fit; ENOSPC if they cannot be made to fit.  Every successful call
        is paired with :meth:`release_space` once the bytes are marked present (use
        :meth:`reserve`).

        The limits are checked again only when the room measured last time is used
        up (at most every BUDGET_MAX bytes), so a stream of small writes does not
        stat the disk and sum the index each time.  The check (the slow path) is
        serialised by _space_lock and empties the budget while it runs, so no
        reservation is handed out from a measurement that did not count it."""
        if need <= 0:
            return
        with self._lock:
            if need <= self._budget:
                self._budget -= need
                self._reserved += need
                return
        with self._space_lock:
            with self._lock:
                if need <= self._budget:  # made room while we waited for the slow path
                    self._budget -= need
                    self._reserved += need
                    return
                self._budget = 0
            headroom = self._headroom()
            if headroom < need:
                headroom = self._evict(need, headroom)
                if headroom < need:
                    raise FsError(errno.ENOSPC, "no room in the cache directory %s" % self.dir)
            with self._lock:
                self._reserved += need
                self._budget = min(headroom - need, BUDGET_MAX)

    def _evict(self, need: int, headroom: int) -> int:
        """Delete clean closed staged files, least recently used first, until
        ``headroom`` reaches ``need``; returns the headroom reached.  Caller holds
        _space_lock."""
        with self._lock:
            victims = sorted((r for r in self._records.values()
                              if not r.dirty and r.open_count == 0 and r.file_id not in self._live
                              and r.ranges), key=lambda r: r.last_use)
        for victim in victims:
            with self._lock:
                current = self._records.get(victim.file_id)
                if (current is not victim or victim.dirty or victim.open_count
                        or victim.file_id in self._live):
                    continue  # reopened or changed since the list was made
                self._drop(victim.file_id)
            log.debug("evicting staged %r", victim.key)
            self._index.delete(victim.file_id)
            _unlink(os.path.join(self.files_dir, victim.file_id))
            headroom += _staged_bytes(victim)
            if headroom >= need:
                break
        return headroom

    def drop_clean(self) -> None:
        """Delete every clean, closed staged file (``del_cache``)."""
        with self._lock:
            recs = [r for r in self._records.values() if not r.dirty and r.file_id not in self._live]
        for rec in recs:
            self._forget(rec)

    # --- shutdown ---

    def upload_all(self) -> list:
        """Upload every dirty closed staged file with the headers it recorded; returns
        the keys that failed (they stay dirty)."""
        failed = []
        for rec in self.dirty_entries():
            if rec.file_id in self._live:
                continue
            sf = self.open_dirty(rec.key, rec.file_id)
            if sf is None:
                continue  # uploaded (or replaced) since the list was made
            try:
                sf.upload()
            except (StoreError, OSError, FsError) as exc:
                log.error("upload of %r failed, it stays in the cache: %s", rec.key, exc)
                failed.append(rec.key)
            finally:
                self.release(sf)
        return failed

    def close(self) -> None:
        with self._lock:
            pool, self._fill_pool = self._fill_pool, None
            live = list(self._live.values())
        for sf in live:
            sf.closing = True
        if pool is not None:
            pool.shutdown(wait=True)
        for sf in live:
            sf.close_fd()
            sf.persist()
        if self.del_cache:
            self.drop_clean()
        self._index.close()
        _unlink(self._in_use)


class Discard:
    """The staged copies :meth:`Cache.discard_key` took away from ``key``: open files
    (``detached``, each held by one extra handle) and closed records (``records``,
    hidden, their rows and files still on disk).  Exactly one of :meth:`commit` and
    :meth:`undo` is called.  A crash in between leaves the closed records' rows, so the
    next mount treats them as any dirty file left behind (a conflict copy if the key
    changed meanwhile); an open file's row went at the detach, so its unsent changes
    are lost with the crash, as for an ``rm`` of an open file that succeeded."""

    def __init__(self, cache: Cache, key: str, registered: Optional[StagedFile], detached: list, records: list):
        self.cache = cache
        self.key = key
        self.registered = registered  # the file that was open under the key, if any
        self.detached = detached
        self.records = records

    def commit(self) -> None:
        """The delete or copy succeeded: the staged copies go for good."""
        for rec in self.records:
            self.cache._delete_files(rec)
        for sf in self.detached:
            self.cache.release(sf)  # the last release deletes a detached file

    def undo(self) -> None:
        """The delete or copy failed: everything goes back to the key as it was."""
        cache = self.cache
        with cache._lock:
            for rec in self.records:
                cache._add(rec)
                if rec.dirty:
                    cache._dirty_ids.add(rec.file_id)
            if self.registered is not None and self.key not in cache._open:
                cache._open[self.key] = self.registered
        for sf in self.detached:
            with sf.lock:
                sf.detached = False
            sf.persist()  # its row, deleted by the detach
            cache.release(sf)


def checkpointed_uploads(directory: str) -> set:
    """Upload ids of the multipart uploads that dirty staged files in the cache
    directory ``directory`` will resume (``ossfs --incomplete-mpu-abort`` keeps them).
    Reads the index only; creates nothing when there is no cache there."""
    index = os.path.join(directory, "index")
    if not os.path.isdir(index):
        return set()
    ids = set()
    with diskcache.Cache(index) as db:
        for file_id in list(db.iterkeys()):
            raw = db.get(file_id)
            if isinstance(raw, dict) and raw.get("dirty") and isinstance(raw.get("checkpoint"), dict):
                upload_id = raw["checkpoint"].get("upload_id")
                if upload_id:
                    ids.add(upload_id)
    return ids


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
