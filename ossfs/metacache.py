"""The persistent metadata cache: what HEAD said about each object, kept on disk in the
mount's cache directory so that ``ls -l`` after a remount costs LIST pages only.

Owns ``meta.sqlite`` (plus its ``-wal``/``-shm`` files, all mode 0600) in the cache
directory of one mount (bucket + prefix).  One row per mount-relative key (``a/b``
for ``/a/b``; never the root) holding a :class:`Record`: the entry's form (see
``namespace.py``), the key of the object carrying its attributes, and that object's
HEAD result (size, ETag, Last-Modified, Content-Type, user meta, object type, the
standard headers a header rewrite must send again: ``store.KEPT_HEADERS``), plus
``checked``: when this host last learnt it from the server (a HEAD, a LIST that
matched it, or the answer to one of this mount's own PUT/copy/complete requests).

Why sqlite (WAL) and not diskcache: a listing reads and writes thousands of rows at
once, and sqlite does it in one statement and one transaction; WAL makes a commit
cheap (no fsync per write with ``synchronous=NORMAL``) and survives a crash of the
process (kill -9) intact.  A power loss may lose the last commits: this is a cache,
and a lost row only costs a HEAD.

Contract (enforced by ``namespace.py``, the only user):

* A row is a *claim*, never the truth.  It is used for a file only when the ETag,
  size and Last-Modified of a LIST entry the server just sent equal the row's; for
  ``stat`` without a listing (and for directories, which LIST describes without
  ETags) only while ``checked`` is younger than ``stat_cache_expire``.
* ``own`` rows come from this mount's writes: their Last-Modified is the time the
  server answered (the ``Date`` header when the server does not send
  ``Last-Modified``), which may be one second later than what LIST shows; such a row
  matches a LIST entry whose Last-Modified is within one second before or after,
  and then takes the listed value (``own`` cleared).
* Size bound: at most ``max_records`` rows (default 1,000,000, about 300 bytes each;
  the in-memory stat cache stays bounded by ``max_stat_cache_size``).  When the table
  grows past it, the rows checked longest ago are dropped (10% at a time).
* An unreadable or foreign database is moved aside and started afresh (logged): the
  cache must never stop a mount.

Threads: one connection (``check_same_thread=False``) guarded by ``_lock``; every
method takes it for the duration of its statements.  No network call is made here.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

log = logging.getLogger(__name__)

FILENAME = "meta.sqlite"
SCHEMA_VERSION = 2  # 2: the headers column (version 1 tables gain it, their rows NULL)
DEFAULT_MAX_RECORDS = 1_000_000
_CHUNK = 500  # keys per "IN (...)" query (sqlite's variable limit is 999 on old builds)


@dataclass(frozen=True)
class Record:
    """One row: what the server said about the object behind ``path_key``."""

    path_key: str
    form: str
    obj_key: Optional[str]        # None for implicit directories
    size: int = 0
    etag: str = ""
    last_modified: float = 0.0
    content_type: str = ""
    meta: Optional[dict] = None   # None: only LIST data was known
    object_type: str = "Normal"
    checked: float = 0.0
    own: bool = False
    headers: Optional[dict] = None  # None: not known (a row from before they were kept)


_COLUMNS = ("path_key, form, obj_key, size, etag, last_modified, content_type, meta, object_type, checked, own, "
            "headers")


def _json(value: Optional[dict]) -> Optional[str]:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _dict(text: Optional[str]) -> Optional[dict]:
    if text == "{}":  # most rows' headers: no JSON parse per row of a listing
        return {}
    value = None if text is None else json.loads(text)
    return value if isinstance(value, dict) else None


def _row(rec: Record) -> tuple:
    return (rec.path_key, rec.form, rec.obj_key, rec.size, rec.etag, rec.last_modified, rec.content_type,
            _json(rec.meta), rec.object_type, rec.checked, 1 if rec.own else 0, _json(rec.headers))


def _record(row) -> Optional[Record]:
    try:
        return Record(row[0], row[1], row[2], int(row[3]), row[4] or "", float(row[5]), row[6] or "",
                      _dict(row[7]), row[8] or "Normal", float(row[9]), bool(row[10]), _dict(row[11]))
    except (TypeError, ValueError):
        return None


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class MetaCache:
    """The on-disk table of :class:`Record` (see the module docstring)."""

    def __init__(self, directory: str, *, max_records: int = DEFAULT_MAX_RECORDS,
                 clock: Callable[[], float] = time.time):
        self.path = os.path.join(directory, FILENAME)
        self.max_records = max(1, max_records)
        self.clock = clock
        self._lock = threading.Lock()
        self._writes = 0  # GUARDED_BY(_lock): rows written since the last size check
        self._db = self._open()  # GUARDED_BY(_lock)

    def _open(self) -> sqlite3.Connection:
        old = os.umask(0o077)  # the -wal and -shm files are created later, with this umask
        try:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                log.warning("metadata cache %s is unreadable (%s); starting a new one", self.path, exc)
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.replace(self.path + suffix, self.path + suffix + ".bad")
                    except FileNotFoundError:
                        pass
                return self._connect()
        finally:
            os.umask(old)

    def _connect(self) -> sqlite3.Connection:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                db.execute("ALTER TABLE records ADD COLUMN headers TEXT")
            elif version not in (0, SCHEMA_VERSION):
                db.execute("DROP TABLE IF EXISTS records")
            db.execute("CREATE TABLE IF NOT EXISTS records (path_key TEXT PRIMARY KEY, form TEXT NOT NULL, "
                       "obj_key TEXT, size INTEGER, etag TEXT, last_modified REAL, content_type TEXT, "
                       "meta TEXT, object_type TEXT, checked REAL, own INTEGER, headers TEXT) WITHOUT ROWID")
            db.execute("CREATE INDEX IF NOT EXISTS records_checked ON records (checked)")
            db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None

    # --- reads ---

    def get(self, path_key: str) -> Optional[Record]:
        return self.get_many([path_key]).get(path_key)

    def get_many(self, path_keys: Iterable[str]) -> dict:
        """``{path_key: Record}`` of the keys that have a row."""
        keys = list(path_keys)
        out = {}
        with self._lock:
            if self._db is None:
                return out
            try:
                for i in range(0, len(keys), _CHUNK):
                    chunk = keys[i:i + _CHUNK]
                    sql = "SELECT %s FROM records WHERE path_key IN (%s)" % (_COLUMNS, ",".join("?" * len(chunk)))
                    for row in self._db.execute(sql, chunk):
                        rec = _record(row)
                        if rec is not None:
                            out[rec.path_key] = rec
            except sqlite3.Error as exc:
                log.warning("metadata cache read failed: %s", exc)
        return out

    def children(self, prefix: str) -> list:
        """Path keys of the rows directly below directory prefix ``prefix`` (``a/`` or
        ``""`` for the root), with their ``checked`` time: ``[(path_key, checked)]``."""
        with self._lock:
            if self._db is None:
                return []
            try:
                if prefix:
                    rows = self._db.execute("SELECT path_key, checked FROM records WHERE path_key >= ? "
                                            "AND path_key < ?", (prefix, _prefix_end(prefix))).fetchall()
                else:
                    rows = self._db.execute("SELECT path_key, checked FROM records").fetchall()
            except sqlite3.Error as exc:
                log.warning("metadata cache read failed: %s", exc)
                return []
        n = len(prefix)
        return [(k, c) for k, c in rows if len(k) > n and "/" not in k[n:]]

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return 0
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    # --- writes ---

    def put_many(self, records: Iterable[Record]) -> None:
        rows = [_row(r) for r in records]
        if not rows:
            return
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO records (%s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                                     % _COLUMNS, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.warning("metadata cache write failed: %s", exc)
                self._rollback()
                return
            self._writes += len(rows)
            if self._writes >= max(1000, self.max_records // 10):
                self._writes = 0
                self._trim()

    def put(self, record: Record) -> None:
        self.put_many([record])

    def delete_many(self, path_keys: Iterable[str]) -> None:
        keys = [(k,) for k in path_keys]
        if not keys:
            return
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM records WHERE path_key = ?", keys)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.warning("metadata cache write failed: %s", exc)
                self._rollback()

    def delete_tree(self, path_key: str) -> None:
        """Drop the row of ``path_key`` and every row below it."""
        with self._lock:
            if self._db is None:
                return
            below = path_key + "/"
            try:
                self._db.execute("DELETE FROM records WHERE path_key = ? OR (path_key >= ? AND path_key < ?)",
                                 (path_key, below, _prefix_end(below)))
            except sqlite3.Error as exc:
                log.warning("metadata cache write failed: %s", exc)

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _trim(self) -> None:
        """Keep at most ``max_records`` rows (caller holds ``_lock``)."""
        count = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        if count <= self.max_records:
            return
        drop = count - self.max_records + self.max_records // 10
        self._db.execute("DELETE FROM records WHERE path_key IN (SELECT path_key FROM records "
                         "ORDER BY checked LIMIT ?)", (drop,))
        log.info("metadata cache: dropped %d rows checked longest ago (limit %d)", drop, self.max_records)
