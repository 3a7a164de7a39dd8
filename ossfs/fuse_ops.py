"""The FUSE adapter: libfuse3 (through mfusepy) on one side, :class:`ossfs.fs.FileSystem` on the other.

This is the only module that imports ``mfusepy``.  It owns:

* :class:`FuseOperations`: one callback per FUSE operation, each of which calls the
  filesystem core with the caller's identity (``fuse_get_context()`` -> ``Ctx``) and
  either returns its answer or turns its exception into an errno with
  :func:`ossfs.errors.to_errno`, the single errno table.  Nothing else happens here:
  no caching, no retries, no policy.  An exception that is neither an ``OSError`` nor
  an ossfs error is a bug: it is logged once with its traceback and the caller gets
  ``EIO``.
* :class:`KernelSettings`: what the kernel may cache and how big its requests are;
  applied in ``init`` (libfuse3's ``struct fuse_config``/``fuse_conn_info``).
* :func:`run_fuse`: mounts and serves until unmounted or signalled (SIGINT, SIGTERM and
  SIGHUP make libfuse unmount cleanly; ``destroy`` then uploads every dirty file).

Three places where mfusepy 3.1 drops what libfuse3 offers are filled in by the small
``_Fuse`` subclass: readdir passes every entry's full attributes with
``FUSE_FILL_DIR_PLUS`` when the kernel asks for READDIRPLUS (so ``ls -l`` costs one
listing, not one ``getattr`` per entry); ``rename`` passes its ``flags``
(``RENAME_NOREPLACE``/``RENAME_EXCHANGE``) instead of silently ignoring them;
``utimens`` understands ``UTIME_NOW``/``UTIME_OMIT`` (mfusepy would turn them into
nonsense nanosecond counts); ``truncate`` passes the file handle of ``ftruncate``;
``open`` sets ``direct_io`` on a handle the core asks it for (``FileSystem.direct_io``).
The same subclass keeps the per-entry work of ``ls -l`` small: ``getattr`` and
READDIRPLUS entries are written into ``struct stat`` field by field
(:func:`_fill_stat`), and ``getxattr`` answers "no such attribute" (asked twice per
entry by ``ls -l``) as a return value, not through two exceptions.

Kernel caching decisions (documented for users in ``docs/semantics.md``):

* attributes and directory entries are cached by the kernel for ``attr_timeout`` /
  ``entry_timeout`` (1 s by default, never longer than ``stat_cache_expire``), missing
  names for ``negative_timeout`` (0 with ``disable_noobj_cache``).  Not longer: the
  kernel bounds reads by the size it caches, so a file another client grew would read
  short after ``open`` for as long as ``attr_timeout``; and ``ls -l`` gains nothing
  (READDIRPLUS refreshes every entry's attributes anyway);
* the page cache of a file is kept across opens when its size and mtime did not change
  (libfuse's ``auto_cache``, re-checked on every open), so re-reading an unchanged file
  costs nothing and a file changed by another client is re-read after ``open``;
* no ``hard_remove``: libfuse renames an open file that is unlinked (or renamed over)
  to ``.fuse_hidden*`` and unlinks that name at its last close.  The core deletes
  the object at that rename and keeps the hidden name in memory only (no object is
  created or billed); the name is what lets ``fstat``, ``fchmod`` and ``futimens``
  of an unlinked file work: the kernel sends those without the file handle, and
  with ``hard_remove`` libfuse would answer them ESTALE itself.

Threads: libfuse calls the callbacks from many threads at once (one with ``-s``);
this module holds no state of its own beyond what is set before the mount starts.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import itertools
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

# mfusepy picks the first libfuse it finds; s3fs pulls in libfuse2, and we need 3.
os.environ.setdefault("FUSE_LIBRARY_PATH", "libfuse3.so.3")
import mfusepy  # noqa: E402

from ossfs.errors import OssfsError, to_errno  # noqa: E402
from ossfs.fs import is_hidden_name  # noqa: E402

log = logging.getLogger(__name__)

FUSE_READDIR_PLUS = 1 << 0  # enum fuse_readdir_flags
FUSE_FILL_DIR_PLUS = 1 << 1  # enum fuse_fill_dir_flags
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
MAX_REQUEST = 1 << 20  # 1 MiB reads and writes: libfuse3's largest request size
MAX_THREADS = 32       # libfuse worker threads


def libfuse_version() -> str:
    """The version of the libfuse library in use ("3.14")."""
    return "%d.%d" % (mfusepy.fuse_version_major, mfusepy.fuse_version_minor)


def mfusepy_version() -> str:
    try:
        from importlib.metadata import version
        return version("mfusepy")
    except Exception:  # noqa: BLE001 - only used for --version
        return "unknown"


@dataclass(frozen=True)
class KernelSettings:
    """What the kernel may cache, and for how long (seconds)."""

    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    negative_timeout: float = 1.0
    max_request: int = MAX_REQUEST   # largest write request (max_write)
    max_read: int = MAX_REQUEST      # largest read request: libfuse needs it in init and as a mount option
    kernel_cache: bool = False       # -o kernel_cache: keep pages across opens (dropped when a version changes)

    @classmethod
    def from_stat_cache_expire(cls, expire: Optional[float], negative_cache: bool = True) -> "KernelSettings":
        """Kernel timeouts bounded by ``stat_cache_expire`` (-1 or None: no bound beyond 1 s)."""
        limit = 1.0
        if expire is not None and 0 <= float(expire) < limit:
            limit = float(expire)
        return cls(attr_timeout=limit, entry_timeout=limit, negative_timeout=limit if negative_cache else 0.0)


def _errno_of(op: str, path, exc: Exception) -> int:
    """The errno for the core's exception ``exc`` in ``op(path)`` (the only errno path)."""
    if isinstance(exc, mfusepy.FuseOSError):
        return exc.errno
    if not isinstance(exc, (OSError, OssfsError, NotImplementedError)):
        # A bug in ossfs: say so loudly, once, with the place it happened.
        # Only the path is logged: other arguments may be file contents.
        log.error("unexpected error in %s(%r)", op, path, exc_info=True)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("%s(%r): %s", op, path, exc)
    return to_errno(exc)


def _fs_call(func: Callable) -> Callable:
    """Map the core's exceptions to ``FuseOSError``."""

    @functools.wraps(func)
    def wrapper(self, *args):
        try:
            return func(self, *args)
        except mfusepy.FuseOSError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure must become an errno
            raise mfusepy.FuseOSError(_errno_of(func.__name__, args[0] if args else None, exc)) from None

    return wrapper


def _fill_stat(st, attrs: dict) -> None:
    """Write the core's stat dict into a zeroed ``struct stat``: the fields it always
    has, assigned directly (mfusepy's generic ``set_st_attrs`` probes every key of the
    dict by name, which was most of the cost of an entry in ``ls -l``)."""
    try:
        mode, nlink, uid, gid = attrs["st_mode"], attrs["st_nlink"], attrs["st_uid"], attrs["st_gid"]
        size, blocks, blksize = attrs["st_size"], attrs["st_blocks"], attrs["st_blksize"]
        atime, mtime, ctime = attrs["st_atime_ns"], attrs["st_mtime_ns"], attrs["st_ctime_ns"]
    except KeyError:  # not the core's complete form: take the generic path
        mfusepy.set_st_attrs(st, _ns_times(dict(attrs)), use_ns=True)
        return
    st.st_mode, st.st_nlink, st.st_uid, st.st_gid = mode, nlink, uid, gid
    st.st_size, st.st_blocks, st.st_blksize = size, blocks, blksize
    ts = st.st_atimespec
    ts.tv_sec, ts.tv_nsec = divmod(atime, 1_000_000_000)
    ts = st.st_mtimespec
    ts.tv_sec, ts.tv_nsec = divmod(mtime, 1_000_000_000)
    ts = st.st_ctimespec
    ts.tv_sec, ts.tv_nsec = divmod(ctime, 1_000_000_000)


def _ns_times(attrs):
    """The core reports ``st_mtime`` (float seconds) and ``st_mtime_ns``; libfuse gets
    the exact nanoseconds (``use_ns``)."""
    if attrs:
        for name in ("st_atime", "st_mtime", "st_ctime"):
            ns = attrs.get(name + "_ns")
            if ns is not None:
                attrs[name] = ns
    return attrs


_fuse_invalidate_path = getattr(mfusepy._libfuse, "fuse_invalidate_path", None)  # libfuse >= 3.1
if _fuse_invalidate_path is not None:
    _fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    _fuse_invalidate_path.restype = ctypes.c_int


def _invalidate_path(path: str) -> None:
    """Make the kernel forget the attributes and cached pages of ``path`` (libfuse's
    ``fuse_invalidate_path``: FUSE_NOTIFY_INVAL_INODE of the whole file).  Called by the
    core from a request handler (it needs the request's ``struct fuse``) when an open
    finds another version of the object than the kernel may hold; a path the kernel
    has not looked up is nothing to forget."""
    if _fuse_invalidate_path is None:
        return
    fuse_ptr = mfusepy._libfuse.fuse_get_context().contents.fuse
    if fuse_ptr:
        err = _fuse_invalidate_path(ctypes.c_void_p(fuse_ptr), path.encode("utf-8", "surrogateescape"))
        if err and err != -errno.ENOENT:
            log.debug("kernel cache of %r not invalidated: %s", path, os.strerror(-err))


#: rename(2), renameat(2), renameat2(2) by architecture (the caller's syscall number).
#: x32 callers on x86_64 carry bit 30; 32-bit (compat) callers are not told apart
#: (their numbers mean other calls in the 64-bit table) and count as not renaming.
_RENAME_SYSCALLS = {"x86_64": {82, 264, 316, 0x40000000 | 82, 0x40000000 | 264, 0x40000000 | 316},
                    "aarch64": {38, 276}}.get(platform.machine(), set())


def _caller_renaming() -> bool:
    """True if the thread that made this request is inside a rename system call
    (``/proc/TID/syscall``).  libfuse hides an open file both for an unlink and
    before a rename onto it, with the same call; this tells the two apart
    (FileSystem.rename).  False, which keeps the unlink behaviour, when it cannot
    tell: the file unreadable (a daemon not root, a caller of another user), an
    io_uring rename (made by a kernel worker), a 32-bit caller, a caller between
    two states ("running")."""
    try:
        pid = mfusepy.fuse_get_context()[2]
        with open("/proc/%d/syscall" % pid) as f:
            return int(f.read().split(None, 1)[0]) in _RENAME_SYSCALLS
    except (OSError, ValueError, IndexError):
        return False


def _ctx():
    """The caller's identity as the core's ``Ctx(uid, gid, pid)``."""
    from ossfs.fs import Ctx  # imported late so that --version works without the core
    uid, gid, pid = mfusepy.fuse_get_context()
    return Ctx(uid, gid, pid)


class FuseOperations(mfusepy.Operations):
    """fusepy-style callbacks, each a one-line call into the filesystem core."""

    use_ns = True  # times are integer nanoseconds, as in ossfs.meta

    def __init__(self, fs, kernel: KernelSettings = KernelSettings(),
                 on_ready: Optional[Callable[[], None]] = None):
        self.fs = fs
        self.kernel = kernel
        self._on_ready = on_ready
        # Whether the core may tell the kernel to drop a file's caches from inside a
        # request (run_fuse turns it off for a single-threaded loop: the notification
        # can wait on pages whose READ only that one thread would answer).
        self.kernel_notify = True
        self.initialized = False  # FUSE init ran: the kernel accepted the mount
        self.destroyed = False    # destroy ran: unmounted and dirty data handed to the core
        self._dir_lock = threading.Lock()
        self._dir_ids = itertools.count(1)
        self._listings: dict = {}  # GUARDED_BY(_dir_lock): directory handle -> [(name, attrs)]

    # -- lifecycle -------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:
        if config is not None:
            config.attr_timeout = self.kernel.attr_timeout
            config.entry_timeout = self.kernel.entry_timeout
            config.negative_timeout = self.kernel.negative_timeout
            config.hard_remove = 0
            config.use_ino = 0
            config.kernel_cache = 1 if self.kernel.kernel_cache else 0
            config.auto_cache = 0 if self.kernel.kernel_cache else 1
            # Check size/mtime on every open (close-to-open), not only after attr_timeout.
            config.ac_attr_timeout_set = 1
            config.ac_attr_timeout = 0.0
        if self.kernel_notify:
            self.fs.kernel_invalidate = _invalidate_path
        if conn is not None:
            conn.max_write = min(conn.max_write or self.kernel.max_request, self.kernel.max_request)
            # libfuse3 refuses to mount unless this equals the max_read mount option
            # (fuse_options(max_request=kernel.max_read)).
            conn.max_read = self.kernel.max_read
            conn.max_readahead = max(conn.max_readahead, self.kernel.max_read)
        self.fs.init()
        self.initialized = True
        log.info("mounted (kernel attribute cache %.1fs, requests up to %d KiB)",
                 self.kernel.attr_timeout, self.kernel.max_request >> 10)
        if self._on_ready is not None:
            self._on_ready()

    @_fs_call
    def destroy(self, path):
        try:
            self.fs.destroy()
        finally:
            self.destroyed = True

    # -- metadata --------------------------------------------------------------

    @_fs_call
    def getattr(self, path, fh=None):
        return _ns_times(self.fs.getattr(path, fh))

    def opendir(self, path):
        """A handle that remembers the listing while the directory is read in pieces."""
        with self._dir_lock:
            return next(self._dir_ids)

    @_fs_call
    def listing(self, path, fh, offset):
        """The entries of ``path`` as seen by handle ``fh``: listed afresh at offset 0
        (opendir or rewinddir), the same snapshot for the pieces that follow, so that
        libfuse's offset-based readdir neither lists the directory once per 4 KiB
        nor skips or repeats entries when it changes meanwhile."""
        with self._dir_lock:
            entries = self._listings.get(fh) if offset else None
        if entries is None:
            entries = self.fs.readdir(path, None)
            if len(entries) < 2 or entries[0][0] != "." or entries[1][0] != "..":
                # ls -a and readdir(3) users expect both; the core may leave them out.
                names = {name for name, _ in entries}
                for dot in ("..", "."):
                    if dot not in names:
                        entries.insert(0, (dot, self.fs.getattr(path) if dot == "." else None))
            with self._dir_lock:
                self._listings[fh] = entries
        return entries

    def readdir(self, path, fh):
        return [(name, _ns_times(dict(attrs)) if attrs else attrs, 0) for name, attrs in self.listing(path, fh, 0)]

    def releasedir(self, path, fh):
        with self._dir_lock:
            self._listings.pop(fh, None)
        return 0

    @_fs_call
    def readlink(self, path):
        return self.fs.readlink(path)

    @_fs_call
    def mknod(self, path, mode, dev):
        return self.fs.mknod(path, mode, dev, _ctx())

    @_fs_call
    def mkdir(self, path, mode):
        return self.fs.mkdir(path, mode, _ctx())

    @_fs_call
    def unlink(self, path):
        return self.fs.unlink(path)

    @_fs_call
    def rmdir(self, path):
        return self.fs.rmdir(path)

    @_fs_call
    def symlink(self, target, source):
        return self.fs.symlink(target, source, _ctx())

    @_fs_call
    def rename(self, old, new, flags=0):
        return self.fs.rename(old, new, flags, caller_renaming=is_hidden_name(new) and _caller_renaming())

    @_fs_call
    def link(self, target, source):
        return self.fs.link(target, source)

    @_fs_call
    def chmod(self, path, mode):
        return self.fs.chmod(path, mode, _ctx())

    @_fs_call
    def chown(self, path, uid, gid):
        return self.fs.chown(path, uid, gid, _ctx())

    @_fs_call
    def utimens(self, path, times=None):
        return self.fs.utimens(path, times)

    @_fs_call
    def truncate(self, path, length, fh=None):
        return self.fs.truncate(path, length, fh)

    @_fs_call
    def access(self, path, amode):
        return self.fs.access(path, amode, _ctx())

    @_fs_call
    def statfs(self, path):
        return self.fs.statfs(path)

    # -- extended attributes ---------------------------------------------------

    @_fs_call
    def getxattr(self, path, name, position=0):
        return self.fs.getxattr(path, name)

    def getxattr_or_errno(self, path, name):
        """``getxattr`` for libfuse: the value, or a negative errno without raising.
        ``ls -l`` asks ``security.selinux`` and ``system.posix_acl_access`` of every
        entry, and "no such attribute" is the usual answer."""
        try:
            return self.fs.getxattr(path, name)
        except Exception as exc:  # noqa: BLE001 - every failure must become an errno
            return -_errno_of("getxattr", path, exc)

    @_fs_call
    def setxattr(self, path, name, value, options, position=0):
        return self.fs.setxattr(path, name, value, options)

    @_fs_call
    def listxattr(self, path):
        return self.fs.listxattr(path)

    @_fs_call
    def removexattr(self, path, name):
        return self.fs.removexattr(path, name)

    # -- file handles ----------------------------------------------------------

    @_fs_call
    def open(self, path, flags):
        return self.fs.open(path, flags, _ctx())

    def direct_io(self, fh) -> bool:
        return self.fs.direct_io(fh)

    @_fs_call
    def create(self, path, mode, flags):
        return self.fs.create(path, mode, flags, _ctx())

    @_fs_call
    def read(self, path, size, offset, fh):
        return self.fs.read(path, size, offset, fh)

    @_fs_call
    def write(self, path, data, offset, fh):
        return self.fs.write(path, data, offset, fh)

    @_fs_call
    def flush(self, path, fh):
        return self.fs.flush(path, fh)

    @_fs_call
    def fsync(self, path, datasync, fh):
        return self.fs.fsync(path, datasync, fh)

    @_fs_call
    def release(self, path, fh):
        return self.fs.release(path, fh)


_thread_pin = threading.local()


def _keep_thread_state() -> None:
    """Keep the calling libfuse worker thread's Python thread state for the thread's life.

    ctypes enters a callback from a foreign thread with ``PyGILState_Ensure`` and
    leaves it with ``PyGILState_Release``, which creates and destroys a thread state
    around every single FUSE request.  That costs an allocation per request, and,
    worse, empties every ``threading.local`` each time: the per-thread SQLite
    connections of the cache index and the metadata cache were opened afresh (schema
    read, WAL opened) for every create, flush and lookup.  One extra
    ``PyGILState_Ensure``, never released, keeps the state.  libfuse reuses its workers
    (``max_idle_threads`` equals ``max_threads`` in :func:`fuse_options`), so at most
    ``max_threads`` states are kept."""
    if not getattr(_thread_pin, "kept", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_pin.kept = True


class _Fuse(mfusepy.FUSE):
    """mfusepy's FUSE with the libfuse3 features it leaves out (see the module docstring)."""

    def _wrapper(self, func, *args, **kwargs):
        _keep_thread_state()
        return super()._wrapper(func, *args, **kwargs)

    def _decode(self, path: Optional[bytes]) -> Optional[str]:
        return None if path is None else path.decode(self.encoding, self.errors)

    def open(self, path, fip):
        # mfusepy sets only fi->fh: the core may also ask for FOPEN_DIRECT_IO
        ret = super().open(path, fip)
        if ret == 0 and self.operations.direct_io(fip.contents.fh):
            fip.contents.direct_io = 1
        return ret

    def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
        # Offsets (index + 1) put libfuse in its offset mode: only there does it turn
        # FUSE_FILL_DIR_PLUS entries into kernel inodes with attributes.
        # libfuse copies the stat it is given, so two structs serve every entry: one
        # rewritten whole for each entry with attributes, one holding only a type.
        plus = bool(flags & FUSE_READDIR_PLUS)
        entries = self.operations.listing(self._decode(path), fip.contents.fh, offset)
        full, bare = mfusepy.c_stat(), mfusepy.c_stat()
        encoding, errors = self.encoding, self.errors
        for index in range(offset, len(entries)):
            name, attrs = entries[index]
            st, fill_flags = None, 0
            if attrs:
                if plus and name != "." and name != "..":
                    _fill_stat(full, attrs)
                    st, fill_flags = full, FUSE_FILL_DIR_PLUS
                else:
                    bare.st_mode = attrs.get("st_mode", 0)
                    st = bare
            if filler(buf, name.encode(encoding, errors), st, index + 1, fill_flags) != 0:
                break
        return 0

    def getattr_fuse_3(self, path, buf, fip):
        attrs = self.operations.getattr(self._decode(path), fip.contents.fh if fip else None)
        ctypes.memset(buf, 0, ctypes.sizeof(mfusepy.c_stat))
        _fill_stat(buf.contents, attrs)
        return 0

    def getxattr(self, path, name, value, size, *args):
        ret = self.operations.getxattr_or_errno(self._decode(path), self._decode(name))
        if isinstance(ret, int):
            return ret
        if not value:  # a size query
            return len(ret)
        if len(ret) > size:
            return -errno.ERANGE
        ctypes.memmove(value, ret, len(ret))
        return len(ret)

    def rename_fuse_3(self, old, new, flags):
        return self.operations.rename(self._decode(old), self._decode(new), flags)

    def truncate_fuse_3(self, path, length, fip):
        fh = fip.contents.fh if fip else None
        return self.operations.truncate(self._decode(path), length, fh)

    def utimens_fuse_3(self, path, buf, fip):
        decoded = self._decode(path)
        if not buf:
            return self.operations.utimens(decoded, None)
        atime, mtime = buf.contents.actime, buf.contents.modtime
        if atime.tv_nsec == UTIME_NOW and mtime.tv_nsec == UTIME_NOW:
            return self.operations.utimens(decoded, None)
        if UTIME_OMIT in (atime.tv_nsec, mtime.tv_nsec):
            if atime.tv_nsec == UTIME_OMIT and mtime.tv_nsec == UTIME_OMIT:
                return 0
            # The core takes both times; keep the omitted one as it is now.
            current = self.operations.getattr(decoded, fip.contents.fh if fip else None)
        now = time.time_ns()

        def pick(ts, key):
            if ts.tv_nsec == UTIME_NOW:
                return now
            if ts.tv_nsec == UTIME_OMIT:
                return int(current[key])
            return ts.tv_sec * 1_000_000_000 + ts.tv_nsec

        return self.operations.utimens(decoded, (pick(atime, "st_atime"), pick(mtime, "st_mtime")))


def fuse_options(*, fsname: str, allow_other: bool = False, read_only: bool = False,
                 extra: Optional[dict] = None, max_request: int = MAX_REQUEST) -> dict:
    """The mount options handed to libfuse.

    ``default_permissions`` is always on: the kernel checks every access against the
    mode, uid and gid we report, which is what makes a 0600 file unreadable to other
    users of an ``allow_other`` mount (and spares a round trip per access check).
    """
    # max_threads: libfuse 3.14's default (-1) draws a warning; a few more threads than
    # parallel uploads is plenty for a Python core.  Idle workers are never ended
    # (max_idle_threads = max_threads): each keeps its Python thread state
    # (_keep_thread_state).
    opts = {"fsname": fsname, "subtype": "ossfs", "default_permissions": True, "max_read": max_request,
            "max_threads": MAX_THREADS, "max_idle_threads": MAX_THREADS}
    if allow_other:
        opts["allow_other"] = True
    if read_only:
        opts["ro"] = True
    opts.update(extra or {})
    return opts


def run_fuse(operations: FuseOperations, mountpoint: str, *, options: dict,
             single_thread: bool = False, fuse_debug: bool = False) -> None:
    """Mount ``mountpoint`` and serve requests until it is unmounted or the process
    is signalled.  Returns after ``destroy``; raises ``RuntimeError`` if libfuse
    could not mount."""
    logging.getLogger("mfusepy").setLevel(logging.DEBUG if fuse_debug else logging.WARNING)
    operations.kernel_notify = not single_thread
    try:
        _Fuse(operations, mountpoint, foreground=True, nothreads=single_thread, debug=fuse_debug,
              raw_fi=False, **options)
    except RuntimeError:
        # libfuse reports "error in the event loop" (8) when SIGINT/SIGTERM/SIGHUP
        # ended it; that is the normal way to stop a mount once it was unmounted
        # cleanly and destroy() ran.
        if operations.initialized and operations.destroyed:
            log.info("stopped by a signal; unmounted cleanly")
            return
        raise


__all__ = ["FuseOperations", "KernelSettings", "fuse_options", "run_fuse", "libfuse_version",
           "mfusepy_version"]
