"""Uploads and downloads of staged files: multipart with checkpoints, ranged parallel GETs.

This module owns the data path between a staged file on local disk (owned by
``cache.py``) and an object, through any :class:`ossfs.store.ObjectStore`.  It never
imports oss2 and holds no state between calls except its thread pool.

Uploading
---------
A staged file smaller than ``multipart_threshold`` goes up as one PUT, streamed from
the file (the store reads it twice: once for Content-MD5, once to send it).  A larger
one becomes a multipart upload of ``part_size`` parts:

1. **Initiate, or resume.**  Given an :class:`UploadCheckpoint` for the same key, the
   same part size and the same content version (``fingerprint``), the upload is
   resumed if the server still knows it: ``list_parts`` is asked, and every part the
   checkpoint records with the same ETag and size is kept and not sent again.  A part
   the server holds but the checkpoint does not (the process died between the
   server's answer and the checkpoint) is kept too when its ETag is the MD5 of the
   local bytes it covers (its CRC64 is then computed locally), so a crash never costs
   more than the parts that were really in flight.  A
   checkpoint that no longer matches (the file changed since) is aborted on the
   server, best effort, and a new upload is initiated.  ``on_checkpoint(cp)`` is
   called right after initiate so that the caller can persist the upload id before
   any byte is sent; an upload id is never lost, even if the process dies.
2. **Parts.**  Part *n* covers bytes ``[(n-1)*part_size, n*part_size)``.  At most
   ``parallel`` parts are in flight for one upload; a worker reads its own part with
   ``os.pread`` (so memory is bounded by ``parallel * part_size``, never the file),
   and the store sends it with Content-MD5 and checks its CRC64.  After each part the
   server acknowledges, the checkpoint is updated and ``on_checkpoint`` is called
   (serialised by a lock, so the caller sees a consistent sequence).
3. **Edited in place.**  When the file was staged from object ``base`` (ETag
   ``base.etag``) and only ``dirty_ranges`` were written since, a part whose bytes lie
   entirely outside every dirty range and inside the old object is copied on the
   server with UploadPartCopy pinned to ``base.etag``.  Appending a line to a 1 GiB log
   then costs one sent part, not a thousand.  If the base object changed meanwhile,
   the copy fails with PreconditionFailed and the caller decides (the local copy may
   be sparse, so sending those bytes instead would be wrong).
4. **Complete.**  Parts are completed in order.  Every part carries its CRC64 (from
   the server's answer to the part, from the checkpoint for resumed parts), so the
   store compares the CRC64 combined from the parts with the object's
   ``x-oss-hash-crc64ecma`` and raises IntegrityError on a mismatch.

On failure (the store's retries exhausted, or ``on_checkpoint`` raising) the upload
is **not** aborted: in-flight parts are awaited, the exception propagates, and the
last checkpoint handed to ``on_checkpoint`` holds the upload id and the acknowledged
parts, so a later call resumes.  Aborting is the caller's decision (or
:func:`abort_incomplete`, for ``ossfs --incomplete-mpu-abort``).

Downloading
-----------
:meth:`Downloader.fetch` splits the requested ranges into ``chunk_size`` pieces and
GETs them in parallel, each pinned with If-Match to the ETag the caller saw, each
streamed (1 MiB at a time) into the file with ``os.pwrite`` at its own offset.  If the
object is replaced during the download, the next GET fails with PreconditionFailed,
so a staged file is never stitched from two versions.

Threads: :class:`Uploader` and :class:`Downloader` may be used by many threads at
once.  The per-call state of an upload (its checkpoint) is guarded by a lock local to
that call.  Do not call ``upload``/``fetch`` from a thread of the executor they use
(the caller would wait for work queued behind itself).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Union

import crcmod

from ossfs.errors import NotFound, StoreError
from ossfs.store import ObjectInfo, ObjectStore, PartInfo

log = logging.getLogger(__name__)

MAX_PARTS = 10000
MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller non-last parts
_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)  # as OSS


@dataclass
class UploadCheckpoint:
    """Where a multipart upload stands; persisted by the cache index between calls.

    Only plain types, so it survives JSON or pickle.  ``parts`` maps a part number to
    ``(etag, size, crc64 or None)`` as acknowledged by the server; after a JSON round
    trip the keys may be strings and the tuples lists, which :class:`Uploader`
    accepts.
    """

    key: str
    upload_id: str
    part_size: int
    size: int
    fingerprint: str  # identifies the staged content version the parts were read from
    parts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BaseObject:
    """The object a staged file was downloaded from (for the edited-in-place path)."""

    key: str
    etag: str
    size: int


def file_fingerprint(path_or_fd: Union[str, int]) -> str:
    """Size, modification time and inode: changes whenever the staged content does."""
    st = os.fstat(path_or_fd) if isinstance(path_or_fd, int) else os.stat(path_or_fd)
    return "%d:%d:%d" % (st.st_size, st.st_mtime_ns, st.st_ino)


def crc64_of(path: str, size: int, chunk: int = 1 << 20) -> Optional[int]:
    """CRC-64 (as OSS computes ``x-oss-hash-crc64ecma``) of the first ``size`` bytes
    of the file ``path``; None if it is shorter."""
    crc, pos = 0, 0
    with open(path, "rb") as f:
        while pos < size:
            data = f.read(min(chunk, size - pos))
            if not data:
                return None
            crc = _crc64(data, crc)
            pos += len(data)
    return crc


def _overlaps(start: int, end: int, ranges) -> bool:
    """True if ``[start, end)`` intersects any ``(offset, length)`` of ``ranges``."""
    return any(off < end and start < off + length for off, length in ranges if length > 0)


def _normalise_parts(parts: dict) -> dict:
    out = {}
    for number, value in (parts or {}).items():
        value = list(value)
        crc = value[2] if len(value) > 2 else None
        out[int(number)] = (str(value[0]), int(value[1]), None if crc is None else int(crc))
    return out


def _run_bounded(pool: Executor, parallel: int, todo, run) -> None:
    """Run ``run(*item)`` for every item of ``todo`` on ``pool``, at most ``parallel`` at
    once (memory stays bounded); on the first failure stop submitting, wait for what is
    in flight and re-raise that failure."""
    pending: set = set()
    items = iter(todo)
    error: Optional[BaseException] = None
    exhausted = False
    while True:
        while error is None and not exhausted and len(pending) < parallel:
            item = next(items, None)
            if item is None:
                exhausted = True
                break
            pending.add(pool.submit(run, *item))
        if not pending:
            break
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            exc = fut.exception()
            if exc is not None and error is None:
                error = exc
    if error is not None:
        raise error


class _WorkerPool:
    """The executor a transfer runs its parallel requests on: the caller's, or one of
    ``workers`` threads made on first use and shut down by :meth:`close`."""

    def __init__(self, executor: Optional[Executor], workers: int, name: str):
        self._given = executor
        self._workers = workers
        self._name = name
        self._own: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()  # guards _own

    def get(self) -> Executor:
        if self._given is not None:
            return self._given
        with self._lock:
            if self._own is None:
                self._own = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)
            return self._own

    def close(self) -> None:
        with self._lock:
            if self._own is not None:
                self._own.shutdown(wait=True)
                self._own = None


class Uploader:
    """Sends staged files to the store: single PUT or resumable multipart.

    ``multipart_threshold``: files of at least this size use multipart.
    ``part_size``: bytes per part (raised if the file would need more than 10,000).
    ``parallel``: parts in flight per upload.  ``executor``: shared thread pool
    (default: a private one with ``parallel`` threads).
    """

    def __init__(self, store: ObjectStore, *, multipart_threshold: int, part_size: int, parallel: int,
                 executor: Optional[Executor] = None):
        if part_size < MIN_PART_SIZE:
            raise ValueError("part size must be at least %d bytes" % MIN_PART_SIZE)
        self.store = store
        self.multipart_threshold = max(1, multipart_threshold)
        self.part_size = part_size
        self.parallel = max(1, parallel)
        self._workers = _WorkerPool(executor, self.parallel, "ossfs-upload")

    def _pool(self) -> Executor:
        return self._workers.get()

    def close(self) -> None:
        """Stop the private thread pool (a shared executor is left alone)."""
        self._workers.close()

    def part_size_for(self, size: int) -> int:
        """The configured part size, grown so that ``size`` fits in 10,000 parts."""
        return max(self.part_size, -(-size // MAX_PARTS))

    def upload(self, key: str, path: str, *, meta: Optional[dict], content_type: str = "",
               checkpoint: Optional[UploadCheckpoint] = None,
               on_checkpoint: Optional[Callable[[UploadCheckpoint], None]] = None,
               on_progress: Optional[Callable[[int, int], None]] = None,
               base: Optional[BaseObject] = None, dirty_ranges=None,
               fingerprint: Optional[str] = None) -> ObjectInfo:
        """Upload the staged file ``path`` as ``key``; see the module docstring.

        ``dirty_ranges``: ``(offset, length)`` pairs written since the file was staged
        from ``base``; ``None`` means "everything is dirty".  ``fingerprint`` defaults
        to :func:`file_fingerprint` of the file.  ``on_progress(done, total)`` reports
        bytes acknowledged (sent or copied).  Returns the new object's info.
        """
        with open(path, "rb") as f:
            fd = f.fileno()
            size = os.fstat(fd).st_size
            if fingerprint is None:
                fingerprint = file_fingerprint(fd)
            if size < self.multipart_threshold:
                if checkpoint is not None:
                    self.discard(checkpoint)
                info = self.store.put(key, f, meta=meta, content_type=content_type)
                if on_progress:
                    on_progress(size, size)
                return info
            use_copy = base is not None and dirty_ranges is not None
            return self._multipart(key, fd, size, fingerprint, meta, content_type, checkpoint, on_checkpoint,
                                   on_progress, base if use_copy else None, dirty_ranges)

    def discard(self, checkpoint: UploadCheckpoint) -> None:
        """Abort the multipart upload of ``checkpoint`` (best effort)."""
        try:
            self.store.abort_multipart(checkpoint.key, checkpoint.upload_id)
        except StoreError as exc:  # best effort: abort_incomplete() cleans up later
            log.debug("abort of stale upload %s failed: %s", checkpoint.upload_id, exc)

    # -- multipart ---------------------------------------------------------------

    def _resume(self, key: str, checkpoint: Optional[UploadCheckpoint], size: int, part_size: int,
                fingerprint: str, fd: Optional[int] = None) -> Optional[UploadCheckpoint]:
        """The checkpoint to continue from (parts verified on the server), or None."""
        if checkpoint is None:
            return None
        if (checkpoint.key != key or checkpoint.size != size or checkpoint.part_size != part_size
                or checkpoint.fingerprint != fingerprint):
            log.info("upload of %r: content changed since the interrupted upload, starting over", key)
            self.discard(checkpoint)
            return None
        try:
            on_server = {p.part_number: p for p in self.store.list_parts(key, checkpoint.upload_id)}
        except NotFound:
            log.info("upload of %r: the server forgot upload %s, starting over", key, checkpoint.upload_id)
            return None
        kept = {}
        for number, (etag, psize, crc) in _normalise_parts(checkpoint.parts).items():
            server = on_server.get(number)
            if server is not None and server.etag == etag and server.size == psize:
                kept[number] = (etag, psize, crc)
        if fd is not None:
            for number, server in sorted(on_server.items()):
                if number in kept:
                    continue
                start = (number - 1) * part_size
                length = min(part_size, size - start)
                if length <= 0 or server.size != length:
                    continue
                data = os.pread(fd, length, start)
                if len(data) == length and hashlib.md5(data).hexdigest().lower() == server.etag.strip('"').lower():
                    kept[number] = (server.etag, length, _crc64(data))
        log.info("upload of %r: resuming upload %s with %d of its parts already on the server",
                 key, checkpoint.upload_id, len(kept))
        return replace(checkpoint, parts=kept)

    def _multipart(self, key, fd, size, fingerprint, meta, content_type, checkpoint, on_checkpoint, on_progress,
                   base, dirty_ranges) -> ObjectInfo:
        part_size = self.part_size_for(size)
        cp = self._resume(key, checkpoint, size, part_size, fingerprint, fd)
        if cp is None:
            upload_id = self.store.initiate_multipart(key, meta=meta, content_type=content_type)
            cp = UploadCheckpoint(key=key, upload_id=upload_id, part_size=part_size, size=size,
                                  fingerprint=fingerprint, parts={})
        if on_checkpoint:
            on_checkpoint(replace(cp, parts=dict(cp.parts)))

        count = max(1, -(-size // part_size))
        lock = threading.Lock()  # guards cp.parts, done, and the on_checkpoint sequence
        done = [sum(v[1] for v in cp.parts.values())]
        todo = []
        for number in range(1, count + 1):
            if number in cp.parts:
                continue
            start = (number - 1) * part_size
            length = min(part_size, size - start)
            copy = (base is not None and start + length <= base.size
                    and not _overlaps(start, start + length, dirty_ranges))
            todo.append((number, start, length, copy))

        def run(number: int, start: int, length: int, copy: bool) -> None:
            if copy:
                part = self.store.upload_part_copy(key, cp.upload_id, number, base.key, start, length,
                                                   if_match=base.etag)
            else:
                data = os.pread(fd, length, start)
                if len(data) != length:
                    raise StoreError("upload of %r: staged file shrank while it was sent" % key)
                part = self.store.upload_part(key, cp.upload_id, number, data)
            with lock:
                cp.parts[number] = (part.etag, part.size, part.crc64)
                done[0] += part.size
                if on_checkpoint:
                    on_checkpoint(replace(cp, parts=dict(cp.parts)))
                if on_progress:
                    on_progress(done[0], size)

        _run_bounded(self._pool(), self.parallel, todo, run)
        parts = [PartInfo(part_number=n, etag=e, size=s, crc64=c)
                 for n, (e, s, c) in sorted(cp.parts.items())]
        info = self.store.complete_multipart(key, cp.upload_id, parts)
        if info.size != size:
            raise StoreError("upload of %r: server holds %d bytes, %d were sent" % (key, info.size, size))
        return info


class _OffsetWriter:
    """A write-only file object over ``fd`` starting at ``offset``, writing with pwrite
    so that parallel writers never share a file position."""

    def __init__(self, fd: int, offset: int):
        self.fd = fd
        self.start = self.pos = offset

    def write(self, data) -> int:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]
        return len(data)

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos

    def seekable(self) -> bool:
        return True


class Downloader:
    """Fills byte ranges of a local file from one version of an object."""

    def __init__(self, store: ObjectStore, *, parallel: int, chunk_size: int,
                 executor: Optional[Executor] = None):
        self.store = store
        self.parallel = max(1, parallel)
        self.chunk_size = max(1, chunk_size)
        self._workers = _WorkerPool(executor, self.parallel, "ossfs-download")

    def _pool(self) -> Executor:
        return self._workers.get()

    def close(self) -> None:
        self._workers.close()

    def fetch(self, key: str, etag: str, path_or_fd: Union[str, int], ranges) -> None:
        """Write ``ranges`` (``(start, length)`` pairs) of object ``key`` at ETag ``etag``
        into the file at the same offsets.  Raises PreconditionFailed if the object is
        no longer at ``etag``.  Bytes past the end of the object are simply not
        written.  ``path_or_fd``: a path (opened without truncation) or an open fd."""
        pieces = []
        for start, length in ranges:
            for off in range(start, start + length, self.chunk_size):
                pieces.append((off, min(self.chunk_size, start + length - off)))
        if not pieces:
            return
        own_fd = not isinstance(path_or_fd, int)
        fd = os.open(path_or_fd, os.O_WRONLY | os.O_CREAT, 0o600) if own_fd else path_or_fd
        try:
            if len(pieces) == 1:
                self._get(key, etag, fd, *pieces[0])
                return
            _run_bounded(self._pool(), self.parallel, pieces,
                         lambda off, length: self._get(key, etag, fd, off, length))
        finally:
            if own_fd:
                os.close(fd)

    def _get(self, key: str, etag: str, fd: int, start: int, length: int) -> None:
        self.store.get_to_file(key, _OffsetWriter(fd, start), start, length, if_match=etag)


# --------------------------------------------------------------------------- maintenance

def list_incomplete(store: ObjectStore) -> list:
    """Every incomplete multipart upload in the store (``ossfs --incomplete-mpu-list``)."""
    return sorted(store.list_multipart_uploads(""), key=lambda u: (u.initiated, u.key))


def abort_incomplete(store: ObjectStore, older_than_seconds: Optional[float] = None,
                     keep=frozenset()) -> list:
    """Abort incomplete uploads initiated more than ``older_than_seconds`` ago (all of
    them when None), except those whose upload id is in ``keep``; returns the aborted
    ones (``ossfs --incomplete-mpu-abort``)."""
    now = time.time()
    aborted = []
    for upload in list_incomplete(store):
        if older_than_seconds is not None and upload.initiated > now - older_than_seconds:
            continue
        if upload.upload_id in keep:
            continue
        try:
            store.abort_multipart(upload.key, upload.upload_id)
        except NotFound:
            continue  # finished or aborted by someone else meanwhile
        aborted.append(upload)
    return aborted


__all__ = ["UploadCheckpoint", "BaseObject", "Uploader", "Downloader", "list_incomplete", "abort_incomplete",
           "file_fingerprint"]
