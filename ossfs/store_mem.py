"""In-memory :class:`~ossfs.store.ObjectStore`: a faithful fake of one OSS bucket.

Owns nothing but its own dictionaries; used by the tests of the filesystem core and
by the store contract suite, which it passes alongside ``OssStore``.

Faithful where the core could tell the difference:

* ETags are upper-case hex MD5 of the body; a completed multipart upload gets
  ``<HEX>-<N>`` where HEX is the MD5 of the concatenated binary MD5s of its parts
  (what OSS and S3 send).  A copy keeps the source's ETag (same bytes).
* CRC64 is CRC-64/ECMA-182 as ``oss2.utils.Crc64`` computes it (reflected, xorout
  all ones; *not* crcmod's predefined ``crc-64-we``, which is unreflected).
* LIST pages are in UTF-8 byte order of the keys, with delimiter roll-up into common
  prefixes, at most ``max_keys`` entries (objects + prefixes) per page, and a
  continuation token that is the last key or prefix returned (OSS ``NextMarker``);
  the token is None exactly when nothing follows.
* Metadata dictionaries are copied on the way in and on the way out: a caller
  mutating what it passed or got back never changes the stored object.  Names are
  lower-cased, as HTTP headers come back from OSS.
* ``if_match`` mismatches raise ``PreconditionFailed``; missing keys ``NotFound``;
  parts smaller than ``min_part_size`` (100 KiB, as OSS) other than the last one make
  ``complete_multipart`` fail with ``EntityTooSmall``; unknown or mismatched parts
  with ``InvalidPart``; a part whose stated CRC64 differs ``IntegrityError``; a CopyObject source above 1 GiB fails like OSS does.
* ``last_modified`` comes from the injected ``clock`` (whole seconds, as the HTTP
  header carries them).

Test hooks: ``counts`` (a ``collections.Counter`` of OSS operation names, e.g.
``"PutObject"``, ``"HeadObject"``, ``"GetObject"``, ``"ListObjects"``,
``"CopyObject"``, ``"DeleteObject"``, ``"DeleteMultipleObjects"``,
``"InitiateMultipartUpload"``, ``"UploadPart"``, ``"UploadPartCopy"``,
``"CompleteMultipartUpload"``, ``"AbortMultipartUpload"``, ``"ListParts"``,
``"ListMultipartUploads"``), ``fail_next(op, exc, times=1)`` to make the next calls
of one operation raise, and ``peek(key)`` to read a body without counting a GET.

Threads: one ``threading.Lock`` (``_lock``) guards every dictionary and ``counts``;
it is never held while calling out (the clock is called under it, and must not block).
"""
from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional, Tuple

import crcmod

from .errors import IntegrityError, NotFound, PreconditionFailed, StoreError
from .store import Body, ListPage, ObjectInfo, PartInfo, UploadInfo

log = logging.getLogger(__name__)

_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)

MAX_COPY_SIZE = 1 << 30
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def crc64(data: bytes) -> int:
    """CRC-64/ECMA-182 of ``data`` as OSS reports it in ``x-oss-hash-crc64ecma``."""
    return _crc64(bytes(data))


def _read_body(body: Body) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    chunks = []
    while True:
        chunk = body.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


@dataclass
class _Object:
    data: bytes
    info: ObjectInfo  # meta is a private dict, copied whenever it leaves


@dataclass
class _Upload:
    key: str
    meta: dict
    content_type: str
    initiated: float
    parts: dict = field(default_factory=dict)  # part_number -> (etag, bytes)


class MemoryStore:
    """An ``ObjectStore`` holding one bucket in memory (see the module docstring)."""

    def __init__(self, bucket: str = "b", clock: Callable[[], float] = time.time,
                 min_part_size: int = 100 * 1024):
        self.bucket = bucket
        self.clock = clock
        self.min_part_size = min_part_size
        self.counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._objects: dict = {}  # GUARDED_BY(_lock): key -> _Object
        self._uploads: dict = {}  # GUARDED_BY(_lock): upload_id -> _Upload
        self._failures: dict = {}  # GUARDED_BY(_lock): op -> [exc, remaining]

    # --- test hooks ---

    def fail_next(self, op: str, exc: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of operation ``op`` raise ``exc``."""
        with self._lock:
            self._failures[op] = [exc, times]

    def peek(self, key: str) -> bytes:
        """The body of ``key`` without counting a GET (NotFound if missing)."""
        with self._lock:
            return self._get(key).data

    def keys(self) -> list:
        """Every key, in listing order (not counted)."""
        with self._lock:
            return sorted(self._objects, key=lambda k: k.encode("utf-8", "surrogatepass"))

    # --- internals (call with _lock held) ---

    def _op(self, op: str) -> None:
        self.counts[op] += 1
        failure = self._failures.get(op)
        if failure is not None:
            exc, remaining = failure
            if remaining <= 1:
                del self._failures[op]
            else:
                failure[1] = remaining - 1
            raise exc

    def _get(self, key: str) -> _Object:
        obj = self._objects.get(key)
        if obj is None:
            raise NotFound("no such key: %s" % key, code="NoSuchKey", status=404)
        return obj

    def _check_match(self, obj: _Object, if_match: Optional[str]) -> None:
        if if_match is not None and if_match.strip('"').upper() != obj.info.etag:
            raise PreconditionFailed("etag of %s is not %s" % (obj.info.key, if_match),
                                     code="PreconditionFailed", status=412)

    def _now(self) -> float:
        return float(int(self.clock()))

    @staticmethod
    def _check_key(key: str) -> None:
        if not key or key.startswith(("/", "\\")) or len(key.encode("utf-8", "surrogatepass")) > 1023:
            raise StoreError("invalid object name %r" % key[:80], code="InvalidObjectName", status=400)

    def _store(self, key: str, data: bytes, meta: Optional[dict], content_type: str,
               etag: Optional[str] = None, object_type: str = "Normal") -> ObjectInfo:
        info = ObjectInfo(key=key, size=len(data), etag=etag or _md5_hex(data),
                          last_modified=self._now(), content_type=content_type or DEFAULT_CONTENT_TYPE,
                          meta={str(k).lower(): str(v) for k, v in (meta or {}).items()},
                          crc64=crc64(data), object_type=object_type)
        self._objects[key] = _Object(data, info)
        return self._out(info)

    @staticmethod
    def _out(info: ObjectInfo) -> ObjectInfo:
        return replace(info, meta=dict(info.meta or {}))

    # --- ObjectStore ---

    def check_bucket(self, deadline: float = 20.0) -> None:
        with self._lock:
            self._op("GetBucketInfo")

    def head(self, key: str) -> ObjectInfo:
        with self._lock:
            self._op("HeadObject")
            return self._out(self._get(key).info)

    def get_first(self, key: str, length: int) -> Tuple[ObjectInfo, bytes]:
        with self._lock:
            self._op("GetObject")
            obj = self._get(key)
            return self._out(obj.info), obj.data[:max(0, length)]

    def get_range(self, key: str, start: int, length: int, if_match: Optional[str] = None) -> bytes:
        with self._lock:
            self._op("GetObject")
            obj = self._get(key)
            self._check_match(obj, if_match)
            return obj.data[start:start + max(0, length)]

    def get_to_file(self, key, fileobj, start: int = 0, length: Optional[int] = None,
                    if_match: Optional[str] = None) -> int:
        with self._lock:
            self._op("GetObject")
            obj = self._get(key)
            self._check_match(obj, if_match)
            data = obj.data[start:] if length is None else obj.data[start:start + max(0, length)]
        fileobj.write(data)
        return len(data)

    def put(self, key: str, body: Body, meta: Optional[dict] = None, content_type: str = "",
            if_match: Optional[str] = None) -> ObjectInfo:
        self._check_key(key)
        data = _read_body(body)
        with self._lock:
            self._op("PutObject")
            if if_match is not None:
                self._check_match(self._get(key), if_match)
            return self._store(key, data, meta, content_type)

    def copy(self, src_key: str, dst_key: str, meta: Optional[dict] = None, content_type: str = "",
             if_match: Optional[str] = None, source: Optional[ObjectInfo] = None) -> ObjectInfo:
        # ``source`` only saves the OSS store a HEAD; this store looks the source up anyway.
        self._check_key(dst_key)
        with self._lock:
            self._op("CopyObject")
            src = self._get(src_key)
            self._check_match(src, if_match)
            if src.info.size > MAX_COPY_SIZE:
                raise StoreError("source larger than 1GB; use UploadPartCopy",
                                 code="InvalidArgument", status=400)
            if meta is None:
                new_meta, ctype = src.info.meta, src.info.content_type
            else:
                new_meta, ctype = meta, content_type
            return self._store(dst_key, src.data, new_meta, ctype, etag=src.info.etag,
                               object_type=src.info.object_type)

    def delete(self, key: str) -> None:
        with self._lock:
            self._op("DeleteObject")
            self._objects.pop(key, None)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            with self._lock:
                self._op("DeleteMultipleObjects")
                for key in keys[i:i + 1000]:
                    self._objects.pop(key, None)

    def list(self, prefix: str, delimiter: str = "/", token: Optional[str] = None,
             max_keys: int = 1000) -> ListPage:
        max_keys = max(1, min(int(max_keys), 1000))
        enc = lambda s: s.encode("utf-8", "surrogatepass")  # noqa: E731
        p, d, m = enc(prefix or ""), enc(delimiter or ""), enc(token or "")
        with self._lock:
            self._op("ListObjects")
            candidates = sorted((enc(k), obj.info) for k, obj in self._objects.items()
                                if enc(k).startswith(p) and enc(k) > m)
        page = ListPage()
        seen_prefix = None
        last = None
        for raw, info in candidates:
            if d:
                i = raw.find(d, len(p))
                if i >= 0:
                    cp = raw[:i + len(d)]
                    if cp <= m or cp == seen_prefix:
                        continue
                    if len(page.objects) + len(page.prefixes) >= max_keys:
                        page.next_token = last
                        return page
                    seen_prefix = cp
                    page.prefixes.append(cp.decode("utf-8", "surrogatepass"))
                    last = page.prefixes[-1]
                    continue
            if len(page.objects) + len(page.prefixes) >= max_keys:
                page.next_token = last
                return page
            page.objects.append(replace(info, meta=None))
            last = info.key
        return page

    def initiate_multipart(self, key: str, meta: Optional[dict] = None, content_type: str = "") -> str:
        self._check_key(key)
        with self._lock:
            self._op("InitiateMultipartUpload")
            upload_id = uuid.uuid4().hex.upper()
            self._uploads[upload_id] = _Upload(key, dict(meta or {}), content_type, self._now())
            return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        up = self._uploads.get(upload_id)
        if up is None or up.key != key:
            raise NotFound("no such upload %s" % upload_id, code="NoSuchUpload", status=404)
        return up

    def upload_part(self, key: str, upload_id: str, part_number: int, body: Body) -> PartInfo:
        data = _read_body(body)
        if not 1 <= part_number <= 10000:
            raise StoreError("part number out of range", code="InvalidArgument", status=400)
        with self._lock:
            self._op("UploadPart")
            up = self._upload(key, upload_id)
            etag = _md5_hex(data)
            up.parts[part_number] = (etag, data)
            return PartInfo(part_number, etag, len(data), crc64(data))

    def upload_part_copy(self, key: str, upload_id: str, part_number: int, src_key: str,
                         start: int, length: int, if_match: Optional[str] = None) -> PartInfo:
        with self._lock:
            self._op("UploadPartCopy")
            up = self._upload(key, upload_id)
            src = self._get(src_key)
            self._check_match(src, if_match)
            if start < 0 or length <= 0 or start + length > src.info.size:
                raise StoreError("invalid copy range", code="InvalidRange", status=416)
            data = src.data[start:start + length]
            etag = _md5_hex(data)
            up.parts[part_number] = (etag, data)
            return PartInfo(part_number, etag, len(data), crc64(data))

    def complete_multipart(self, key: str, upload_id: str, parts: list) -> ObjectInfo:
        with self._lock:
            self._op("CompleteMultipartUpload")
            up = self._upload(key, upload_id)
            if not parts:
                raise StoreError("no parts", code="InvalidPart", status=400)
            numbers = [p.part_number for p in parts]
            if numbers != sorted(set(numbers)):
                raise StoreError("parts not in ascending order", code="InvalidPartOrder", status=400)
            chunks, digests = [], []
            for i, p in enumerate(parts):
                held = up.parts.get(p.part_number)
                if held is None or held[0] != p.etag.strip('"').upper():
                    raise StoreError("part %d not uploaded or etag mismatch" % p.part_number,
                                     code="InvalidPart", status=400)
                if i < len(parts) - 1 and len(held[1]) < self.min_part_size:
                    raise StoreError("part %d too small" % p.part_number,
                                     code="EntityTooSmall", status=400)
                if p.crc64 is not None and p.crc64 != crc64(held[1]):
                    raise IntegrityError("part %d: CRC64 differs from the server's" % p.part_number,
                                         code="InconsistentError")
                chunks.append(held[1])
                digests.append(bytes.fromhex(held[0]))
            etag = "%s-%d" % (_md5_hex(b"".join(digests)), len(parts))
            del self._uploads[upload_id]
            return self._store(key, b"".join(chunks), up.meta, up.content_type, etag=etag,
                               object_type="Multipart")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with self._lock:
            self._op("AbortMultipartUpload")
            self._upload(key, upload_id)
            del self._uploads[upload_id]

    def list_parts(self, key: str, upload_id: str) -> list:
        with self._lock:
            self._op("ListParts")
            up = self._upload(key, upload_id)
            return [PartInfo(n, etag, len(data), crc64(data)) for n, (etag, data) in sorted(up.parts.items())]

    def list_multipart_uploads(self, prefix: str = "") -> list:
        with self._lock:
            self._op("ListMultipartUploads")
            ups = [UploadInfo(u.key, uid, u.initiated) for uid, u in self._uploads.items()
                   if u.key.startswith(prefix)]
        return sorted(ups, key=lambda u: (u.key.encode("utf-8", "surrogatepass"), u.initiated))
