"""Exception types of ossfs and the single table that turns them into errno.

Every layer raises these (or lets `OSError` through); only :func:`to_errno` decides
which errno the kernel sees, and only ``cli.py`` turns a :class:`UserError` into an
exit status.  Messages never contain secrets or signed URLs.
"""
from __future__ import annotations

import errno


class OssfsError(Exception):
    """Base class of every error ossfs raises on purpose."""

    errno = errno.EIO


class UserError(OssfsError):
    """A mistake of the user (option, passwd file, mountpoint...).

    ``cli.main`` prints ``ossfs: <message>`` as one line and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class FsError(OssfsError):
    """A filesystem-level failure that carries its own errno (ENOTEMPTY, EXDEV ...)."""

    def __init__(self, err: int, message: str = ""):
        super().__init__(message or errno.errorcode.get(err, str(err)))
        self.errno = err


# --- errors of the object store layer (raised by store.py implementations) ---

class StoreError(OssfsError):
    """Any failure talking to the object store.  ``code`` is the OSS error code if known."""

    errno = errno.EIO

    def __init__(self, message: str, code: str = "", status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


class NotFound(StoreError):
    """The object (or upload) does not exist: NoSuchKey / NoSuchUpload / 404."""

    errno = errno.ENOENT


class NoSuchBucket(StoreError):
    errno = errno.ENODEV


class AccessDenied(StoreError):
    """Wrong key, wrong signature, forbidden: AccessDenied / InvalidAccessKeyId / SignatureDoesNotMatch."""

    errno = errno.EACCES


class PreconditionFailed(StoreError):
    """If-Match / If-None-Match / copy-source conditions failed (412), or the object changed."""

    errno = errno.ESTALE


class IntegrityError(StoreError):
    """Content-MD5 or CRC64 mismatch that retries did not cure."""

    errno = errno.EIO


class TransientError(StoreError):
    """5xx, timeouts, dropped connections: worth retrying.  Raised to callers only when
    retries are exhausted."""

    errno = errno.EIO


class Unreachable(TransientError):
    """The endpoint cannot be reached at all (connection refused, DNS failure)."""


# --- the errno table: the only place where exceptions become errno ---

def to_errno(exc: BaseException) -> int:
    """Map any exception raised by the filesystem core to the errno the kernel sees.

    OSError keeps its own errno; our errors carry theirs; anything unexpected is EIO
    (and is logged by the FUSE adapter with its traceback, because it is a bug).
    """
    if isinstance(exc, OssfsError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if type(exc).__name__ == "OperationalError" and "full" in str(exc):
        return errno.ENOSPC  # sqlite (cache index, metadata cache) on a full cache disk
    if isinstance(exc, (NotImplementedError,)):
        return errno.ENOSYS
    return errno.EIO
