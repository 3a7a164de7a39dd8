"""The filesystem core: POSIX operations on paths and handles over an object store.

Owns the handle table and the rules that turn POSIX calls into object operations.
No FUSE import: ``fuse_ops.py`` calls :class:`FileSystem` one line per callback,
with fusepy's names and argument orders, and maps exceptions with
``errors.to_errno``.  Paths are mount-relative (``/a/b``); the bucket prefix is
applied inside the store.  Collaborators are built by the mount code and handed in
(``store``, ``config``, ``cache``); this module creates none of them.

Semantics (the user-visible decisions; the README's "Filesystem semantics" section
lists the same):

* **Close-to-open.**  ``open`` always asks the bucket (never the stat cache) and
  stages the version it sees: a HEAD, or for a read-only open of a file with
  nothing staged a GET of its first ``FIRST_READ`` bytes, which also serves the
  first read; ``getattr`` may answer from the stat cache for
  ``stat_cache_expire`` seconds.  A file open in this mount reports its staged
  size, mtime and attributes, whatever the bucket says.
* **Durability.**  Writes go to the staged file.  ``flush`` (called by the kernel on
  every ``close``) and ``fsync`` upload a dirty file and return only after the
  upload succeeded.  An upload that fails for a temporary reason (server down,
  5xx, timeouts, dropped connections: what the store retried ``retries`` times
  already) is tried again, whole but resuming its checkpoint, up to ``retries``
  more times after 1, 2, 4 ... 30 s (jittered), so that an outage of a minute or so
  makes ``close`` wait, not fail.  Then, or at once for a permanent failure, the
  call gives EIO and the data stays dirty in the cache (never deleted), to be sent
  by the next flush, release, the background uploader (every
  :data:`RETRY_INTERVAL` seconds, :data:`RECOVERY_PARALLEL` files at once, a pass
  ending at the first temporary failure), unmount, or the next mount.  ``release`` of the
  last handle uploads what is still dirty.
* **Recovery.**  At mount (``init``), a background thread uploads the dirty files an
  earlier run left in the cache, resuming their multipart checkpoints.  If the
  object changed in the bucket since the file was staged (another ETag, or an
  object where there was none), the local version goes to
  :func:`conflict_key` instead and a WARNING says so; the other writer's version
  stays at the key.  See ``docs/durability.md``.
* **Attributes** (chmod, chown, utimens, xattrs) of a closed or clean file: the
  object is copied onto itself with the new headers (directive REPLACE, ctime =
  now, other user headers kept).  Of a dirty file (open, or closed with its upload
  still pending): only the staged attributes change, and the upload carries them;
  a change that lands while that upload is on the wire makes the flush upload once
  more (the data copied server-side where it can) before it returns.  The
  mountpoint's attributes cannot change (EPERM).  Directories without a marker object (implicit, ``_$folder$``) get a
  ``name/`` marker carrying the new headers.
* **Directories**: ``mkdir`` writes a zero-byte ``name/`` object with Content-Type
  ``application/x-directory`` and the full headers; ``rmdir`` fails with ENOTEMPTY
  when any key lies under it and removes every directory form (``name/``,
  ``name_$folder$``, the legacy ``name``).  See ``namespace.py`` for the forms read.
* **rename** of a file: server-side copy with the same headers, then delete; an
  open file follows its new name (a dirty one is uploaded under the new name by its
  next flush).  Of a directory: every key below is copied server-side (no data
  passes through this host), then the old keys are deleted; not atomic, as in
  every object-store filesystem.  Over an existing empty directory: allowed; over a
  non-empty one: ENOTEMPTY; file over directory: EISDIR; directory over file:
  ENOTDIR; into itself: EINVAL; ``RENAME_EXCHANGE``: EINVAL; ``RENAME_NOREPLACE``
  honoured (EEXIST).
* **Not supported**: hard links (``link``: ENOTSUP, as ossfs 1.x and s3fs);
  character and block devices (``mknod``: EPERM, as for an unprivileged caller:
  device nodes in a bucket would be a way around ``nodev``).  FIFOs and sockets are
  zero-byte objects with the type in ``mode``, as s3fs writes them.
* **max_dirty_data** (MB): a file being written is uploaded once that much was written
  since its last upload (-1: only at flush), bounding what a crash can leave unsent.
* **Names**: a component longer than 255 bytes, or an object key longer than 1023
  bytes with the mount's prefix (and a directory marker's "/"), is ENAMETOOLONG.
* **statfs** reports large constant numbers (a bucket has no capacity), as s3fs.
* **xattrs** live in ``x-oss-meta-xattr``; ``-o noxattr`` makes every xattr call
  ENOTSUP; a missing name is ENODATA; ``XATTR_CREATE`` on an existing name EEXIST,
  ``XATTR_REPLACE`` on a missing one ENODATA.  The ``security.`` and ``system.``
  namespaces (SELinux labels, POSIX ACLs) are not kept: ENOTSUP
  (:data:`UNKEPT_XATTR_NAMESPACES`).
* **access** checks the mode bits like the kernel with ``default_permissions``
  (owner, else group (primary and supplementary groups of the caller), else other);
  root passes except for execute on a file without any execute bit.

Threads and locks: ``_lock`` guards ``_handles`` and ``_next_fh`` and is never held
across a store call.  Each open file's :class:`cache.StagedFile` has its own locks;
``StagedFile.attr`` is guarded by ``StagedFile.lock``.  Order, outermost first:
``FileSystem._lock`` -> ``StagedFile.io_lock`` -> ``StagedFile.lock`` ->
``Cache._lock`` (this module never holds ``_lock`` while taking the others).
Operations on one path from different threads are not serialised beyond that: two
concurrent renames of one tree race as they would on any object store.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import mimetypes
import os
import posixpath
import random
import re
import socket
import stat
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

from .cache import Cache, StagedFile
from .errors import FsError, NotFound, PreconditionFailed, StoreError, TransientError
from .meta import (DIR_CONTENT_TYPE, Attr, Defaults, attr_from_info, encode_xattrs, implicit_dir_attr,
                   meta_from_attr, shown_attr, stored_defaults)
from .metacache import MetaCache
from .namespace import (FILE, FOLDER, FOLDER_SUFFIX, IMPLICIT, LEGACY, MARKER, ROOT, Entry, Namespace,
                        dir_prefix, is_utf8, join, key_of)
from .store import ObjectInfo

log = logging.getLogger(__name__)

NS = 1_000_000_000
XATTR_CREATE = 1
XATTR_REPLACE = 2
#: Extended attribute namespaces ossfs does not keep (get, set and remove give ENOTSUP;
#: listxattr leaves them out).  The kernel enforces neither POSIX ACLs nor security
#: labels on a FUSE mount without FUSE_POSIX_ACL, so storing them would only pretend
#: they apply.  ENOTSUP, not ENODATA, is also what tells ``ls -l`` (and cp, rsync) that
#: the filesystem has none: ls then stops asking after the first entry instead of
#: making two FUSE requests per entry.  Such names already in an object's headers (s3fs
#: stores every name) are kept untouched when other attributes change.
UNKEPT_XATTR_NAMESPACES = ("security.", "system.")
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
MAX_NAME = 255
#: libfuse renames an open file that is unlinked (or renamed over) to a name of this
#: form in its directory, and unlinks that name at its last close (FileSystem._hide).
#: Symlink targets remembered (FileSystem._remember_link), and for how long (seconds):
#: as long as the kernel keeps a name (entry_timeout), so that a link another client
#: re-pointed is followed as soon as a new file would be seen.
LINK_TARGETS_KEPT = 4096
LINK_TARGET_TTL = 1.0
_HIDDEN_NAME = re.compile(r"\.fuse_hidden[0-9a-f]{16}\Z")
HIDDEN_CLOSED_KEPT = 1024


def is_hidden_name(path: str) -> bool:
    """True for the names libfuse gives open files it hides (``.fuse_hidden`` + 16 hex)."""
    return _HIDDEN_NAME.match(posixpath.basename(path)) is not None


@dataclass
class _PendingHide:
    """A hide before a rename onto ``path`` (FileSystem._hide), until that rename ends."""

    path: str
    hidden: str
    discard: object  # cache.Discard
MAX_KEY = 1023
FIRST_READ = 1 << 20       # bytes an open for reading fetches with its check (one FUSE read)
RETRY_INTERVAL = 30.0      # seconds between background retries of dirty closed files
RECOVERY_PARALLEL = 4      # dirty closed files the background uploader sends at once
OPENED_VERSIONS_MAX = 100_000  # paths whose last opened version is remembered (see _kernel_sees)
_GONE = "while this host had it staged (the version it was staged from is gone)"
MAX_PUT_SIZE = 5 << 30     # OSS: PutObject and each part up to 5 GiB
MAX_PARTS = 10_000
XATTR_HEADER_MAX = 7 * 1024  # x-oss-meta-xattr: OSS's 8 KB of user metadata, less room for the rest
HEADER_ROUNDS = 3          # uploads a flush makes when attributes change while one is on the wire
CLOSE_BACKOFF_CAP = 30.0   # longest wait between two attempts of one close's upload
_CANONICAL = ("mode", "uid", "gid", "mtime", "ctime", "atime", "xattr", "symlink-target")


def _other_headers(meta: Optional[dict]) -> dict:
    """The user metadata of ``meta`` that ossfs does not own (another tool's
    ``x-oss-meta-*``): kept as it is whenever ossfs writes the headers again."""
    return {k: v for k, v in (meta or {}).items() if k not in _CANONICAL}


@dataclass(frozen=True)
class Ctx:
    """Who asks: the FUSE request context."""

    uid: int
    gid: int
    pid: int


@dataclass
class Handle:
    path: str
    flags: int
    sf: StagedFile
    # Reads and writes bypass the kernel's page cache (FOPEN_DIRECT_IO): a handle
    # opened while an older version of the file is still open through this mount,
    # whose reads would put that version's pages into the cache both share.
    direct_io: bool = False

    @property
    def readable(self) -> bool:
        return self.flags & os.O_ACCMODE != os.O_WRONLY

    @property
    def writable(self) -> bool:
        return self.flags & os.O_ACCMODE != os.O_RDONLY


def conflict_key(key: str, when: float, host: Optional[str] = None) -> str:
    """Where a local version that conflicts with the bucket is kept:
    ``<key>.ossfs-conflict-<UTC YYYYmmddTHHMMSSZ>-<hostname>``."""
    host = host or socket.gethostname() or "localhost"
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)[:64]
    return "%s.ossfs-conflict-%s-%s" % (key, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)), host)


def _opt(config, name, default):
    value = getattr(config, name, default)
    return default if value is None else value


class FileSystem:
    """POSIX operations (see the module docstring)."""

    def __init__(self, store, config, cache: Cache, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.cache = cache
        self.clock = clock
        uid_opt, gid_opt = getattr(config, "uid", None), getattr(config, "gid", None)
        umask = _opt(config, "umask", 0)
        self.defaults = Defaults(
            uid=os.getuid() if uid_opt is None else uid_opt,
            gid=os.getgid() if gid_opt is None else gid_opt,
            file_mode=_opt(config, "default_file_mode", 0o644),
            dir_mode=_opt(config, "default_dir_mode", 0o755),
            umask=umask, force_uid=uid_opt is not None, force_gid=gid_opt is not None)
        self.stored_defaults = stored_defaults(self.defaults)  # decodes what headers hold (meta.py)
        if "mp_umask" in _opt(config, "explicit", ()):
            root_mode = 0o777 & ~_opt(config, "mp_umask", 0)
        else:
            root_mode = self.defaults.dir_mode & ~umask
        self.ns = Namespace(store, self.defaults, root_mode=root_mode,
                            stat_cache_expire=_opt(config, "stat_cache_expire", 900),
                            max_stat_cache_size=_opt(config, "max_stat_cache_size", 100000),
                            neg_cache=_opt(config, "neg_cache", True),
                            multireq_max=_opt(config, "multireq_max", 20),
                            list_max_keys=_opt(config, "list_object_max_keys", 1000), clock=clock,
                            # Attributes persist beside the staged files (namespace.py, metacache.py).
                            metacache=MetaCache(cache.dir) if getattr(cache, "dir", None) else None)
        self.xattr_enabled = bool(_opt(config, "xattr", True))
        self.symlink_in_meta = bool(_opt(config, "symlink_in_meta", False))
        # The largest object an upload can make: one PutObject, or 10,000 parts of 5 GiB.
        self.max_file_size = MAX_PUT_SIZE if _opt(config, "nomultipart", False) else MAX_PARTS * MAX_PUT_SIZE
        max_dirty = _opt(config, "max_dirty_data", 5120)
        self.max_dirty_data = max_dirty * 1024 * 1024 if max_dirty >= 0 else -1
        self._mime = mimetypes.MimeTypes()
        mime_file = _opt(config, "mime", "")
        if mime_file and os.path.isfile(mime_file):
            try:
                self._mime.read(mime_file)
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("cannot read %s: %s", mime_file, exc)
        self._lock = threading.Lock()
        self._handles: dict = {}  # GUARDED_BY(_lock): fh -> Handle
        # The ETag of the version each path was last opened at (bounded, oldest out):
        # an open that finds another one makes the kernel drop what it holds of the
        # old one (kernel_invalidate, set by the FUSE adapter; None in core tests).
        self._opened_versions: "collections.OrderedDict[str, Optional[str]]" = collections.OrderedDict()
        self.kernel_invalidate: Optional[Callable[[str], None]] = None
        self._next_fh = 1         # GUARDED_BY(_lock)
        self._pool: Optional[ThreadPoolExecutor] = None  # GUARDED_BY(_lock)
        self._destroyed = False   # GUARDED_BY(_lock)
        self.upload_retries = max(0, int(_opt(config, "retries", 5)))
        self.retry_interval = RETRY_INTERVAL
        self._bg_stop = threading.Event()
        self._bg: Optional[threading.Thread] = None
        self._unchecked: set = set()  # file_ids found dirty at init, not yet checked for conflicts (bg thread)
        # Symlink targets by key: (target, ETag, when read), the oldest dropped first;
        # GUARDED_BY(_lock).
        self._link_targets: "collections.OrderedDict[tuple, str]" = collections.OrderedDict()
        # Open files that lost their name, by the hidden path libfuse gave them
        # (:meth:`_hide`); GUARDED_BY(_lock).
        self._hidden: "dict[str, StagedFile]" = {}
        # Hidden paths whose file's last handle closed, until libfuse unlinks them
        # (never, if their directory went meanwhile: bounded); GUARDED_BY(_lock).
        self._hidden_closed: "collections.OrderedDict[str, None]" = collections.OrderedDict()
        # A hide libfuse makes before a rename onto an open file, by thread: finished
        # by that rename, which libfuse calls next in the same thread; GUARDED_BY(_lock).
        self._pending_hides: dict = {}

    # --- lifecycle ---

    def init(self) -> None:
        """The mount serves requests: start the background uploader, which first
        recovers what an earlier run left dirty (see the module docstring)."""
        dirty = self.cache.dirty_entries()
        if dirty:
            log.warning("%d file(s) with changes not yet in the bucket are in the cache (left by an earlier "
                        "run); uploading them in the background", len(dirty))
        self._unchecked = {rec.file_id for rec in dirty}
        self._bg = threading.Thread(target=self._background_uploads, name="ossfs-uploader", daemon=True)
        self._bg.start()

    def _background_uploads(self) -> None:
        delay = 0.0
        with ThreadPoolExecutor(RECOVERY_PARALLEL, thread_name_prefix="ossfs-recover") as pool:
            while not self._bg_stop.wait(delay):
                delay = self.retry_interval
                self._background_round(pool, delay)

    def _background_round(self, pool: ThreadPoolExecutor, delay: float) -> None:
        """One pass of the background uploader over the dirty closed files, up to
        :data:`RECOVERY_PARALLEL` of them at once.  The first temporary failure (the
        bucket unreachable, 5xx, timeouts: retried by the store already) ends the
        pass: the files not started yet wait for the next one, ``delay`` seconds
        later, instead of each spending its own retries against a server that is
        down.  A permanent failure of one file does not stop the others."""
        todo = list(self.cache.dirty_closed())
        running: dict = {}  # future -> key
        outage = None
        while todo or running:
            while todo and len(running) < RECOVERY_PARALLEL and outage is None and not self._bg_stop.is_set():
                rec = todo.pop(0)
                running[pool.submit(self.recover, rec.key, rec.file_id)] = rec.key
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    continue
                if not isinstance(exc, (FsError, StoreError, OSError)):
                    log.error("background upload of %r failed unexpectedly: %r", key, exc)
                    continue
                log.warning("%r is still waiting for its upload (kept in the cache, retried in %d s): %s",
                            key, delay, exc)
                if isinstance(exc, TransientError) and outage is None:
                    outage = exc
        if outage is not None and todo:
            log.warning("%d more file(s) wait for the bucket to answer again (next try in %d s)",
                        len(todo), delay)

    def recover(self, key: str, file_id: str) -> Optional[str]:
        """Upload the dirty closed staged file ``file_id`` of ``key``; a file left by an
        earlier run is first checked for a conflict with the bucket.  Returns the key it
        was uploaded to (None when skipped: the user has it open, and their close
        uploads it).  Raises on failure (it stays dirty)."""
        sf = self.cache.open_dirty(key, file_id)
        if sf is None:
            return None  # uploaded or replaced since it was listed
        try:
            with sf.lock:
                if sf.rec.open_count > 1 or not sf.rec.dirty or sf.detached:
                    return None
                staged_from = sf.rec.etag
                if sf.attr is None:  # shown with these attributes while it is sent
                    self._stage_attr(sf, self._record_attr(sf.rec), sf.rec.meta)
            target = key
            if file_id in self._unchecked:
                try:
                    current = self.store.head(key)
                except NotFound:
                    current = None
                with sf.lock:
                    moved = sf.rec.key != key or sf.rec.etag != staged_from
                if moved:
                    # renamed while the server was asked: the answer is about another
                    # object, and the rename made the file stand alone (every byte
                    # local, no base): it goes to its new key like any new file
                    target = sf.key
                elif current is not None and current.etag != staged_from:
                    if sf.adopt_if_same(current, staged_from):
                        # our own upload, completed just before the crash that left it dirty
                        log.info("%r: the bucket already holds this version; nothing to send", key)
                        self._unchecked.discard(file_id)
                        self.ns.forget("/" + key)
                        return key
                    target = self._cut_loose(sf, True, "since this host staged it (ETag %s, staged from %s)"
                                             % (current.etag, staged_from or "no object"))
                self._unchecked.discard(file_id)
            try:
                sf.upload()  # resumes its checkpoint
            except (PreconditionFailed, NotFound) as exc:
                if staged_from is None:
                    raise
                target = self._cut_loose(sf, isinstance(exc, PreconditionFailed), _GONE)
                sf.upload()
            log.info("uploaded %r, left unsent in the cache", target)
            self.ns.forget("/" + target)
            return target
        finally:
            self.cache.release(sf)

    def destroy(self) -> None:
        """Upload everything dirty (unmount, SIGTERM), then stop.  Idempotent."""
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
        self._bg_stop.set()
        if self._bg is not None:
            self._bg.join()  # an upload under way finishes (or fails) first
        for sf in self.cache.open_files():
            if sf.dirty and not sf.detached:
                try:
                    self._upload(sf)
                except FsError as exc:
                    log.error("%r could not be uploaded at unmount, it stays in the cache: %s", sf.key, exc)
        # closed dirty files go through recover(): one left by an earlier run that the
        # background uploader has not reached yet still needs its conflict check
        for rec in self.cache.dirty_closed():
            try:
                self.recover(rec.key, rec.file_id)
            except (FsError, StoreError, OSError) as exc:
                log.error("%r could not be uploaded at unmount, it stays in the cache: %s", rec.key, exc)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.ns.close()
        self.cache.close()

    # --- helpers ---

    def _now_ns(self) -> int:
        return int(self.clock() * NS)

    def _check_name(self, path: str, is_dir: bool = False) -> None:
        """ENAMETOOLONG for a component over MAX_NAME bytes or an object key (with the
        mount's prefix, and the "/" of a directory's marker) over MAX_KEY bytes;
        EILSEQ for a name that is not UTF-8 (object keys are UTF-8: the kernel hands
        such bytes over as surrogate escapes); EINVAL for a name ending in
        ``_$folder$``, which s3fs and Hadoop tools read as a directory marker."""
        key = key_of(path)
        if not is_utf8(key):
            raise FsError(errno.EILSEQ)
        if key.endswith(FOLDER_SUFFIX):
            raise FsError(errno.EINVAL)  # s3fs's directory marker: it would show as a directory
        if self._key_too_long(key + ("/" if is_dir else "")):
            raise FsError(errno.ENAMETOOLONG)
        if len(posixpath.basename(path).encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise FsError(errno.ENAMETOOLONG)

    def _key_too_long(self, key: str) -> bool:
        """True when ``key`` with the mount's prefix exceeds MAX_KEY bytes."""
        room = MAX_KEY - len(getattr(self.store, "prefix", "").encode("utf-8"))
        return len(key.encode("utf-8", "surrogateescape")) > room

    def _handle(self, fh) -> Handle:
        with self._lock:
            h = self._handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        return h

    def _new_handle(self, path: str, flags: int, sf: StagedFile, direct_io: bool = False) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = Handle(path, flags, sf, direct_io)
            return fh

    def direct_io(self, fh) -> bool:
        """Whether handle ``fh`` must bypass the kernel's page cache (see Handle)."""
        with self._lock:
            h = self._handles.get(fh)
        return h is not None and h.direct_io

    def _open_sf(self, path: str) -> Optional[StagedFile]:
        with self._lock:
            hidden = self._hidden.get(path)
        return hidden if hidden is not None else self.cache.get_open(key_of(path))

    def _attr(self, path: str) -> tuple:
        """(Attr, Entry or None) of ``path``: the staged attributes of an open file,
        else the namespace's."""
        if path != "/":
            with self._lock:
                hidden = self._hidden.get(path)
            if hidden is not None:
                with hidden.lock:
                    return self._shown_staged(hidden), None
            if any(len(c.encode("utf-8", "surrogateescape")) > MAX_NAME for c in path.split("/")):
                raise FsError(errno.ENAMETOOLONG)  # such names exist in buckets but no path reaches them
            sf = self._open_sf(path)
            if sf is not None:
                with sf.lock:
                    if sf.attr is not None:
                        return self._shown_staged(sf), None
            rec = self.cache.dirty_record(key_of(path))
            if rec is not None:
                return self._shown(self._record_attr(rec)), None
        entry = self.ns.lookup(path)
        return entry.attr, entry

    def _record_attr(self, rec) -> Attr:
        """Stored attributes (see :meth:`_stored_attr`) of a closed file whose changes
        are not in the bucket yet: its record carries the headers."""
        info = ObjectInfo(rec.key, rec.size, rec.etag or "", rec.last_use, rec.content_type, dict(rec.meta))
        return attr_from_info(info, self.stored_defaults, False)

    def _stored_attr(self, entry: Entry) -> Attr:
        """The attributes ``entry``'s headers hold: what a change of some of them (chmod,
        a rewrite's new mtime) starts from and writes back.  ``entry.attr`` is what
        ``stat`` shows, with the mount's umask and forced owners applied (meta.py)."""
        if entry.info is None or entry.info.meta is None:
            if entry.form == IMPLICIT:  # no headers: the mount's defaults, unmasked
                return implicit_dir_attr(self.defaults, entry.attr.mtime_ns)
            return replace(entry.attr, xattrs=dict(entry.attr.xattrs))
        return attr_from_info(entry.info, self.stored_defaults, entry.form != FILE)

    def _shown(self, attr: Attr) -> Attr:
        return shown_attr(attr, self.defaults)

    def _shown_staged(self, sf: StagedFile) -> Attr:
        """What ``stat`` shows for an open or unsent file (caller holds ``sf.lock``)."""
        return self._shown(replace(sf.attr, size=sf.rec.size))

    @staticmethod
    def _stage_attr(sf: StagedFile, attr: Attr, meta: Optional[dict]) -> None:
        """Set the stored attributes of staged file ``sf`` (caller holds ``sf.lock``)
        and keep the headers beyond them (another tool's ``x-oss-meta-*``) from
        ``meta``, the object's or the record's, for its uploads to carry on."""
        sf.attr = attr
        sf.meta_extra = _other_headers(meta)

    def _headers(self, other: dict, attr: Attr) -> dict:
        """The user metadata written for attributes ``attr``: the canonical headers
        over ``other`` (:func:`_other_headers`)."""
        return {**other, **meta_from_attr(attr, symlink_in_meta=self.symlink_in_meta)}

    def _exists(self, path: str) -> Optional[Attr]:
        try:
            return self._attr(path)[0]
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def _check_parent(self, path: str) -> None:
        parent = posixpath.dirname(path)
        attr, _ = self._attr(parent)
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR)

    def _check_new(self, path: str, is_dir: bool = False) -> None:
        self._check_name(path, is_dir)
        self._check_parent(path)
        if self._exists(path) is not None:
            raise FsError(errno.EEXIST)

    @staticmethod
    def _stat(attr: Attr, unlinked: bool = False) -> dict:
        """fusepy's stat dict of ``attr`` (float seconds and exact nanoseconds);
        built in one expression, as ``ls -l`` asks for one per entry.  An
        ``unlinked`` file (open, its name gone) has ``st_nlink`` 0."""
        a, m, c, size = attr.atime_ns, attr.mtime_ns, attr.ctime_ns, attr.size
        return {"st_mode": attr.mode, "st_nlink": 0 if unlinked else 2 if stat.S_ISDIR(attr.mode) else 1,
                "st_uid": attr.uid, "st_gid": attr.gid, "st_size": size,
                "st_blocks": (size + 511) // 512, "st_blksize": 4096,
                "st_atime": a / NS, "st_atime_ns": a, "st_mtime": m / NS, "st_mtime_ns": m,
                "st_ctime": c / NS, "st_ctime_ns": c}

    def _content_type(self, path: str) -> str:
        return self._mime.guess_type(posixpath.basename(path))[0] or "application/octet-stream"

    def _put_entry(self, path: str, key: str, body: bytes, attr: Attr, content_type: str, form: str) -> Entry:
        meta = meta_from_attr(attr, symlink_in_meta=self.symlink_in_meta)
        info = self.store.put(key, body, meta=meta, content_type=content_type)
        entry = self.ns.entry_from_info(path, replace(info, meta=meta, content_type=content_type), form)
        self.ns.remember(entry)
        return entry

    def _map(self, fn, items) -> list:
        """Run ``fn`` over ``items`` on a pool ``multireq_max`` wide; first error wins,
        and is raised once every call already started has ended."""
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.ns.multireq_max, thread_name_prefix="ossfs-copy")
            pool = self._pool
        futures = [pool.submit(fn, i) for i in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            # Nothing more starts after the first failure, and the call returns only
            # when nothing it started is still running: what the caller reports is
            # the state it leaves.
            for f in futures:
                f.cancel()
            wait(futures)
            raise

    # --- attributes and listings ---

    def getattr(self, path: str, fh=None) -> dict:
        if fh is None and is_hidden_name(path):
            with self._lock:
                ours = path in self._hidden
            if not ours and self.ns.cached(path) is None:
                # libfuse asking whether a hidden name is free, before it hides an
                # open file: answered without a request, so that an rm or rename of
                # an open file fails with the server's EIO (from the delete or the
                # copy), not with EBUSY when the server cannot answer the probe
                raise FsError(errno.ENOENT)
        if fh is not None:
            with self._lock:
                h = self._handles.get(fh)
            if h is not None:
                with h.sf.lock:
                    if h.sf.attr is not None:
                        return self._stat(self._shown_staged(h.sf), h.sf.detached)
        attr = self._attr(path)[0]
        with self._lock:
            hidden = self._hidden.get(path)
        return self._stat(attr, hidden is not None and hidden.detached)

    def readdir(self, path: str, fh=None) -> list:
        attr, _ = self._attr(path)
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR)
        out = {name: self._stat(entry.attr) for name, entry in self.ns.listdir(path)}
        # Files created here and not flushed yet (or whose upload failed) exist only
        # in the cache.
        prefix = dir_prefix(path)
        for rec in self.cache.dirty_closed():
            if rec.key.startswith(prefix) and "/" not in rec.key[len(prefix):]:
                out[rec.key[len(prefix):]] = self._stat(self._shown(self._record_attr(rec)))
        for sf in self.cache.open_files():
            key = sf.key
            if sf.detached or not key.startswith(prefix) or "/" in key[len(prefix):]:
                continue
            with sf.lock:
                if sf.attr is not None:
                    out[key[len(prefix):]] = self._stat(self._shown_staged(sf))
        return [(".", self._stat(attr)), ("..", None)] + sorted(out.items())

    def statfs(self, path: str) -> dict:
        blocks = 1 << 40
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": blocks, "f_bavail": blocks,
                "f_files": 1 << 32, "f_ffree": 1 << 32, "f_favail": 1 << 32, "f_namemax": MAX_NAME}

    def access(self, path: str, amode: int, ctx: Ctx) -> None:
        attr, _ = self._attr(path)
        if amode == os.F_OK:
            return
        mode = attr.mode
        if ctx.uid == 0:
            if amode & os.X_OK and not stat.S_ISDIR(mode) and not mode & 0o111:
                raise FsError(errno.EACCES)
            return
        if ctx.uid == attr.uid:
            bits = (mode >> 6) & 7
        elif attr.gid == ctx.gid or attr.gid in _groups_of(ctx.pid):
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        want = (4 if amode & os.R_OK else 0) | (2 if amode & os.W_OK else 0) | (1 if amode & os.X_OK else 0)
        if want & ~bits:
            raise FsError(errno.EACCES)

    def status(self) -> dict:
        """Dirty files and uploads under way, for ``ossfs status``."""
        open_by_id = {sf.rec.file_id: sf for sf in self.cache.open_files()}
        dirty = []
        for rec in self.cache.dirty_entries():
            sf = open_by_id.get(rec.file_id)
            uploading = bool(sf and sf.uploading)
            done, total = sf.progress if sf else (0, rec.size)
            dirty.append({"path": "/" + rec.key, "size": sf.size if sf else rec.size, "open": sf is not None,
                          "uploading": uploading, "uploaded": done if uploading else 0,
                          "total": total if uploading else rec.size})
        with self._lock:
            handles = len(self._handles)
        return {"dirty": sorted(dirty, key=lambda d: d["path"]), "open_files": len(open_by_id),
                "handles": handles}

    # --- directories ---

    def mkdir(self, path: str, mode: int, ctx: Ctx) -> None:
        self._check_new(path, is_dir=True)
        now = self._now_ns()
        attr = Attr(stat.S_IFDIR | (mode & 0o7777), ctx.uid, ctx.gid, 0, now, now, now)
        self._put_entry(path, key_of(path) + "/", b"", attr, DIR_CONTENT_TYPE, MARKER)

    def rmdir(self, path: str) -> None:
        self.store.delete_many(self._empty_dir_keys(path))
        self.ns.forget(path, missing=True)
        self._forget_implicit_parent(path)

    def _empty_dir_keys(self, path: str) -> list:
        """The keys that make up the empty directory ``path`` (its marker in every form
        s3fs and ossfs 1.x write): what ``rmdir`` deletes.  ENOTDIR when it is not a
        directory, ENOTEMPTY when it has children (in the bucket, open here, or staged
        and not sent yet)."""
        if path == "/":
            raise FsError(errno.EBUSY)
        entry = self.ns.lookup(path)
        if not entry.is_dir:
            raise FsError(errno.ENOTDIR)
        prefix = dir_prefix(path)
        if (any(sf.key.startswith(prefix) and not sf.detached for sf in self.cache.open_files())
                or any(rec.key.startswith(prefix) for rec in self.cache.dirty_closed())
                or self.ns.has_children(path)):
            raise FsError(errno.ENOTEMPTY)
        key = key_of(path)
        doomed = [key + "/", key + FOLDER_SUFFIX]
        if entry.form == LEGACY:
            doomed.append(key)
        return doomed

    # --- files ---

    def _mode_attr(self, mode: int, ctx: Ctx, size: int = 0, symlink_target: Optional[str] = None) -> Attr:
        now = self._now_ns()
        ftype = stat.S_IFMT(mode) or stat.S_IFREG
        perms = 0o777 if ftype == stat.S_IFLNK else mode & 0o7777
        return Attr(ftype | perms, ctx.uid, ctx.gid, size, now, now, now, {}, symlink_target)

    def mknod(self, path: str, mode: int, dev: int, ctx: Ctx) -> None:
        ftype = stat.S_IFMT(mode) or stat.S_IFREG
        if ftype in (stat.S_IFCHR, stat.S_IFBLK):
            raise FsError(errno.EPERM, "device nodes are not supported")
        if ftype not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK):
            raise FsError(errno.EINVAL)
        self._check_new(path)
        ctype = self._content_type(path) if ftype == stat.S_IFREG else "application/octet-stream"
        self._put_entry(path, key_of(path), b"", self._mode_attr(ftype | (mode & 0o7777), ctx), ctype, FILE)

    def symlink(self, target: str, source: str, ctx: Ctx) -> None:
        """fusepy order: ``target`` is the new link's path, ``source`` its content."""
        self._check_new(target)
        body = source.encode("utf-8", "surrogateescape")
        attr = self._mode_attr(stat.S_IFLNK, ctx, len(body), source)
        entry = self._put_entry(target, key_of(target), body, attr, "application/octet-stream", FILE)
        self._remember_link(entry, source, self.clock())

    def readlink(self, path: str) -> str:
        attr, entry = self._attr(path)
        try:
            return self._link_target(path, attr, entry)
        except (PreconditionFailed, NotFound):
            entry = self.ns.lookup(path, fresh=True)  # re-pointed or removed since cached: look again
            return self._link_target(path, entry.attr, entry)

    def _link_target(self, path: str, attr: Attr, entry: Optional[Entry]) -> str:
        if not stat.S_ISLNK(attr.mode):
            raise FsError(errno.EINVAL)
        if attr.symlink_target is not None:
            return attr.symlink_target
        if entry is None:  # an open symlink object: read its staged body
            sf = self._open_sf(path)
            return sf.read(0, sf.size).decode("utf-8", "surrogateescape")
        now = self.clock()
        with self._lock:
            known = self._link_targets.get(entry.key)
        if known is not None and known[1] == entry.etag and now - known[2] < LINK_TARGET_TTL:
            return known[0]
        body = self.store.get_range(entry.key, 0, max(entry.info.size, 1), if_match=entry.etag)
        target = body.decode("utf-8", "surrogateescape")
        self._remember_link(entry, target, now)
        return target

    def _remember_link(self, entry: Entry, target: str, now: float) -> None:
        """The target of the symlink object version ``entry`` names, read (or written)
        at ``now``: the kernel asks for it at every path walk through the link (40
        times for a loop), which would cost a GET each.  It is used for
        :data:`LINK_TARGET_TTL` seconds, as long as the stat cache shows that ETag."""
        if not entry.etag:
            return
        with self._lock:
            self._link_targets[entry.key] = (target, entry.etag, now)
            self._link_targets.move_to_end(entry.key)
            while len(self._link_targets) > LINK_TARGETS_KEPT:
                self._link_targets.popitem(last=False)

    def link(self, target: str, source: str) -> None:
        raise FsError(errno.ENOTSUP, "hard links are not supported")

    def create(self, path: str, mode: int, flags: int, ctx: Ctx) -> int:
        self._check_name(path)
        self._check_parent(path)
        existing = self._exists(path)
        if existing is not None:
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            if stat.S_ISDIR(existing.mode):
                raise FsError(errno.EISDIR)
            return self.open(path, flags, ctx)
        attr = self._mode_attr(stat.S_IFREG | (mode & 0o7777), ctx)
        meta, ctype = meta_from_attr(attr), self._content_type(path)
        sf = self.cache.open(key_of(path), None, meta=meta, content_type=ctype)
        try:
            if sf.size:
                sf.truncate(0)  # a stale staged copy of a name that no longer exists
            with sf.lock:
                self._stage_attr(sf, attr, None)
        except BaseException:
            self.cache.release(sf)
            raise
        self.ns.forget(path)
        return self._new_handle(path, flags, sf)

    def open(self, path: str, flags: int, ctx: Ctx) -> int:
        path = self._unhidden(path)
        key = key_of(path)
        sf = self.cache.open_dirty(key)  # our own unsent data is the latest version
        if sf is not None:
            entry = None
            with sf.lock:
                if sf.attr is None:
                    self._stage_attr(sf, self._record_attr(sf.rec), sf.rec.meta)
        else:
            # Close-to-open: always ask the bucket.  A file opened for reading with
            # nothing staged is asked with a GET of its first bytes (one request for
            # the check and the first read, which a small file fits whole).
            first = None
            before = self.ns.cached(path)  # what the kernel's last lookup was told
            if flags & os.O_ACCMODE == os.O_RDONLY and not self.cache.is_staged(key):
                entry, first = self.ns.lookup_reading(path, FIRST_READ)
            else:
                entry = self.ns.lookup(path, fresh=True)
            if entry.is_dir:
                raise FsError(errno.EISDIR)
            # A writer of a large object (appending to a log) needs none of its bytes
            # staged: the upload copies untouched parts server-side.  Readers and
            # writers of smaller files get the whole file fetched in the background.
            writer_only = (flags & os.O_ACCMODE == os.O_WRONLY and entry.info is not None
                           and entry.info.size >= self.cache.uploader.multipart_threshold)
            sf = self.cache.open(key, entry.info, head_bytes=first, fill=not writer_only)
            self._kernel_sees(path, entry, before)
        try:
            with sf.lock:
                if sf.attr is None:
                    if entry is None:
                        entry = self.ns.lookup(path)
                    self._stage_attr(sf, self._stored_attr(entry), entry.info.meta if entry.info else None)
                    sf.rec.content_type = sf.rec.content_type or entry.content_type
            if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY and sf.size:
                self._truncate_sf(sf, 0)
        except BaseException:
            self.cache.release(sf)
            raise
        return self._new_handle(path, flags, sf, direct_io=self.cache.superseded_open(key))

    def _kernel_sees(self, path: str, entry: Entry, before: Optional[Entry]) -> None:
        """Close-to-open for the kernel's own caches.  The lookup that came before this
        open may have been answered from the stat cache, and the page cache may hold an
        earlier version: if the version just found differs from the one this path was
        last opened at, or from the one that lookup reported, the kernel forgets the
        file's attributes (a stale size would cut reads short) and pages (a
        replacement of the same size within the same second would be invisible)."""
        etag = entry.info.etag if entry.info is not None else None
        prev = self._note_opened_version(path, etag)
        told = before.info.etag if before is not None and before.info is not None else None
        if (prev is not None and prev != etag) or (told is not None and told != etag):
            self._invalidate_kernel(path)

    def _note_opened_version(self, path: str, etag: Optional[str]) -> Optional[str]:
        """Remember ``etag`` as the version of ``path`` the kernel holds; returns the one before."""
        with self._lock:
            prev = self._opened_versions.pop(path, None)
            self._opened_versions[path] = etag
            if len(self._opened_versions) > OPENED_VERSIONS_MAX:
                self._opened_versions.popitem(last=False)
        return prev

    def _invalidate_kernel(self, path: str) -> None:
        """kernel_invalidate, best effort: a failure costs freshness, never the call."""
        if self.kernel_invalidate is None:
            return
        try:
            self.kernel_invalidate(path)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not make the kernel drop its cache of %s: %s", path, exc)

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        h = self._handle(fh)
        if not h.readable:
            raise FsError(errno.EBADF)
        return h.sf.read(offset, size)

    def write(self, path: str, data: bytes, offset: int, fh) -> int:
        h = self._handle(fh)
        if not h.writable:
            raise FsError(errno.EBADF)
        sf = h.sf
        self._check_size(max(offset, sf.size if h.flags & os.O_APPEND else 0) + len(data))
        # the kernel already placed an O_APPEND write at its end of file (under the inode
        # lock); page-cache writeback of a shared mapping arrives on such a handle too
        n = sf.write(offset, data)
        now = self._now_ns()
        with sf.lock:
            sf.attr = replace(sf.attr, mtime_ns=now, ctime_ns=now)
            over = 0 <= self.max_dirty_data < sf.unsent
        if over:
            # Bound what a crash or a failed close can leave unsent; the next upload copies
            # the parts sent now server-side, so a long sequential write is not sent twice.
            try:
                self._upload(sf)
            except FsError as exc:  # the bytes are written: the flush reports the upload
                log.warning("early upload of %r failed, the next flush tries again: %s", sf.key, exc)
        return n

    def _truncate_sf(self, sf: StagedFile, length: int) -> None:
        sf.truncate(length)
        now = self._now_ns()
        with sf.lock:
            sf.attr = replace(sf.attr, mtime_ns=now, ctime_ns=now)

    def truncate(self, path: str, length: int, fh=None) -> None:
        if length < 0:
            raise FsError(errno.EINVAL)
        self._check_size(length)
        if fh is not None:
            h = self._handle(fh)
            if not h.writable:
                raise FsError(errno.EBADF)
            self._truncate_sf(h.sf, length)
            return
        sf = self._open_sf(path)
        if sf is not None:
            self._truncate_sf(sf, length)
            return
        fh = self.open(path, os.O_WRONLY, Ctx(0, 0, 0))
        try:
            self._truncate_sf(self._handle(fh).sf, length)
            self.flush(path, fh)
        finally:
            self.release(path, fh)

    def _check_size(self, size: int) -> None:
        """EFBIG for a file size no upload could store (see ``max_file_size``)."""
        if size > self.max_file_size:
            raise FsError(errno.EFBIG, "objects are limited to %d bytes" % self.max_file_size)

    def _settle_hides(self, sf: StagedFile) -> None:
        """A hide before a rename that never came (a program renamed an open file
        to a name of libfuse's hidden form itself): the file gets its name back
        before a flush or close of it could leave its changes unsent."""
        with self._lock:
            if not self._pending_hides:
                return
            mine = [t for t, p in self._pending_hides.items() if sf in p.discard.detached]
            stale = [self._pending_hides.pop(t) for t in mine]
        for pending in stale:
            log.warning("%s: a rename to %s was not libfuse's; the file keeps its name",
                        pending.path, pending.hidden)
            self._undo_hide(pending)

    def _upload(self, sf: StagedFile) -> None:
        """Upload ``sf`` if dirty; EIO on failure (the data stays dirty in the cache).

        Attributes changed while the bytes were on the wire leave the file dirty
        (:meth:`StagedFile.upload`); they are sent before this returns, a bounded
        number of times (a file whose attributes never stop changing is left to the
        next flush or the background uploader)."""
        self._settle_hides(sf)
        for _ in range(HEADER_ROUNDS):
            if not self._upload_once(sf):
                break
        with sf.lock:
            etag, clean, key = sf.rec.etag, not sf.rec.dirty, sf.rec.key
        if clean and etag is not None:
            # what the kernel's pages hold is this mount's own upload: still valid
            self._note_opened_version("/" + key, etag)

    def _upload_once(self, sf: StagedFile) -> bool:
        """One upload of ``sf`` if dirty; True if one was made."""
        with sf.lock:
            if not sf.rec.dirty or sf.detached or sf.attr is None:
                return False
            meta = self._headers(sf.meta_extra, replace(sf.attr, size=sf.rec.size))
            ctype = sf.rec.content_type or self._content_type(sf.key)
        sf.set_meta(meta, content_type=ctype)
        attempt = 0
        origin, moved = sf.key, None
        while True:
            try:
                info = sf.upload()
                break
            except (PreconditionFailed, NotFound) as exc:
                if exc.code == "NoSuchUpload" and attempt < self.upload_retries:
                    # the multipart upload was aborted on the server meanwhile (an
                    # --incomplete-mpu-abort, a lifecycle rule): start a new one
                    attempt += 1
                    log.warning("upload of %r: the server no longer has its multipart upload; starting over "
                                "(%d/%d)", sf.key, attempt, self.upload_retries)
                    with sf.lock:
                        sf.rec.checkpoint = None
                        sf.persist()
                    continue
                with sf.lock:
                    based = sf.rec.etag is not None
                if not based or moved is not None:
                    failure = exc
                else:
                    # Bytes of the version this file was staged from are needed and that
                    # version is gone: no later attempt could succeed as it is.
                    moved = self._cut_loose(sf, isinstance(exc, PreconditionFailed), _GONE)
                    continue
            except TransientError as exc:
                if attempt >= self.upload_retries:
                    failure = exc
                else:
                    delay = min(CLOSE_BACKOFF_CAP, 2.0 ** attempt) * random.uniform(0.5, 1.0)
                    attempt += 1
                    log.warning("upload of %r failed (%s); trying again in %.1f s (%d/%d)",
                                sf.key, exc, delay, attempt, self.upload_retries)
                    time.sleep(delay)
                    continue
            except (StoreError, OSError) as exc:
                failure = exc
            log.error("upload of %r failed; the data stays in the cache and is sent again at the next "
                      "flush, by the background uploader or at unmount: %s", sf.key, failure)
            raise FsError(errno.EIO, "upload of %s failed" % sf.key) from failure
        if info is None:
            return False
        path = "/" + sf.key
        self.ns.remember(self.ns.entry_from_info(path, replace(info, meta=meta, content_type=ctype), FILE))
        if moved is not None:
            raise FsError(errno.EIO, "%s: the version it was edited from is gone from the bucket; the local "
                                     "version was uploaded as %s" % (origin, moved))
        return True

    def _cut_loose(self, sf: StagedFile, replaced: bool, why: str) -> str:
        """Make the local version of ``sf`` stand alone (see durability.md, Conflicts):
        bytes of the version it was staged from that are still missing and that the
        bucket no longer has become zeros (with a WARNING).  If another client replaced
        the object, the local version moves to :func:`conflict_key` and the bucket's
        version stays; if it deleted it, the local version stays at its key.  Returns
        the key the local version will be uploaded to."""
        key = sf.key
        target = conflict_key(key, self.clock()) if replaced else key
        if replaced:
            log.warning("%r changed in the bucket %s; the bucket's version stays, the local one is kept as %r",
                        key, why, target)
        lost = sf.make_standalone()
        if lost:
            log.warning("%r: %d bytes of the local version were never staged and the bucket no "
                        "longer has them; they are zeros in %r", key, lost, target)
        if target != key:
            self.cache.rekey(sf, target)
            self.ns.forget("/" + key)  # what this host remembers of the key is stale
        return target

    def flush(self, path: str, fh) -> None:
        self._upload(self._handle(fh).sf)

    def fsync(self, path: str, datasync, fh) -> None:
        self._upload(self._handle(fh).sf)

    def release(self, path: str, fh) -> None:
        with self._lock:
            h = self._handles.pop(fh, None)
        if h is None:
            raise FsError(errno.EBADF)
        sf = h.sf
        last = False
        self._settle_hides(sf)
        try:
            with sf.lock:
                last = sf.rec.open_count == 1
            if last and sf.dirty and not sf.detached:
                self._upload(sf)
        except FsError as exc:
            log.error("%s is kept in the cache with its unsent changes: %s", path, exc)
        finally:
            if sf.superseded and last:
                # The pages this older version's handles read must not serve later
                # opens; dropped *before* the release, because an open that no longer
                # finds this version open gets no direct_io and reads the page cache.
                self._invalidate_kernel(h.path)
            remaining = self.cache.release(sf)
            if last:
                self._forget_hidden(sf)
        if sf.superseded and not remaining and not last:
            self._invalidate_kernel(h.path)  # two last handles closed at once

    def unlink(self, path: str) -> None:
        with self._lock:
            if self._hidden.pop(path, None) is not None:
                return  # libfuse, after the last close of a file hidden by _hide
            if path in self._hidden_closed:
                del self._hidden_closed[path]
                return
        attr, entry = self._attr(path)
        if stat.S_ISDIR(attr.mode):
            raise FsError(errno.EISDIR)
        key = key_of(path)
        discard = self.cache.discard_key(key)  # first: an upload of it cannot land after the delete
        try:
            if entry is None or entry.info is not None:
                self.store.delete(key)
        except BaseException:
            discard.undo()  # rm failed: the file, unsent changes included, is still there
            raise
        discard.commit()
        self.ns.forget(path, missing=True)
        self._forget_implicit_parent(path)

    def _hide(self, path: str, hidden: str, sf: StagedFile, before_rename: bool = False) -> None:
        """libfuse's way of unlinking an open file (or renaming over one): it renames
        it to ``hidden`` (``.fuse_hidden...`` in the same directory), keeps using that
        path for the handles' calls that come without a handle (``fstat`` and
        ``fchmod`` of an unlinked file) and unlinks it after the last close.  The
        staged file stays reachable by ``hidden``, in memory only: never uploaded,
        never listed, never in the bucket; its attributes are those it had, with
        ``st_nlink`` 0.

        For an unlink, the object is deleted at once, exactly as :meth:`unlink`.
        ``before_rename`` (a rename onto ``path`` comes next, in this thread): the
        object is left for that rename's copy to replace, so that other clients never
        see the name missing, and a rename that fails leaves the target as it was
        (:meth:`_undo_hide`)."""
        attr, entry = self._attr(path)
        with sf.lock:
            if sf.attr is None:
                stored = self._stored_attr(entry) if entry is not None else attr
                self._stage_attr(sf, stored, entry.info.meta if entry is not None and entry.info else None)
        if before_rename:
            discard = self.cache.discard_key(key_of(path))  # nothing of it is uploaded any more
            with self._lock:
                self._hidden[hidden] = sf
                stale = self._pending_hides.pop(threading.get_ident(), None)
                self._pending_hides[threading.get_ident()] = _PendingHide(path, hidden, discard)
            if stale is not None:
                self._undo_hide(stale)
            return
        self.unlink(path)
        with self._lock:
            self._hidden[hidden] = sf

    def _undo_hide(self, pending: "_PendingHide") -> None:
        """A hide before a rename whose rename failed (or never came): the file gets
        its name back, unsent changes included.  libfuse keeps calling it by the
        hidden path until its last close, so that path stays too."""
        pending.discard.undo()

    def _unhidden(self, path: str) -> str:
        """The name of a hidden file that got it back (:meth:`_undo_hide`): libfuse
        goes on calling it by the hidden path, also for what the kernel asks of the
        name (an open, a chmod), until the kernel looks the name up again."""
        with self._lock:
            sf = self._hidden.get(path)
        return path if sf is None or sf.detached else "/" + sf.key

    def _forget_hidden(self, sf: StagedFile) -> None:
        """``sf``'s last handle closed: its hidden paths go (libfuse unlinks them next,
        or never when their directory was removed meanwhile)."""
        with self._lock:
            for path in [p for p, hidden in self._hidden.items() if hidden is sf]:
                del self._hidden[path]
                self._hidden_closed[path] = None
            while len(self._hidden_closed) > HIDDEN_CLOSED_KEPT:
                self._hidden_closed.popitem(last=False)

    def _forget_implicit_parent(self, path: str) -> None:
        """A directory without an object vanishes with its last child, and so may its
        own implicit parent, up the tree: do not let the stat cache keep showing them."""
        parent = posixpath.dirname(path)
        for _ in range(path.count("/")):  # bounded by the depth
            if parent == "/":
                return
            cached = self.ns.cached(parent)
            if cached is None or cached.form != IMPLICIT:
                return
            self.ns.forget(parent)
            parent = posixpath.dirname(parent)

    # --- rename ---

    def rename(self, old: str, new: str, flags: int = 0, caller_renaming: bool = False) -> None:
        """``caller_renaming``: the process asking is inside rename(2) itself (the FUSE
        adapter finds out); a rename of an open file to a libfuse hidden name is then
        libfuse making room for that rename (see :meth:`_hide`)."""
        if flags & RENAME_EXCHANGE or flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise FsError(errno.EINVAL)
        if old == "/" or new == "/":
            raise FsError(errno.EBUSY)
        if not flags and is_hidden_name(new):
            sf = self.cache.open_version(key_of(old))
            if sf is not None:
                self._hide(old, new, sf, caller_renaming)
                return
        with self._lock:
            pending = self._pending_hides.pop(threading.get_ident(), None)
        if pending is not None and pending.path != new:
            self._undo_hide(pending)  # not this rename's: libfuse gave up on its rename
            pending = None
        try:
            self._rename(old, new, flags)
        except BaseException:
            if pending is not None:
                self._undo_hide(pending)  # the open target keeps its name and object
            raise
        if pending is not None:
            pending.discard.commit()  # the target's object was replaced by the copy

    def _rename(self, old: str, new: str, flags: int) -> None:
        src, src_entry = self._attr(old)
        self._check_name(new, stat.S_ISDIR(src.mode))
        self._check_parent(new)
        if old == new:
            return
        src_dir = stat.S_ISDIR(src.mode)
        if src_dir and new.startswith(old + "/"):
            raise FsError(errno.EINVAL)
        replaced = []
        dst = self._exists(new)
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise FsError(errno.EEXIST)
            if stat.S_ISDIR(dst.mode):
                if not src_dir:
                    raise FsError(errno.EISDIR)
                # ENOTEMPTY when it has children; its markers go once the tree is
                # copied, so that a rename failing part way leaves it in place
                replaced = self._empty_dir_keys(new)
            elif src_dir:
                raise FsError(errno.ENOTDIR)
        done = False
        try:
            if src_dir:
                self._rename_dir(old, new, src_entry, replaced)
                with self._lock:  # libfuse moves the hidden files below with their directory
                    for hidden in [p for p in self._hidden if p.startswith(old + "/")]:
                        self._hidden[new + hidden[len(old):]] = self._hidden.pop(hidden)
            else:
                self._rename_file(old, new, src_entry)
            done = True
        finally:
            # After a failure part way (some objects copied, others deleted), both
            # names are looked up again: the destination's "missing" entry above all,
            # which would let the next rename merge into a tree that exists by now.
            self.ns.forget_tree(old)
            self.ns.forget(old, missing=done)
            self.ns.forget_tree(new)
            if not done:
                self.ns.forget(new)
        self._forget_implicit_parent(old)

    def _rename_file(self, old: str, new: str, entry: Optional[Entry] = None) -> None:
        okey, nkey = key_of(old), key_of(new)
        discard = self.cache.discard_key(nkey)  # the replaced file's staged copies; first, as for unlink
        sf = self.cache.get_open(okey)
        info = None
        try:
            if sf is None or not sf.dirty:
                try:
                    info = self.store.copy(okey, nkey, meta=None, source=_known(entry, okey))
                except NotFound:
                    if sf is None and self.cache.dirty_record(okey) is None:
                        raise FsError(errno.ENOENT)
            # dirty copies of the source fetch what they miss while the old object
            # exists (the last step that needs the bucket before the point of no return)
            if sf is not None and sf.dirty:
                sf.forget_base()
            self.cache.forget_bases_closed(okey)
        except BaseException:
            discard.undo()  # nothing was renamed: the replaced file keeps its unsent changes
            raise
        discard.commit()
        if sf is not None:
            if info is not None and not sf.dirty:
                with sf.lock:
                    sf.rec.etag = info.etag
            self.cache.rekey(sf, nkey)
        self.cache.rekey_closed(okey, nkey)
        self.store.delete(okey)

    def _rename_dir(self, old: str, new: str, entry: Optional[Entry], replaced: Iterable[str] = ()) -> None:
        """Copy every object of the tree ``old`` to ``new``, then delete the old keys and
        ``replaced`` (the markers of the empty directory ``new`` replaces) except those
        the copies wrote."""
        oprefix, nprefix = dir_prefix(old), dir_prefix(new)
        okey, nkey = key_of(old), key_of(new)
        objects = self.ns.walk_keys(old)
        pairs = [(o.key, nprefix + o.key[len(oprefix):], o) for o in objects]
        doomed = []
        if entry is not None and entry.form == LEGACY:
            pairs.append((okey, nkey, None))
        elif entry is not None and entry.form == FOLDER:
            pairs.append((okey + FOLDER_SUFFIX, nkey + FOLDER_SUFFIX, None))
        else:
            # an s3fs/Hadoop "name_$folder$" beside a directory that also has children
            # or a "name/" marker: it names the old directory and goes with it
            doomed.append(okey + FOLDER_SUFFIX)
        # every new key must fit, not only the directory's own: refuse before copying
        if any(self._key_too_long(dst) for _, dst, _ in pairs):
            raise FsError(errno.ENAMETOOLONG)
        # Open files below follow the rename; dirty ones first fetch what they miss.
        moving = [sf for sf in self.cache.open_files() if sf.key.startswith(oprefix) and not sf.detached]
        for sf in moving:
            if sf.dirty:
                sf.forget_base()
        # the LIST told each object's ETag and size: no HEAD before its copy
        copied = dict(self._map(lambda p: (p[0], self.store.copy(p[0], p[1], meta=None, source=p[2])), pairs))
        for sf in moving:
            new_key = nprefix + sf.key[len(oprefix):]
            info = copied.get(sf.key)
            if info is not None and not sf.dirty:
                with sf.lock:
                    sf.rec.etag = info.etag
            self.cache.rekey(sf, new_key)
        for src_key, dst_key, _ in pairs:
            self.cache.rekey_closed(src_key, dst_key)
        for rec in self.cache.dirty_entries():
            if rec.key.startswith(oprefix):
                self.cache.rekey_closed(rec.key, nprefix + rec.key[len(oprefix):])
        written = {dst for _, dst, _ in pairs}
        self.store.delete_many([src for src, _, _ in pairs] + doomed + [k for k in replaced if k not in written])

    # --- attributes ---

    def _update_attr(self, path: str, change: Callable[[Attr], Attr]) -> None:
        """Apply ``change`` to the attributes of ``path`` (module docstring: Attributes)."""
        if path == "/":
            raise FsError(errno.EPERM, "the mountpoint's attributes cannot change")
        now = self._now_ns()
        path = self._unhidden(path)
        key = key_of(path)
        with self._lock:
            hidden = self._hidden.get(path)
        if hidden is not None:
            with hidden.lock:  # never uploaded: what its handles' fstat shows
                hidden.attr = replace(change(hidden.attr), ctime_ns=now)
            return
        sf = self._open_sf(path)
        if sf is not None and self._update_staged(sf, change, now):
            return
        if sf is None:
            closed = self.cache.open_dirty(key)  # unsent data of a closed file: its record carries the headers
            if closed is not None:
                try:
                    if self._update_staged(closed, change, now):
                        return
                finally:
                    self.cache.release(closed)
        for attempt in (0, 1):
            # Headers are read, changed and written back whole; the copy is pinned to
            # the ETag, which another client's change of headers alone keeps: ask the
            # bucket unless this entry was learnt just now.
            entry = self.ns.lookup(path, fresh=True) if attempt else self.ns.lookup_recent(path)
            attr = replace(change(self._stored_attr(entry)), ctime_ns=now)
            meta = self._headers(_other_headers(entry.info.meta if entry.info else None), attr)
            try:
                if entry.form in (IMPLICIT, FOLDER):
                    key, ctype = key_of(path) + "/", DIR_CONTENT_TYPE
                    info = self.store.put(key, b"", meta=meta, content_type=ctype)
                    form = MARKER
                else:
                    key, ctype, form = entry.key, entry.content_type, entry.form
                    info = self.store.copy(key, key, meta=meta, content_type=ctype, if_match=entry.etag,
                                           source=_known(entry, key))
            except (PreconditionFailed, NotFound):
                if attempt:
                    raise
                continue  # changed or gone since cached: look again
            new_entry = self.ns.entry_from_info(path, replace(info, meta=meta, content_type=ctype), form)
            self.ns.remember(new_entry)
            if sf is not None:
                with sf.lock:
                    self._stage_attr(sf, attr, meta)
                    if sf.rec.etag == entry.etag:
                        sf.rec.etag = info.etag
            return

    def _update_staged(self, sf: StagedFile, change: Callable[[Attr], Attr], now: int) -> bool:
        """New attributes of a file whose data is not in the bucket yet: the upload carries
        them.  False (nothing changed) if the file is clean by now: the caller changes
        the object instead.  Checked and recorded under the file's lock, the lock in
        which an upload ends, so a change is either seen by that upload's end (which
        then leaves the file dirty) or finds the file clean."""
        with sf.lock:
            if not sf.rec.dirty or sf.detached:
                return False
            if sf.attr is None:
                self._stage_attr(sf, self._record_attr(sf.rec), sf.rec.meta)
            sf.attr = replace(change(sf.attr), ctime_ns=now)
            sf.set_meta(self._headers(sf.meta_extra, replace(sf.attr, size=sf.rec.size)))
        return True

    def chmod(self, path: str, mode: int, ctx: Optional[Ctx] = None) -> None:
        self._update_attr(path, lambda a: replace(a, mode=stat.S_IFMT(a.mode) | (mode & 0o7777)))

    def chown(self, path: str, uid: int, gid: int, ctx: Optional[Ctx] = None) -> None:
        def change(a: Attr) -> Attr:
            return replace(a, uid=a.uid if uid in (-1, 0xFFFFFFFF) else uid,
                           gid=a.gid if gid in (-1, 0xFFFFFFFF) else gid)
        self._update_attr(path, change)

    def utimens(self, path: str, times_ns=None) -> None:
        if times_ns is None:
            now = self._now_ns()
            times_ns = (now, now)
        atime, mtime = (int(t) for t in times_ns)
        self._update_attr(path, lambda a: replace(a, atime_ns=atime, mtime_ns=mtime))

    # --- xattrs ---

    def _xattrs(self, path: str, name: Optional[str] = None) -> dict:
        if not self.xattr_enabled or (name is not None and name.startswith(UNKEPT_XATTR_NAMESPACES)):
            raise FsError(errno.ENOTSUP)
        return self._attr(path)[0].xattrs

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        value = self._xattrs(path, name).get(name)
        if value is None:
            raise FsError(errno.ENODATA)
        return bytes(value)

    def listxattr(self, path: str) -> list:
        return sorted(n for n in self._xattrs(path) if not n.startswith(UNKEPT_XATTR_NAMESPACES))

    def setxattr(self, path: str, name: str, value: bytes, flags: int = 0, position: int = 0) -> None:
        current = self._xattrs(path, name)
        if flags & XATTR_CREATE and name in current:
            raise FsError(errno.EEXIST)
        if flags & XATTR_REPLACE and name not in current:
            raise FsError(errno.ENODATA)
        if len(encode_xattrs({**current, name: bytes(value)}) or "") > XATTR_HEADER_MAX:
            # OSS keeps at most 8 KB of user metadata per object, the other headers included
            raise FsError(errno.E2BIG, "the xattrs of %s would not fit in the object's headers" % path)
        self._update_attr(path, lambda a: replace(a, xattrs={**a.xattrs, name: bytes(value)}))

    def removexattr(self, path: str, name: str) -> None:
        if name not in self._xattrs(path, name):
            raise FsError(errno.ENODATA)
        self._update_attr(path, lambda a: replace(a, xattrs={k: v for k, v in a.xattrs.items() if k != name}))


def _known(entry: Optional[Entry], key: str) -> Optional[ObjectInfo]:
    """What the stat cache knows of the object at ``key`` (for ``store.copy(source=)``)."""
    if entry is None or entry.info is None or entry.info.key != key or not entry.info.etag:
        return None
    return entry.info


def _groups_of(pid: int) -> set:
    """Supplementary groups of process ``pid`` (empty when unknown)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()
