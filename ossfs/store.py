"""The object-store contract every backend implements, and the records it returns.

The filesystem core talks to OSS only through :class:`ObjectStore`.  Implementations:

* ``store_oss.OssStore``: the real one, the only module that imports ``oss2``;
* ``store_mem.MemoryStore``: an in-memory fake with real-looking ETags and an
  injectable clock, for fast tests of the core.

Both pass the same contract suite (``tests/test_store_contract.py``).

Contract, shared by every method:

* Keys are ``str`` (UTF-8 on the wire), never starting with ``/``.
* ETags are returned **without quotes**, upper-case hex as OSS sends them
  (``"5EB63BBBE01EEED093CB22BB8F5ACDC3"``, multipart ``"<HEX>-<N>"``).
* ``meta`` dictionaries hold user metadata with the ``x-oss-meta-`` prefix removed and
  names lower-cased: ``{"mode": "33188", "uid": "0"}``.
* Errors are the types of :mod:`ossfs.errors`: ``NotFound``, ``NoSuchBucket``,
  ``AccessDenied``, ``PreconditionFailed``, ``IntegrityError``, ``TransientError``
  (only after retries are exhausted), ``StoreError`` for the rest.
* Transient failures (5xx, timeouts, dropped connections) are retried inside the
  store with exponential backoff and jitter, up to ``retries`` attempts.
* Every upload sends ``Content-MD5``; whole-object CRC64 is compared with the
  server's ``x-oss-hash-crc64ecma`` where the server returns it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Optional, Protocol, Tuple, Union


# Standard headers that tell those who download an object how to treat its bytes.  OSS
# drops them when a copy replaces an object's headers (x-oss-metadata-directive:
# REPLACE, how chmod, chown, touch and setxattr are made) and in a copy in parts (a
# rename above the CopyObject limit); the OSS store sends them again.
KEPT_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD (or a LIST entry) tells about one object.

    ``meta`` is ``None`` for LIST entries (LIST carries no user metadata) and a dict
    (possibly empty) for HEAD results.  ``headers``: the object's KEPT_HEADERS
    (lower-case names), ``None`` when not known (LIST entries, older cache rows).
    """

    key: str
    size: int
    etag: str
    last_modified: float  # epoch seconds
    content_type: str = ""
    meta: Optional[dict] = None
    crc64: Optional[int] = None
    object_type: str = "Normal"  # Normal | Multipart | Appendable | Symlink
    headers: Optional[dict] = None


@dataclass
class ListPage:
    """One page of a ListObjects call with a delimiter.

    ``prefixes`` are the CommonPrefixes (full keys ending in the delimiter);
    ``next_token`` is ``None`` when the listing is complete.
    """

    objects: list = field(default_factory=list)  # list[ObjectInfo] with meta=None
    prefixes: list = field(default_factory=list)  # list[str]
    next_token: Optional[str] = None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str
    size: int
    crc64: Optional[int] = None  # the part's CRC64 when known (sent by the server or computed locally)


@dataclass(frozen=True)
class UploadInfo:
    key: str
    upload_id: str
    initiated: float  # epoch seconds


Body = Union[bytes, bytearray, memoryview, BinaryIO]


class ObjectStore(Protocol):
    """One bucket (and optional key prefix already applied by the caller)."""

    bucket: str

    def check_bucket(self, deadline: float = 20.0) -> None:
        """Fail fast if the endpoint is unreachable (Unreachable), the key is wrong
        (AccessDenied) or the bucket does not exist (NoSuchBucket); a server that
        answers but fails (5xx) is asked again within about ``deadline`` seconds."""

    def head(self, key: str) -> ObjectInfo:
        """HEAD the object; raises NotFound."""

    def get_first(self, key: str, length: int) -> Tuple[ObjectInfo, bytes]:
        """One GET of the first ``length`` bytes (all of a smaller object) and what
        HEAD would say about the object (``size`` is the whole object's); raises
        NotFound.  Opening a file for reading asks this instead of HEAD: one request
        answers both the open's check of the current version and the first read."""

    def get_range(self, key: str, start: int, length: int, if_match: Optional[str] = None) -> bytes:
        """Bytes ``[start, start+length)`` (fewer at end of object).  With ``if_match``,
        raises PreconditionFailed if the object's ETag is different."""

    def get_to_file(self, key: str, fileobj: BinaryIO, start: int = 0, length: Optional[int] = None,
                    if_match: Optional[str] = None) -> int:
        """Stream a range of the object into ``fileobj`` at its current position;
        returns the number of bytes written.  Same preconditions as get_range."""

    def put(self, key: str, body: Body, meta: Optional[dict] = None, content_type: str = "",
            if_match: Optional[str] = None) -> ObjectInfo:
        """Single PUT with Content-MD5; returns the new ObjectInfo (etag, size, crc64)."""

    def copy(self, src_key: str, dst_key: str, meta: Optional[dict] = None, content_type: str = "",
             if_match: Optional[str] = None, source: Optional[ObjectInfo] = None) -> ObjectInfo:
        """Server-side copy.  ``meta is None`` keeps the source metadata (directive COPY);
        a dict replaces it (directive REPLACE).  Source larger than 1 GiB is copied with
        UploadPartCopy.  ``if_match`` guards the source ETag.

        ``source``: what the caller already knows of the source object (from a LIST or
        a HEAD: at least its ETag and size), so that the store need not ask.  It only
        saves requests: a source that changed since is copied as it is now (with
        ``if_match``, PreconditionFailed as always).  The returned info's ``meta`` is
        None (unknown) when the headers were kept and neither the store nor ``source``
        knew them."""

    def delete(self, key: str) -> None:
        """Delete; deleting a missing key is not an error."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """DeleteMultipleObjects in batches of 1000."""

    def list(self, prefix: str, delimiter: str = "/", token: Optional[str] = None,
             max_keys: int = 1000) -> ListPage:
        """One page of a listing."""

    def initiate_multipart(self, key: str, meta: Optional[dict] = None, content_type: str = "") -> str:
        """Returns the upload id."""

    def upload_part(self, key: str, upload_id: str, part_number: int, body: Body) -> PartInfo:
        """One part with Content-MD5."""

    def upload_part_copy(self, key: str, upload_id: str, part_number: int, src_key: str,
                         start: int, length: int, if_match: Optional[str] = None) -> PartInfo:
        """Copy ``[start, start+length)`` of ``src_key`` as a part, server-side."""

    def complete_multipart(self, key: str, upload_id: str, parts: list) -> ObjectInfo:
        """Complete with ``parts`` (list of PartInfo in part-number order); returns the
        new object's info including crc64 when the server sends it."""

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort; aborting an unknown upload raises NotFound."""

    def list_parts(self, key: str, upload_id: str) -> list:
        """All parts the server holds for the upload (list of PartInfo)."""

    def list_multipart_uploads(self, prefix: str = "") -> list:
        """All incomplete uploads under ``prefix`` (list of UploadInfo)."""
