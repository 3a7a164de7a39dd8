"""The persistent object store behind ossfs-server (both the OSS and the S3 face).

What it owns
    Everything under ``root``:

    * ``index.sqlite`` -- buckets, objects, multipart uploads and their parts (WAL mode).
      Objects are a table keyed by ``(bucket, key BLOB)``, so listing is an index range
      scan in UTF-8 byte order (the order OSS uses) with keyset pagination.
    * ``blobs/`` -- bodies of single-file objects.  A blob's name is
      ``sha256(bucket/key)`` plus a random suffix: keys never become paths, and every
      version of an object gets its own file, so a reader that opened the old version
      keeps reading it.
    * ``parts/`` -- bodies of multipart parts, same naming, and the segments of
      completed multipart objects (the same files: see below).
    * ``tmp/`` -- request bodies being received.

Single-file and manifest objects
    An object's body is either one file in ``blobs/`` (``objects.blob``; PutObject,
    AppendObject, symlinks, copies of those) or a *manifest*: the JSON list
    ``[[name, size], ...]`` in ``objects.manifest`` of files in ``parts/`` whose
    concatenation is the body (``blob`` is then ``""``).  CompleteMultipartUpload makes
    a manifest of the chosen parts' files as they are, so it costs one sqlite
    transaction of O(number of parts) and no copy of the data.  Readers get a
    :class:`_SegmentReader` that opens the segments lazily as the position moves.

    Ownership: every file in ``blobs/`` and ``parts/`` is referenced by at most one
    index row -- an ``objects.blob``, one manifest entry, or a ``parts.blob`` -- and is
    deleted by whoever removes that reference (overwrite, delete, abort, a part
    uploaded again, the parts left out of a complete).  A copy of a manifest object
    hard-links each segment under a new name, so the copy owns its own names.

    Pins: a manifest reader opens segments only when it gets to them, so files of a
    version that is overwritten or deleted while it is being read must outlive the
    reader.  ``open_object`` pins the version (keyed by its first segment's name)
    under the lock in which it checks that the version is current; removing a
    pinned version's reference defers the unlink of its files to the last reader's
    ``close()``.  Pins live in memory: after a crash the start-up scan deletes the
    files no row references.

Contracts
    * Writes land atomically: a body is streamed to ``tmp/`` while MD5 and CRC-64/ECMA
      are computed incrementally, fsynced, renamed into ``blobs/``, and only then the
      index row is committed.  A crash before the commit leaves an unreferenced blob,
      which :meth:`Store.__init__` deletes; a half-written object is never visible.
    * Parts are fsynced when uploaded.  Completing an upload deletes its ``uploads``
      and ``parts`` rows and writes the object's row (with the manifest) in one sqlite
      transaction, so a crash leaves either the upload or the object, and the start-up
      scan keeps every file a ``parts`` row or a manifest references.
    * Blobs and segments are immutable once referenced; copies are hard links.
    * Errors are :class:`StoreError` carrying the OSS error code and HTTP status.
    * ETags are upper-case hex without quotes (``HEX-N`` for multipart objects); the
      CRC-64 of a multipart object is combined from its parts' CRCs.
    * An index written before manifests existed (no ``objects.manifest`` column) gets
      the column added at start-up; its objects are all single-file ones.

Threads and locks
    ``Store._lock`` guards the sqlite connection (one connection, shared), every
    read-modify-write of the index (append position checks, blob swaps) and the pin
    counts.  Bodies are received and hashed outside the lock; only the final rename +
    commit is inside.  Completing an upload validates the parts and combines their
    CRCs outside the lock, then commits under it only if the chosen parts' rows are
    unchanged (else it validates again, a bounded number of times).
"""
from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import io
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, List, Optional, Tuple

import crcmod

from ossfs.crc64 import combine as crc64_combine  # a module attribute: tests patch it here

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# bodies at least this large are hashed on a second thread (see _Digests)
PIPELINE_MIN = 4 * CHUNK
MIN_PART_SIZE = 100 * 1024
MAX_PARTS = 10000
MAX_COPY_SIZE = 1 << 30
HEADER_NAMES = ("x-oss-storage-class", "cache-control", "content-disposition", "content-encoding", "expires",
                "content-language")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class StoreError(Exception):
    """A failure with an OSS error code and HTTP status; ``extra`` holds response headers."""

    def __init__(self, code: str, status: int, message: str, extra: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.extra = extra or {}


@dataclass
class ObjectRecord:
    """One object as the index knows it.

    ``blob`` names the body's file in ``blobs/`` for a single-file object;
    ``segments`` is the manifest, ``[(name in parts/, size), ...]`` in body order, for a
    manifest object (``blob`` is then ``""``).  Only lookups of one object
    (:meth:`Store.head_object`, :meth:`Store.open_object`, ...) load ``segments``;
    records from listings carry None there whatever the object's layout.
    """

    bucket: str
    key: str
    size: int
    etag: str
    crc64: int
    last_modified: float
    content_type: str = "application/octet-stream"
    user_meta: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    object_type: str = "Normal"
    symlink_target: Optional[str] = None
    blob: str = ""
    segments: Optional[List[Tuple[str, int]]] = None


@dataclass
class UploadRecord:
    """A multipart upload in progress."""

    bucket: str
    key: str
    upload_id: str
    initiated: float
    content_type: str = "application/octet-stream"
    user_meta: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class PartRecord:
    """One uploaded part of a multipart upload."""

    part_number: int
    etag: str
    size: int
    crc64: int
    last_modified: float
    blob: str = ""


def validate_bucket_name(name: str) -> None:
    if not isinstance(name, str) or not _BUCKET_RE.match(name):
        raise StoreError("InvalidBucketName", 400, "The specified bucket is not valid.")


def validate_key(key: str) -> bytes:
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError("InvalidObjectName", 400, "The object name is not valid UTF-8.")
    if not 1 <= len(raw) <= 1023 or key[0] in "/\\":
        raise StoreError("InvalidObjectName", 400, "The specified object is not valid.")
    return raw


def md5_base64_to_hex(content_md5: str) -> str:
    try:
        raw = base64.b64decode(content_md5, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise StoreError("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
    return raw.hex().upper()


def multipart_etag(part_etags: List[str]) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags)).hexdigest().upper()
    return "%s-%d" % (digest, len(part_etags))


# Building a crcmod table costs ~1 ms; every body gets a cheap copy of this one instead.
# Built from crcmod with oss2's parameters, not through ``oss2.utils.Crc64``: the client
# (ossfs.store_oss) replaces that class when fastcrc is installed, and the server must
# not depend on which of the two modules a process imported first.
_CRC_TEMPLATE = crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)

try:
    # Rust CRC-64/XZ, which is oss2's CRC-64/ECMA-182 bit for bit (oss2 with
    # enable_crc compares it with its own crcmod value on every PUT, part and GET of
    # the server tests), at several GB/s and with the GIL released;
    # crcmod's C extension manages ~350 MB/s and holds the GIL, which made it the
    # limit of a single PUT.
    from fastcrc import crc64 as _fastcrc64
    _crc64_update = _fastcrc64.xz
except ImportError:          # optional: crcmod (always installed) gives the same values
    _fastcrc64 = None

    # crcmod's function form continues from a previous CRC value, as fastcrc's does
    _crc64_update = _CRC_TEMPLATE._crc


def crc64_update(data, crc: int = 0) -> int:
    """CRC-64/ECMA-182 (as oss2 computes it) of ``data`` continuing from ``crc`` (0 to start)."""
    return _crc64_update(data, crc)


def new_crc64():
    """A fresh CRC-64/ECMA-182 accumulator (``.update(bytes)``, ``.crcValue``), as oss2 computes it."""
    return _CRC_TEMPLATE.new()


# One page of a delimited listing: ?1 bucket, ?2 first key to consider (inclusive),
# ?3 upper bound (exclusive), ?4 length of the prefix, ?5 delimiter, ?6 rows wanted.
# Each step seeks the first key at or after the previous key's successor: past its
# common prefix (prefix + 0xFF) when the key holds the delimiter after the listing
# prefix, else the key + NUL.  Keys and bounds are BLOBs, so instr/substr count bytes
# and comparisons are bytewise; CAST keeps the concatenation a BLOB.
_WALK = """
WITH RECURSIVE walk(k) AS (
    SELECT (SELECT key FROM objects WHERE bucket = ?1 AND key >= ?2 AND key < ?3
            ORDER BY key LIMIT 1)
    UNION ALL
    SELECT (SELECT key FROM objects WHERE bucket = ?1 AND key < ?3 AND key >= (
                CASE WHEN instr(substr(walk.k, ?4 + 1), ?5) > 0
                     THEN CAST(substr(walk.k, 1, ?4 + instr(substr(walk.k, ?4 + 1), ?5) - 1 + length(?5))
                               || x'ff' AS BLOB)
                     ELSE CAST(walk.k || x'00' AS BLOB) END)
            ORDER BY key LIMIT 1)
    FROM walk WHERE walk.k IS NOT NULL
    LIMIT ?6
)
SELECT %s FROM walk CROSS JOIN objects ON objects.bucket = ?1 AND objects.key = walk.k
ORDER BY walk.k
"""


class _Received:
    """A body received into a temp file: its path, size, MD5 hex and CRC64."""

    def __init__(self, path: str, size: int, md5: str, crc64: int):
        self.path, self.size, self.md5, self.crc64 = path, size, md5, crc64


class Store:
    """All buckets and objects under one directory.  See the module docstring."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.blob_dir = os.path.join(self.root, "blobs")
        self.part_dir = os.path.join(self.root, "parts")
        self.tmp_dir = os.path.join(self.root, "tmp")
        for d in (self.root, self.blob_dir, self.part_dir, self.tmp_dir):
            os.makedirs(d, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.path.join(self.root, "index.sqlite"),
                                   check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL);
            CREATE TABLE IF NOT EXISTS objects (
                bucket TEXT, key BLOB, size INTEGER, etag TEXT, crc64 TEXT, mtime REAL,
                content_type TEXT, meta TEXT, headers TEXT, object_type TEXT,
                symlink_target TEXT, blob TEXT, manifest TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS uploads (
                upload_id TEXT PRIMARY KEY, bucket TEXT, key BLOB, initiated REAL,
                content_type TEXT, meta TEXT, headers TEXT);
            CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id);
            CREATE TABLE IF NOT EXISTS parts (
                upload_id TEXT, part_number INTEGER, etag TEXT, size INTEGER, crc64 TEXT,
                mtime REAL, blob TEXT, PRIMARY KEY (upload_id, part_number));
        """)
        # an index from before manifests: every object in it is a single-file one
        if "manifest" not in {r[1] for r in self._db.execute("PRAGMA table_info(objects)")}:
            self._db.execute("ALTER TABLE objects ADD COLUMN manifest TEXT")
        # readers of manifest versions (first segment name -> count) and the files of
        # pinned versions whose reference is gone (unlinked by the last reader)
        self._pins: Dict[str, int] = {}
        self._doomed: Dict[str, List[str]] = {}
        self._collect_garbage()

    # ------------------------------------------------------------------ internals
    def _collect_garbage(self) -> None:
        """Delete temp files, blobs and part files no index row references (left by a crash).

        Files of ``parts/`` named by a manifest are referenced: they are object data.
        """
        for name in os.listdir(self.tmp_dir):
            _unlink(os.path.join(self.tmp_dir, name))
        used = {r[0] for r in self._db.execute("SELECT blob FROM objects")}
        for name in os.listdir(self.blob_dir):
            if name not in used:
                _unlink(os.path.join(self.blob_dir, name))
        used = {r[0] for r in self._db.execute("SELECT blob FROM parts")}
        for (manifest,) in self._db.execute("SELECT manifest FROM objects WHERE manifest IS NOT NULL"):
            used.update(name for name, _ in json.loads(manifest))
        for name in os.listdir(self.part_dir):
            if name not in used:
                _unlink(os.path.join(self.part_dir, name))

    @staticmethod
    def _blob_name(bucket: str, key: str) -> str:
        h = hashlib.sha256(("%s/%s" % (bucket, key)).encode("utf-8", "surrogatepass")).hexdigest()
        return "%s.%s" % (h[:40], uuid.uuid4().hex)

    def _blob_path(self, name: str) -> str:
        return os.path.join(self.blob_dir, name)

    def _receive(self, stream: BinaryIO, length: Optional[int],
                 content_md5: Optional[str] = None, prefix: bytes = b"",
                 prefix_file: Optional[str] = None) -> _Received:
        """Stream ``length`` bytes (or to EOF when None) into a temp file, hashing them.

        ``prefix_file`` (an existing blob) is copied first, for appends.  Bodies of
        :data:`PIPELINE_MIN` bytes or more (or of unknown length) are hashed by a
        :class:`_Digests` pipeline: see there.  The file is fsynced once, at the end.
        """
        path = os.path.join(self.tmp_dir, uuid.uuid4().hex)
        prefix_size = os.path.getsize(prefix_file) if prefix_file is not None else 0
        # the check of Content-MD5 needs the MD5 of the new bytes alone only for appends
        digests = _Digests(separate_new=bool(content_md5) and prefix_file is not None,
                           pipelined=length is None or length + prefix_size >= PIPELINE_MIN)
        size = 0
        ok = False
        try:
            with open(path, "wb", buffering=0) as out:
                fd = out.fileno()
                if prefix_file is not None:
                    with open(prefix_file, "rb", buffering=0) as src:
                        while True:
                            buf = digests.buffer()
                            n = src.readinto(buf)
                            if not n:
                                digests.give_back(buf)
                                break
                            _write_all(fd, memoryview(buf)[:n])
                            digests.add(buf, n, new=False)
                remaining = length
                while remaining is None or remaining > 0:
                    buf = digests.buffer()
                    want = CHUNK if remaining is None else min(CHUNK, remaining)
                    n = _read_into(stream, memoryview(buf)[:want])
                    if not n:
                        digests.give_back(buf)
                        if remaining is not None:
                            raise StoreError("IncompleteBody", 400,
                                             "The request body is shorter than Content-Length.")
                        break
                    _write_all(fd, memoryview(buf)[:n])
                    digests.add(buf, n, new=True)
                    size += n
                    if remaining is not None:
                        remaining -= n
                md5_hex, new_md5_hex, crc = digests.finish()
                if content_md5:
                    if md5_base64_to_hex(content_md5) != new_md5_hex:
                        raise StoreError("InvalidDigest", 400,
                                         "The Content-MD5 you specified did not match what we received.")
                os.fsync(fd)
            ok = True
            return _Received(path, size + prefix_size, md5_hex, crc)
        finally:
            digests.close()
            if not ok:
                _unlink(path)

    def _check_bucket(self, bucket: str) -> None:
        validate_bucket_name(bucket)
        row = self._db.execute("SELECT 1 FROM buckets WHERE name=?", (bucket,)).fetchone()
        if row is None:
            raise StoreError("NoSuchBucket", 404, "The specified bucket does not exist.")

    def _row_to_record(self, row, manifest: Optional[str] = None) -> ObjectRecord:
        (bucket, key, size, etag, crc, mtime, ctype, meta, headers, otype, target, blob) = row
        return ObjectRecord(bucket=bucket, key=bytes(key).decode("utf-8", "surrogatepass"),
                            size=size, etag=etag, crc64=int(crc), last_modified=mtime,
                            content_type=ctype, user_meta=json.loads(meta),
                            headers=json.loads(headers), object_type=otype,
                            symlink_target=target, blob=blob or "",
                            segments=[(n, z) for n, z in json.loads(manifest)] if manifest else None)

    # the columns of a record; the manifest is read only by _get_row (it can be large)
    _COLS = ("bucket, key, size, etag, crc64, mtime, content_type, meta, headers, "
             "object_type, symlink_target, blob")

    def _get_row(self, bucket: str, raw_key: bytes) -> Optional[ObjectRecord]:
        row = self._db.execute("SELECT %s, manifest FROM objects WHERE bucket=? AND key=?" % self._COLS,
                               (bucket, raw_key)).fetchone()
        return self._row_to_record(row[:-1], row[-1]) if row else None

    def _write_row(self, rec: ObjectRecord, raw_key: bytes) -> None:
        """Insert or replace the row of ``rec`` (caller holds the lock)."""
        self._db.execute(
            "INSERT OR REPLACE INTO objects (%s, manifest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)" % self._COLS,
            (rec.bucket, raw_key, rec.size, rec.etag, str(rec.crc64), rec.last_modified,
             rec.content_type, json.dumps(rec.user_meta), json.dumps(rec.headers),
             rec.object_type, rec.symlink_target, rec.blob,
             None if rec.segments is None else json.dumps([[n, z] for n, z in rec.segments])))

    def _files(self, rec: ObjectRecord) -> List[str]:
        """Paths of the files that hold the body of ``rec`` (a record from _get_row)."""
        if rec.segments is not None:
            return [os.path.join(self.part_dir, name) for name, _ in rec.segments]
        return [self._blob_path(rec.blob)] if rec.blob else []

    def _discard(self, rec: ObjectRecord) -> None:
        """Delete the files of ``rec``, whose row is gone; caller holds no lock.

        A pinned manifest version's files are left to its last reader (see :meth:`_unpin`).
        No new pin can appear: pins are taken only on the current row of a key.
        """
        paths = self._files(rec)
        if rec.segments:
            pin = rec.segments[0][0]
            with self._lock:
                if self._pins.get(pin):
                    self._doomed[pin] = paths
                    return
        for path in paths:
            _unlink(path)

    def _unpin(self, pin: str) -> None:
        """Drop one reader of the manifest version ``pin``; the last one deletes doomed files."""
        with self._lock:
            n = self._pins.get(pin, 0) - 1
            if n > 0:
                self._pins[pin] = n
                return
            self._pins.pop(pin, None)
            paths = self._doomed.pop(pin, [])
        for path in paths:
            _unlink(path)

    def _install(self, rec: ObjectRecord, raw_key: bytes, tmp_path: Optional[str],
                 expect_size: Optional[int] = None) -> ObjectRecord:
        """Commit the row of ``rec`` and delete the files of the version it replaces.

        ``tmp_path`` (a received body) is renamed into blobs/ first; without it, ``rec``
        already owns its files (a manifest of fresh links).  On failure the files of
        ``rec`` are deleted.  Caller holds no lock.
        """
        if tmp_path is not None:
            rec.blob = self._blob_name(rec.bucket, rec.key)
            os.replace(tmp_path, self._blob_path(rec.blob))
        with self._lock:
            try:
                self._check_bucket(rec.bucket)
                old = self._get_row(rec.bucket, raw_key)
                if expect_size is not None:
                    if old is None or old.object_type != "Appendable" or old.size != expect_size:
                        raise StoreError("PositionNotEqualToLength", 409,
                                         "Position is not equal to file length",
                                         {"x-oss-next-append-position": str(old.size if old else 0)})
                self._write_row(rec, raw_key)
            except BaseException:
                for path in self._files(rec):
                    _unlink(path)
                raise
        if old is not None:
            self._discard(old)
        return rec

    # ------------------------------------------------------------------ buckets
    def create_bucket(self, name: str) -> None:
        """Create ``name``; BucketAlreadyExists when it exists (OSS answers 409)."""
        validate_bucket_name(name)
        with self._lock:
            try:
                self._db.execute("INSERT INTO buckets VALUES (?, ?)", (name, time.time()))
            except sqlite3.IntegrityError:
                raise StoreError("BucketAlreadyExists", 409, "The requested bucket name is not available.")

    def ensure_bucket(self, name: str) -> None:
        """Create ``name`` unless it exists (used for ``--bucket`` at start-up)."""
        validate_bucket_name(name)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO buckets VALUES (?, ?)", (name, time.time()))

    def delete_bucket(self, name: str) -> None:
        with self._lock:
            self._check_bucket(name)
            if self._db.execute("SELECT 1 FROM objects WHERE bucket=? LIMIT 1", (name,)).fetchone() \
                    or self._db.execute("SELECT 1 FROM uploads WHERE bucket=? LIMIT 1", (name,)).fetchone():
                raise StoreError("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
            self._db.execute("DELETE FROM buckets WHERE name=?", (name,))

    def list_buckets(self) -> List[Tuple[str, float]]:
        with self._lock:
            return [(n, c) for n, c in self._db.execute("SELECT name, created FROM buckets ORDER BY name")]

    def head_bucket(self, name: str) -> float:
        """Return the creation time of ``name``; NoSuchBucket when absent."""
        validate_bucket_name(name)
        with self._lock:
            row = self._db.execute("SELECT created FROM buckets WHERE name=?", (name,)).fetchone()
        if row is None:
            raise StoreError("NoSuchBucket", 404, "The specified bucket does not exist.")
        return row[0]

    # ------------------------------------------------------------------ objects
    def put_object(self, bucket: str, key: str, stream: BinaryIO, length: Optional[int],
                   content_type: Optional[str] = None, user_meta: Optional[dict] = None,
                   headers: Optional[dict] = None, content_md5: Optional[str] = None) -> ObjectRecord:
        """Store a whole object from ``stream`` (``length`` bytes, or to EOF when None)."""
        raw_key = validate_key(key)
        self.head_bucket(bucket)
        got = self._receive(stream, length, content_md5)
        rec = ObjectRecord(bucket, key, got.size, got.md5, got.crc64, time.time(),
                           content_type or "application/octet-stream", dict(user_meta or {}),
                           dict(headers or {}), "Normal")
        try:
            return self._install(rec, raw_key, got.path)
        finally:
            _unlink(got.path)

    def append_object(self, bucket: str, key: str, position: int, stream: BinaryIO,
                      length: Optional[int], content_type: Optional[str] = None,
                      user_meta: Optional[dict] = None, headers: Optional[dict] = None,
                      content_md5: Optional[str] = None) -> ObjectRecord:
        """Append to an Appendable object (created when ``position`` is 0 and it is absent).

        PositionNotEqualToLength (409, with ``x-oss-next-append-position``) when
        ``position`` is not the current size; ObjectNotAppendable when the object is of
        another type.  Metadata given on later appends is ignored, as OSS does.
        """
        raw_key = validate_key(key)
        self.head_bucket(bucket)
        with self._lock:
            old = self._get_row(bucket, raw_key)
        if old is not None and old.object_type != "Appendable":
            raise StoreError("ObjectNotAppendable", 409, "The object is not appendable")
        cur = old.size if old else 0
        if position != cur:
            raise StoreError("PositionNotEqualToLength", 409, "Position is not equal to file length",
                             {"x-oss-next-append-position": str(cur)})
        # Appends copy the previous version: blobs stay immutable, so concurrent readers
        # of the old version are safe and a crash never leaves a partly appended object.
        got = self._receive(stream, length, content_md5,
                            prefix_file=self._blob_path(old.blob) if old else None)
        if old is not None:
            rec = ObjectRecord(bucket, key, got.size, got.md5, got.crc64, time.time(),
                               old.content_type, old.user_meta, old.headers, "Appendable")
        else:
            rec = ObjectRecord(bucket, key, got.size, got.md5, got.crc64, time.time(),
                               content_type or "application/octet-stream", dict(user_meta or {}),
                               dict(headers or {}), "Appendable")
        try:
            return self._install(rec, raw_key, got.path, expect_size=cur if old else None)
        finally:
            _unlink(got.path)

    def put_symlink(self, bucket: str, key: str, target: str, user_meta: Optional[dict] = None,
                    content_type: Optional[str] = None, headers: Optional[dict] = None) -> ObjectRecord:
        """Create a Symlink object pointing at ``target`` (which need not exist)."""
        raw_key = validate_key(key)
        validate_key(target)
        self.head_bucket(bucket)
        path = os.path.join(self.tmp_dir, uuid.uuid4().hex)
        open(path, "wb").close()
        rec = ObjectRecord(bucket, key, 0, hashlib.md5(target.encode()).hexdigest().upper(), 0,
                           time.time(), content_type or "application/octet-stream",
                           dict(user_meta or {}), dict(headers or {}), "Symlink", target)
        try:
            return self._install(rec, raw_key, path)
        finally:
            _unlink(path)

    def head_object(self, bucket: str, key: str) -> ObjectRecord:
        """The record of ``key`` (symlinks are not followed); NoSuchKey when absent."""
        raw_key = validate_key(key)
        with self._lock:
            self._check_bucket(bucket)
            rec = self._get_row(bucket, raw_key)
        if rec is None:
            raise StoreError("NoSuchKey", 404, "The specified key does not exist.")
        return rec

    def resolve(self, bucket: str, key: str) -> ObjectRecord:
        """Like :meth:`head_object` but follows a symlink (one level, as OSS does)."""
        rec = self.head_object(bucket, key)
        if rec.object_type == "Symlink":
            try:
                target = self.head_object(bucket, rec.symlink_target)
            except StoreError as e:
                if e.code == "NoSuchKey":
                    raise StoreError("SymlinkTargetNotExist", 404, "The symlink target object does not exist")
                raise
            if target.object_type == "Symlink":
                raise StoreError("InvalidTargetType", 400, "The symlink target object type is not supported")
            return target
        return rec

    def open_object(self, bucket: str, key: str, follow_symlink: bool = True) -> Tuple[ObjectRecord, BinaryIO]:
        """The record and an open, seekable binary file of the body, positioned at 0.

        The file reads the version looked up even if the object is overwritten or
        deleted meanwhile.  For a manifest object it is a :class:`_SegmentReader`,
        which pins the version until it is closed: callers must close it.
        """
        for _ in range(5):
            rec = self.resolve(bucket, key) if follow_symlink else self.head_object(bucket, key)
            if rec.segments is None:
                try:
                    return rec, open(self._blob_path(rec.blob), "rb")
                except FileNotFoundError:
                    continue   # replaced between the lookup and the open; look again
            pin = rec.segments[0][0]
            with self._lock:
                cur = self._get_row(rec.bucket, rec.key.encode("utf-8", "surrogatepass"))
                if cur is None or not cur.segments or cur.segments[0][0] != pin:
                    continue   # replaced between the lookup and the pin; look again
                self._pins[pin] = self._pins.get(pin, 0) + 1
            return rec, _SegmentReader([os.path.join(self.part_dir, n) for n, _ in rec.segments],
                                       [z for _, z in rec.segments], lambda: self._unpin(pin))
        raise StoreError("InternalError", 500, "The object changed too often while being read.")

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete ``key``; True when it existed (deleting a missing key is not an error)."""
        raw_key = validate_key(key)
        with self._lock:
            self._check_bucket(bucket)
            rec = self._get_row(bucket, raw_key)
            if rec is None:
                return False
            self._db.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, raw_key))
        self._discard(rec)
        return True

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str,
                    replace: Optional[Tuple[Optional[str], dict, dict]] = None) -> ObjectRecord:
        """Server-side copy: hard links of the immutable blob or segments, under new names.

        ``replace`` = (content_type, user_meta, headers) replaces the metadata
        (``REPLACE`` directive); None keeps the source's (``COPY``).  Larger than 1 GiB:
        InvalidArgument, as OSS does (use UploadPartCopy).  A copy of a manifest object
        is a manifest object of its own links (the source's version stays pinned while
        they are made).
        """
        raw_dst = validate_key(dst_key)
        self.head_bucket(dst_bucket)
        src = self.resolve(src_bucket, src_key)
        if src.size > MAX_COPY_SIZE:
            raise StoreError("InvalidArgument", 400,
                             "The source object is larger than 1GB; use UploadPartCopy.")
        rec = ObjectRecord(dst_bucket, dst_key, src.size, src.etag, src.crc64, time.time(),
                           src.content_type, dict(src.user_meta), dict(src.headers),
                           "Normal" if src.object_type == "Symlink" else src.object_type)
        if replace is not None:
            ctype, meta, headers = replace
            rec.content_type = ctype or "application/octet-stream"
            rec.user_meta = dict(meta or {})
            rec.headers = dict(headers or {})
        if src.segments is not None:
            return self._copy_manifest(src, rec, raw_dst)
        tmp = os.path.join(self.tmp_dir, uuid.uuid4().hex)
        try:
            os.link(self._blob_path(src.blob), tmp)
        except FileNotFoundError:
            raise StoreError("NoSuchKey", 404, "The source object changed during the copy.")
        try:
            return self._install(rec, raw_dst, tmp)
        finally:
            _unlink(tmp)

    def _copy_manifest(self, src: ObjectRecord, rec: ObjectRecord, raw_dst: bytes) -> ObjectRecord:
        """Install ``rec`` as a manifest of new hard links to the segments of ``src``."""
        try:
            # open (and so pin) the version of src that rec was made from
            got, f = self.open_object(src.bucket, src.key, follow_symlink=False)
        except StoreError as e:
            if e.code == "NoSuchKey":
                raise StoreError("NoSuchKey", 404, "The source object changed during the copy.")
            raise
        with f:
            if got.segments != src.segments:
                raise StoreError("NoSuchKey", 404, "The source object changed during the copy.")
            segments: List[Tuple[str, int]] = []
            try:
                for i, (name, size) in enumerate(src.segments):
                    new = self._blob_name(rec.bucket, "%s/copy/%d" % (rec.key, i))
                    os.link(os.path.join(self.part_dir, name), os.path.join(self.part_dir, new))
                    segments.append((new, size))
            except BaseException:
                for new, _ in segments:
                    _unlink(os.path.join(self.part_dir, new))
                raise
        rec.segments = segments
        return self._install(rec, raw_dst, None)

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "", marker: str = "",
                     max_keys: int = 1000) -> Tuple[List[ObjectRecord], List[str], Optional[str]]:
        """One page of keys after ``marker`` in UTF-8 byte order.

        Returns (records, common_prefixes, next_marker); ``next_marker`` is None when
        the listing is complete, else the last key or common prefix returned.

        Without a delimiter a page is one range scan.  With one, a page is one
        recursive query (:data:`_WALK`) that visits one row per entry: after a key
        with the delimiter it seeks to the first key past the whole common prefix
        (``>= common_prefix + 0xFF``; UTF-8 never contains 0xFF), after any other key
        to the next key, each step an index seek.  So a listing costs one seek per
        entry returned, however many keys sit under each common prefix.
        """
        p = (prefix or "").encode("utf-8")
        d = (delimiter or "").encode("utf-8")
        m = (marker or "").encode("utf-8")
        upper = p + b"\xff"          # UTF-8 never contains 0xFF: every key under p sorts below
        # the smallest key strictly after the marker is marker + NUL
        start = m + b"\x00" if m >= p else p
        records: List[ObjectRecord] = []
        prefixes: List[str] = []
        with self._lock:
            self._check_bucket(bucket)
            if not d:
                rows = self._db.execute(
                    "SELECT %s FROM objects WHERE bucket=? AND key >= ? AND key < ? "
                    "ORDER BY key LIMIT ?" % self._COLS, (bucket, start, upper, max_keys + 1)).fetchall()
                records = [self._row_to_record(r) for r in rows[:max_keys]]
                return records, prefixes, records[-1].key if len(rows) > max_keys else None
            last = None
            while True:
                # one more row than the page needs tells whether the listing goes on;
                # one more again covers a common prefix that the marker already passed
                want = max_keys - len(records) - len(prefixes) + 2
                rows = self._db.execute(_WALK % self._COLS,
                                        (bucket, start, upper, len(p), d, want)).fetchall()
                for row in rows:
                    k = bytes(row[1])
                    i = k.find(d, len(p))
                    if i >= 0:
                        cp = k[:i + len(d)]
                        start = cp + b"\xff"
                        if cp <= m:
                            continue
                        if len(records) + len(prefixes) >= max_keys:
                            return records, prefixes, last
                        last = cp.decode("utf-8", "surrogatepass")
                        prefixes.append(last)
                    else:
                        start = k + b"\x00"
                        if len(records) + len(prefixes) >= max_keys:
                            return records, prefixes, last
                        records.append(self._row_to_record(row))
                        last = records[-1].key
                if len(rows) < want:
                    return records, prefixes, None

    def count_objects(self, bucket: str) -> Tuple[int, int]:
        """(number of objects, total bytes) of ``bucket``."""
        with self._lock:
            self._check_bucket(bucket)
            n, size = self._db.execute("SELECT count(*), coalesce(sum(size),0) FROM objects WHERE bucket=?",
                                       (bucket,)).fetchone()
        return n, size

    # ------------------------------------------------------------------ multipart
    def initiate_upload(self, bucket: str, key: str, content_type: Optional[str] = None,
                        user_meta: Optional[dict] = None, headers: Optional[dict] = None) -> str:
        raw_key = validate_key(key)
        upload_id = uuid.uuid4().hex.upper()
        with self._lock:
            self._check_bucket(bucket)
            self._db.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?,?)",
                             (upload_id, bucket, raw_key, time.time(),
                              content_type or "application/octet-stream",
                              json.dumps(dict(user_meta or {})), json.dumps(dict(headers or {}))))
        return upload_id

    def _get_upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        raw_key = validate_key(key)
        self._check_bucket(bucket)
        row = self._db.execute(
            "SELECT initiated, content_type, meta, headers FROM uploads WHERE upload_id=? AND bucket=? AND key=?",
            (upload_id, bucket, raw_key)).fetchone()
        if row is None:
            raise StoreError("NoSuchUpload", 404, "The specified upload does not exist. "
                             "The upload ID may be invalid, or the upload may have been aborted or completed.")
        return UploadRecord(bucket, key, upload_id, row[0], row[1], json.loads(row[2]), json.loads(row[3]))

    def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        with self._lock:
            return self._get_upload(bucket, key, upload_id)

    def _install_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                      got: _Received) -> str:
        if not 1 <= part_number <= MAX_PARTS:
            raise StoreError("InvalidArgument", 400, "Part number must be an integer between 1 and 10000.")
        name = self._blob_name(bucket, "%s/%s/%d" % (key, upload_id, part_number))
        os.replace(got.path, os.path.join(self.part_dir, name))
        with self._lock:
            try:
                self._get_upload(bucket, key, upload_id)
            except BaseException:
                _unlink(os.path.join(self.part_dir, name))
                raise
            old = self._db.execute("SELECT blob FROM parts WHERE upload_id=? AND part_number=?",
                                   (upload_id, part_number)).fetchone()
            self._db.execute("INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?,?,?)",
                             (upload_id, part_number, got.md5, got.size, str(got.crc64),
                              time.time(), name))
        if old:
            _unlink(os.path.join(self.part_dir, old[0]))
        return got.md5

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                    stream: BinaryIO, length: Optional[int], content_md5: Optional[str] = None) -> str:
        """Store one part; returns its ETag (MD5 hex, upper case)."""
        self.get_upload(bucket, key, upload_id)
        got = self._receive(stream, length, content_md5)
        try:
            return self._install_part(bucket, key, upload_id, part_number, got)
        finally:
            _unlink(got.path)

    def upload_part_copy(self, bucket: str, key: str, upload_id: str, part_number: int,
                         src_bucket: str, src_key: str, start: Optional[int] = None,
                         end_inclusive: Optional[int] = None) -> str:
        """Copy a byte range of another object into a part; InvalidRange when out of range."""
        self.get_upload(bucket, key, upload_id)
        src, f = self.open_object(src_bucket, src_key)
        with f:
            if start is None:
                start, end_inclusive = 0, src.size - 1
            if start < 0 or end_inclusive >= src.size or start > end_inclusive:
                raise StoreError("InvalidRange", 416, "The requested range is not satisfiable")
            f.seek(start)
            got = self._receive(_Limited(f, end_inclusive - start + 1), end_inclusive - start + 1)
        try:
            return self._install_part(bucket, key, upload_id, part_number, got)
        finally:
            _unlink(got.path)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> List[PartRecord]:
        with self._lock:
            self._get_upload(bucket, key, upload_id)
            rows = self._db.execute("SELECT part_number, etag, size, crc64, mtime, blob FROM parts "
                                    "WHERE upload_id=? ORDER BY part_number", (upload_id,)).fetchall()
        return [PartRecord(n, e, s, int(c), t, b) for n, e, s, c, t, b in rows]

    def list_uploads(self, bucket: str, prefix: str = "", key_marker: str = "",
                     upload_id_marker: str = "", max_uploads: int = 1000) -> Tuple[List[UploadRecord], bool]:
        """Uploads in progress ordered by (key bytes, upload id); returns (uploads, truncated)."""
        p = (prefix or "").encode("utf-8")
        km = (key_marker or "").encode("utf-8")
        with self._lock:
            self._check_bucket(bucket)
            rows = self._db.execute(
                "SELECT upload_id, key, initiated, content_type, meta, headers FROM uploads "
                "WHERE bucket=? AND key >= ? AND key < ? AND (key > ? OR (key = ? AND upload_id > ?)) "
                "ORDER BY key, upload_id LIMIT ?",
                (bucket, p, p + b"\xff", km, km, upload_id_marker if upload_id_marker else
                 ("" if not km else "\uffff"), max_uploads + 1)).fetchall()
        ups = [UploadRecord(bucket, bytes(k).decode("utf-8", "surrogatepass"), u, t, c,
                            json.loads(m), json.loads(h)) for u, k, t, c, m, h in rows]
        return ups[:max_uploads], len(ups) > max_uploads

    def _parts_of(self, upload_id: str) -> Dict[int, PartRecord]:
        """The parts of ``upload_id`` by number (caller holds the lock)."""
        return {n: PartRecord(n, e, s, int(c), t, b) for n, e, s, c, t, b in self._db.execute(
            "SELECT part_number, etag, size, crc64, mtime, blob FROM parts WHERE upload_id=?",
            (upload_id,))}

    def complete_upload(self, bucket: str, key: str, upload_id: str,
                        parts: List[Tuple[int, str]]) -> ObjectRecord:
        """Make ``parts`` (ascending part numbers, ETags without quotes) the object.

        The object is a manifest of the chosen parts' files (no data is copied); the
        upload's rows go and the object's row comes in one sqlite transaction, then the
        files of parts left out and of the replaced version are deleted.

        InvalidPartOrder, InvalidPart (unknown part or ETag mismatch), EntityTooSmall
        (a part other than the last below 100 KiB), as OSS does.
        """
        raw_key = validate_key(key)
        for _ in range(3):
            with self._lock:
                up = self._get_upload(bucket, key, upload_id)
                stored = self._parts_of(upload_id)
            chosen = _choose_parts(parts, stored)
            # CRCs are combined outside the lock: a length not seen before costs ~0.3 ms
            crc, size = 0, 0
            for part in chosen:
                crc = crc64_combine(crc, part.crc64, part.size) if size else part.crc64
                size += part.size
            rec = ObjectRecord(bucket, key, size, multipart_etag([p.etag for p in chosen]), crc,
                               time.time(), up.content_type, up.user_meta, up.headers, "Multipart",
                               segments=[(p.blob, p.size) for p in chosen])
            with self._lock:
                # the upload must still exist: a concurrent complete/abort wins otherwise
                self._get_upload(bucket, key, upload_id)
                now = self._parts_of(upload_id)
                if any(now.get(p.part_number) != p for p in chosen):
                    continue   # a chosen part was uploaded again meanwhile: validate afresh
                old = self._get_row(bucket, raw_key)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
                    self._db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
                    self._write_row(rec, raw_key)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            used = {p.blob for p in chosen}
            for part in now.values():
                if part.blob not in used:
                    _unlink(os.path.join(self.part_dir, part.blob))
            if old is not None:
                self._discard(old)
            return rec
        raise StoreError("InvalidPart", 400, "The parts of the upload kept changing while it was being "
                         "completed; complete it again.")

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self._lock:
            self._get_upload(bucket, key, upload_id)
            blobs = [r[0] for r in self._db.execute("SELECT blob FROM parts WHERE upload_id=?", (upload_id,))]
            self._db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
            self._db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
        for b in blobs:
            _unlink(os.path.join(self.part_dir, b))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _choose_parts(parts: List[Tuple[int, str]], stored: Dict[int, PartRecord]) -> List[PartRecord]:
    """The stored parts that ``parts`` (number, ETag) name, after OSS's checks."""
    if not parts:
        raise StoreError("InvalidPart", 400, "The request must name at least one part.")
    chosen: List[PartRecord] = []
    prev = 0
    for number, etag in parts:
        if number <= prev:
            raise StoreError("InvalidPartOrder", 400, "The list of parts was not in ascending order.")
        prev = number
        part = stored.get(number)
        if part is None or part.etag != etag.strip('"').upper():
            raise StoreError("InvalidPart", 400, "One or more of the specified parts could not be found "
                             "or the specified entity tag might not have matched the part's entity tag.")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise StoreError("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum "
                             "allowed size.")
    return chosen


class _SegmentReader:
    """A read-only, seekable binary file over the concatenation of segment files.

    Segments are opened lazily, one at a time, when the position reaches them; the
    store keeps them from being deleted until :meth:`close` (which calls ``release``
    once).  A segment file shorter than its recorded size reads as the end of the
    body, as a truncated single file would.
    """

    def __init__(self, paths: List[str], sizes: List[int], release):
        self._paths = paths
        self._starts: List[int] = []
        total = 0
        for z in sizes:
            self._starts.append(total)
            total += z
        self._sizes = sizes
        self._size = total
        self._pos = 0
        self._index = -1                 # segment of self._f
        self._f: Optional[BinaryIO] = None
        self._release = release
        self.closed = False

    def __enter__(self) -> "_SegmentReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError("invalid whence: %r" % (whence,))
        if pos < 0:
            raise ValueError("negative seek position %d" % pos)
        self._pos = pos
        return pos

    def _segment(self) -> Tuple[BinaryIO, int]:
        """The open segment holding the position, positioned there, and the bytes left in it."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        # the last segment starting at or before the position (an empty segment shares
        # its start with the next one, so it is never picked while bytes are left)
        i = bisect.bisect_right(self._starts, self._pos) - 1
        if i != self._index:
            if self._f is not None:
                self._f.close()
                self._f = None
            self._f = open(self._paths[i], "rb")
            self._index = i
        off = self._pos - self._starts[i]
        if self._f.tell() != off:
            self._f.seek(off)
        return self._f, self._sizes[i] - off

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); fewer only at the end."""
        left = max(0, self._size - self._pos)
        if size is None or size < 0 or size > left:
            size = left
        chunks: List[bytes] = []
        got = 0
        for _ in range(len(self._paths)):        # each step ends a segment or the read
            if got >= size:
                break
            f, in_segment = self._segment()
            want = min(size - got, in_segment)
            data = f.read(want)
            chunks.append(data)
            got += len(data)
            self._pos += len(data)
            if len(data) < want:
                break                            # the segment file ended early
        # within one segment (the usual case) the file's own bytes, uncopied
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, view) -> int:
        view = memoryview(view).cast("B")
        left = self._size - self._pos
        if left <= 0 or not len(view):
            return 0
        f, in_segment = self._segment()
        n = f.readinto(view[:min(len(view), in_segment, left)]) or 0
        self._pos += n
        return n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._f is not None:
                self._f.close()
                self._f = None
        finally:
            self._release()


class _Limited:
    """A read-only view of the next ``n`` bytes of a file."""

    def __init__(self, f: BinaryIO, n: int):
        self._f, self._n = f, n

    def read(self, size: int = -1) -> bytes:
        if self._n <= 0:
            return b""
        if size < 0 or size > self._n:
            size = self._n
        buf = self._f.read(size)
        self._n -= len(buf)
        return buf

    def readinto(self, view) -> int:
        if self._n <= 0:
            return 0
        view = memoryview(view)[:self._n]
        n = self._f.readinto(view) or 0
        self._n -= n
        return n


class _Digests:
    """MD5 and CRC-64 of a body that arrives in buffers, overlapped with its reception.

    On two cores a single PUT used to be bounded by one thread doing socket reads,
    MD5 (~560 MB/s), crcmod's CRC-64 (~350 MB/s, GIL held) and the file write in turn.
    Now the receiving thread reads into a buffer from a small ring, writes it and
    updates the CRC (fastcrc releases the GIL), then hands the buffer to a worker
    thread that runs MD5 over it (hashlib releases the GIL for large buffers) and
    returns it to the ring.  So MD5 runs beside the socket reads and writes; the ring
    (``RING`` buffers of ``CHUNK`` bytes) bounds the memory and lets the receiver run
    at most that far ahead.  Small bodies are hashed inline: a thread would cost more
    than it saves.

    Threads: ``_full`` and ``_free`` are the only state shared with the worker; the MD5
    objects are touched by the worker alone until :meth:`finish` has joined it.
    """

    RING = 8

    def __init__(self, separate_new: bool, pipelined: bool):
        self._md5 = hashlib.md5()
        self._new_md5 = hashlib.md5() if separate_new else None
        self._crc = 0
        self._worker: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        if pipelined:
            self._free: "queue.Queue[bytearray]" = queue.Queue()
            for _ in range(self.RING):
                self._free.put(bytearray(CHUNK))
            self._full: "queue.Queue" = queue.Queue()
            self._worker = threading.Thread(target=self._run, name="ossfs-server-md5", daemon=True)
            self._worker.start()
        else:
            self._spare = bytearray(CHUNK)

    def buffer(self) -> bytearray:
        """A buffer of ``CHUNK`` bytes to fill; hand it to :meth:`add` or :meth:`give_back`."""
        if self._worker is None:
            return self._spare
        return self._free.get()

    def give_back(self, buf: bytearray) -> None:
        if self._worker is not None:
            self._free.put(buf)

    def add(self, buf: bytearray, n: int, new: bool) -> None:
        """Account the first ``n`` bytes of ``buf`` (``new``: part of the request body)."""
        view = memoryview(buf)[:n]
        self._crc = _crc64_update(view, self._crc)
        if self._worker is None:
            self._hash(view, new)
        else:
            self._full.put((buf, n, new))

    def _hash(self, view, new: bool) -> None:
        self._md5.update(view)
        if new and self._new_md5 is not None:
            self._new_md5.update(view)

    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            buf, n, new = item
            try:
                if self._error is None:
                    self._hash(memoryview(buf)[:n], new)
            except BaseException as e:   # reported by finish(); keep recycling buffers
                self._error = e
            finally:
                self._free.put(buf)

    def close(self) -> None:
        """Stop the worker (idempotent; also on error paths)."""
        if self._worker is not None:
            self._full.put(None)
            self._worker.join()
            self._worker = None

    def finish(self) -> Tuple[str, str, int]:
        """(MD5 hex of everything, MD5 hex of the new bytes, CRC-64) in upper case."""
        self.close()
        if self._error is not None:
            raise self._error
        md5 = self._md5.hexdigest().upper()
        new = self._new_md5.hexdigest().upper() if self._new_md5 is not None else md5
        return md5, new, self._crc


def _read_into(stream, view: memoryview) -> int:
    """Read up to ``len(view)`` bytes of ``stream`` into ``view``; 0 at the end.

    Streams with ``readinto`` (request bodies, files) fill the buffer in place; others
    (wrappers such as a decoder of a framed body) go through ``read``.
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        try:
            return readinto(view) or 0
        except (NotImplementedError, io.UnsupportedOperation):
            pass   # an io base class's stub: the stream only implements read()
    data = stream.read(len(view))
    n = len(data)
    view[:n] = data
    return n


def _write_all(fd: int, view: memoryview) -> None:
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
