"""Building a mount: checks, every collaborator, the daemon, the logs and the control socket.

This module owns what happens between "the command line was parsed" and "the mount
is live", and the process that serves it afterwards.  It builds each collaborator
once and hands it to the next (store -> cache -> filesystem core -> FUSE adapter);
none of them builds its own.

Startup, in order, each failure one :class:`~ossfs.errors.UserError` line:

1. the mountpoint: missing, not a directory, stale (``ENOTCONN``), already a mount
   point, not empty (unless ``-o nonempty``);
2. the credentials (:func:`ossfs.credentials.resolve_credentials`);
3. the bucket: :meth:`OssStore.check_bucket`, bounded to :data:`CHECK_TIMEOUT`
   seconds, so that a wrong endpoint, a wrong key or a missing bucket is reported in
   the terminal, not in syslog after a "successful" mount.

Then, unless ``-f``, the process daemonizes by forking (never by re-executing, so the
credentials never travel on a command line): the parent waits, bounded by
:data:`READY_TIMEOUT`, for the child to write ``OK`` to a pipe from FUSE's ``init``
(the mount is live) and exits 0, or prints the child's one-line error and exits 1.
Until it is ready, the child's stderr goes to a temporary file so that libfuse's own
complaint ("fusermount3: option allow_other only allowed if ...") reaches the user.

Logging: stderr with ``-f``; otherwise ``-o logfile=``, else syslog (ident ``ossfs``)
through ``/dev/log``, else ``ossfs.log`` in the cache directory.  Every handler
carries a :class:`SecretFilter` that removes the access key secret, the session
token and anything that looks like a signature, as a second line of defence behind
the modules that never log them.

Shutdown: libfuse turns SIGINT, SIGTERM and SIGHUP into a clean unmount; after the
unmount (also by ``umount``/``fusermount3 -u``) ``FileSystem.destroy`` uploads
every dirty file, then the process exits.

Control socket: a running mount answers ``ossfs status MOUNTPOINT`` on a unix socket
(mode 0600 in a 0700 directory, see :func:`control_socket_path`) with
``FileSystem.status()`` as one JSON line.  Threads: one accept thread; the status
call itself is the filesystem core's to make thread-safe.
"""
from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import re
import select
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Optional

from ossfs.errors import (AccessDenied, NoSuchBucket, StoreError, TransientError, Unreachable,
                          UserError)

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 20.0  # seconds for the bucket check before mounting
READY_TIMEOUT = 60.0  # seconds the parent waits for the daemon's mount to be live
_LEVELS = {"crit": logging.CRITICAL, "err": logging.ERROR, "warn": logging.WARNING,
           "info": logging.INFO, "dbg": logging.DEBUG}


# --------------------------------------------------------------------------- logging

class SecretFilter(logging.Filter):
    """Scrubs secrets and signatures from every record that reaches a handler."""

    _PATTERNS = [
        (re.compile(r"(Signature=)[^&\s'\"]+", re.I), r"\1<hidden>"),
        (re.compile(r"(Authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+", re.I), r"\1<hidden>"),
        (re.compile(r"(x-oss-security-token['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+", re.I), r"\1<hidden>"),
        (re.compile(r"(security-token=)[^&\s'\"]+", re.I), r"\1<hidden>"),
    ]

    def __init__(self):
        super().__init__()
        self._secrets: list = []

    def add_secret(self, secret: Optional[str]) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<hidden>")
        for pattern, repl in self._PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must not break logging
            message = str(record.msg)
        record.msg, record.args = self.scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


SECRETS = SecretFilter()


def log_level(config) -> int:
    """-d means debug; otherwise ``dbglevel``, but warnings and errors are always
    logged: a failed upload, or a local version kept aside because another writer
    changed the object (a WARNING), must reach syslog even with 1.x's default
    ``dbglevel=crit``."""
    if getattr(config, "debug", 0):
        return logging.DEBUG
    return min(_LEVELS.get(getattr(config, "dbglevel", "crit"), logging.WARNING), logging.WARNING)


def _install_handler(handler: logging.Handler, level: int, fmt: str) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(SECRETS)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("ossfs").setLevel(level)


def log_to_stderr(config) -> None:
    _install_handler(logging.StreamHandler(sys.stderr), log_level(config),
                     "%(asctime)s ossfs[%(process)d] %(levelname)s %(name)s: %(message)s")


def log_in_background(config, cache_dir: str) -> Optional[str]:
    """Switch logging to logfile= / syslog / a file in the cache dir; returns the file
    used, if any (where libfuse's stderr then goes too)."""
    level = log_level(config)
    path = getattr(config, "logfile", "") or None
    if path is None and os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(address="/dev/log",
                                                     facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.ident = "ossfs[%d]: " % os.getpid()
            _install_handler(handler, level, "%(levelname)s %(name)s: %(message)s")
            return None
        except OSError:
            pass
    if path is None:
        path = os.path.join(cache_dir, "ossfs.log")
    _install_handler(logging.FileHandler(path), level,
                     "%(asctime)s ossfs[%(process)d] %(levelname)s %(name)s: %(message)s")
    return path


# --------------------------------------------------------------------------- checks

def check_logfile(path: Optional[str]) -> None:
    """``logfile=`` must be writable before the daemon starts, or its errors go nowhere."""
    if not path:
        return
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise UserError("cannot write the log file %s: %s" % (path, exc.strerror or exc))


def _mounted_paths() -> set:
    paths = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ")
                if len(fields) > 4:
                    # mountinfo escapes space, tab, newline and backslash as octal.
                    raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
                    paths.add(os.fsdecode(raw))
    except OSError:
        pass
    return paths


def check_mountpoint(mountpoint: str, nonempty: bool = False) -> None:
    """Raise UserError unless ``mountpoint`` is an empty (or ``nonempty``) directory
    that is not already a mount point."""
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise UserError("mountpoint %s does not exist" % mountpoint) from None
    except OSError as exc:
        if exc.errno == 107:  # ENOTCONN: a FUSE mount whose process died
            raise UserError("mountpoint %s is a stale mount (%s): unmount it with 'fusermount3 -u %s'"
                            % (mountpoint, exc.strerror, mountpoint)) from None
        raise UserError("mountpoint %s: %s" % (mountpoint, exc.strerror)) from None
    import stat as _stat
    if not _stat.S_ISDIR(st.st_mode):
        raise UserError("mountpoint %s is not a directory" % mountpoint)
    if os.path.ismount(mountpoint) or os.path.realpath(mountpoint) in _mounted_paths():
        raise UserError("mountpoint %s is busy: something is already mounted there" % mountpoint)
    if not nonempty:
        try:
            entries = os.listdir(mountpoint)
        except OSError as exc:
            raise UserError("mountpoint %s: %s" % (mountpoint, exc.strerror)) from None
        if entries:
            raise UserError("mountpoint %s is not empty (use -o nonempty to mount over its contents)"
                            % mountpoint)


def region_of(config) -> Optional[str]:
    """The region for signature V4: ``endpoint=``/``region=``, else taken from an
    Aliyun endpoint host such as ``oss-cn-hangzhou.aliyuncs.com``; else None."""
    if getattr(config, "endpoint", ""):
        return config.endpoint
    host = config.url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    first = host.split(".", 1)[0]
    if first.startswith("oss-"):
        return first[len("oss-"):].replace("-internal", "")
    return None


MiB = 1024 * 1024


def object_headers_of(config) -> dict:
    """Headers every new object carries: ``default_acl=`` and ``storage_class=``."""
    headers = {}
    acl = getattr(config, "default_acl", "")
    if acl and acl != "default":
        headers["x-oss-object-acl"] = acl
    if getattr(config, "storage_class", ""):
        headers["x-oss-storage-class"] = config.storage_class
    return headers


def build_store(config, credentials):
    """The OssStore for ``config`` (also used by the maintenance verbs)."""
    from ossfs.store_oss import OssStore
    sigv4 = bool(getattr(config, "sigv4", False)) and not getattr(config, "sigv1", False)
    if sigv4 and not region_of(config):
        raise UserError("-o sigv4 needs the bucket's region: give -o endpoint=REGION (e.g. cn-hangzhou) or "
                        "a url like oss-cn-hangzhou.aliyuncs.com")
    return OssStore(config.url, config.bucket, credentials, prefix=config.prefix or "",
                    retries=config.retries, connect_timeout=config.connect_timeout,
                    readwrite_timeout=config.readwrite_timeout,
                    sigv4=sigv4, region=region_of(config) if sigv4 else None,
                    # parallel HEADs of a listing + parts of a few files in flight at once
                    pool_size=max(32, int(config.multireq_max) + 4 * int(config.parallel_count) + 4),
                    object_headers=object_headers_of(config),
                    path_style=bool(getattr(config, "use_path_request_style", False)),
                    copy_limit=int(config.singlepart_copy_limit) * MiB,
                    copy_part_size=int(config.multipart_copy_size) * MiB,
                    list_v2=bool(getattr(config, "listobjectsv2", False)))


def resolve_and_remember(config, environ):
    """Credentials for ``config``; their secrets join the log scrubber at once."""
    from ossfs.credentials import resolve_credentials
    creds = resolve_credentials(config, environ)
    SECRETS.add_secret(creds.access_key_secret)
    SECRETS.add_secret(getattr(creds, "session_token", None))
    return creds


def check_bucket(store, config, timeout: float = CHECK_TIMEOUT) -> None:
    """Fail within ``timeout`` seconds with one line if the bucket cannot be used."""
    outcome: list = []

    def probe():
        try:
            store.check_bucket(timeout)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="ossfs-check-bucket", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise UserError("cannot reach %s: no answer within %d seconds" % (config.url, timeout))
    exc = outcome[0]
    if exc is None:
        return
    if isinstance(exc, Unreachable):
        raise UserError(str(exc)) from None
    if isinstance(exc, AccessDenied):
        which = {"InvalidAccessKeyId": "wrong access key id",
                 "SignatureDoesNotMatch": "wrong access key secret"}.get(exc.code)
        if which:
            raise UserError("access denied: %s for bucket '%s' at %s" % (which, config.bucket, config.url)) from None
        raise UserError("access denied: the access key may not use bucket '%s' (%s)" % (config.bucket, exc)) from None
    if isinstance(exc, NoSuchBucket):
        raise UserError("bucket '%s' does not exist at %s" % (config.bucket, config.url)) from None
    if isinstance(exc, TransientError):
        raise UserError("cannot reach %s: %s" % (config.url, exc)) from None
    if isinstance(exc, StoreError):
        raise UserError(str(exc)) from None
    raise exc


# --------------------------------------------------------------------------- control socket

def control_socket_path(mountpoint: str, uid: Optional[int] = None) -> str:
    """Where the mount of ``mountpoint`` answers ``ossfs status``: under /run/ossfs for
    root, $XDG_RUNTIME_DIR/ossfs or /tmp/ossfs-UID for other users."""
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        base = "/run/ossfs"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "ossfs")
    else:
        base = "/tmp/ossfs-%d" % uid
    name = hashlib.sha256(os.fsencode(os.path.realpath(mountpoint))).hexdigest()[:20]
    return os.path.join(base, name + ".sock")


class ControlServer:
    """Answers status requests of ``ossfs status`` for one mount."""

    def __init__(self, path: str, status: Callable[[], dict], mountpoint: str):
        self.path = path
        self._status = status
        self._mountpoint = mountpoint
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        base = os.path.dirname(self.path)
        os.makedirs(base, mode=0o700, exist_ok=True)
        st = os.lstat(base)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            log.warning("not serving 'ossfs status': %s is not a private directory of this user", base)
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(4)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="ossfs-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    request = conn.recv(256).strip()
                    if request == b"status":
                        answer = {"mountpoint": self._mountpoint, "pid": os.getpid(), "status": self._status()}
                    else:
                        answer = {"error": "unknown request"}
                    conn.sendall(json.dumps(answer, default=str).encode() + b"\n")
                except Exception:  # noqa: BLE001 - a bad client must not stop the server
                    log.warning("control socket: request failed", exc_info=True)

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass


def query_status(mountpoint: str, timeout: float = 10.0) -> dict:
    """Ask the mount of ``mountpoint`` for its status; UserError if none answers."""
    path = control_socket_path(mountpoint)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(b"status\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise UserError("%s is not mounted by a running ossfs" % mountpoint) from None
    except OSError as exc:
        raise UserError("cannot talk to the ossfs mount of %s: %s" % (mountpoint, exc.strerror or exc)) from None
    finally:
        sock.close()
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise UserError("the ossfs mount of %s gave an unreadable answer" % mountpoint) from None


# --------------------------------------------------------------------------- the mount

def cache_dir_for(config) -> str:
    """The cache directory of this mount (the cache module decides where it is)."""
    from ossfs.cache import cache_dir_of
    return cache_dir_of(config)


def check_outside_mountpoint(mountpoint: str, paths: dict) -> None:
    """Refuse local paths of the mount (``{what: path}``: its cache, its log) that lie
    under its own mountpoint: the daemon would wait on itself."""
    top = os.path.realpath(mountpoint)
    for what, path in paths.items():
        if not path:
            continue
        real = os.path.realpath(path)
        if real == top or real.startswith(top.rstrip("/") + "/"):
            raise UserError("%s %s is inside the mountpoint %s; put it on a local disk" % (what, path, mountpoint))


def lock_cache_dir(cache_dir: str) -> int:
    """Hold an exclusive lock on the cache directory for the life of the mount (the fd
    is inherited by the daemon): two processes sharing one index and one set of
    dirty files would upload each other's stale data."""
    import fcntl
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(cache_dir, "mount.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UserError("cannot use cache directory %s: %s" % (cache_dir, exc.strerror or exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError("cache directory %s is in use by another ossfs mount of this bucket; "
                        "give this mount its own -o use_cache=DIR" % cache_dir) from None
    return fd


def build_filesystem(config, store):
    """Cache and filesystem core over ``store``."""
    import sqlite3

    from ossfs.cache import Cache
    from ossfs.fs import FileSystem
    try:
        cache = Cache.from_config(config, store)
    except (OSError, sqlite3.Error) as exc:
        # e.g. a full disk: the index cannot be created or opened
        raise UserError("cannot use cache directory %s: %s (is its disk full?)"
                        % (cache_dir_for(config), getattr(exc, "strerror", None) or exc)) from None
    return FileSystem(store, config, cache)


class _Notifier:
    """The child's side of the readiness pipe (no-op in the foreground)."""

    def __init__(self, fd: Optional[int]):
        self._fd = fd
        self._lock = threading.Lock()

    def _send(self, data: bytes) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.write(fd, data)
            except OSError:
                pass
            os.close(fd)

    def ok(self) -> None:
        self._send(b"OK\n")

    def fail(self, message: str) -> None:
        self._send(b"ERR " + SECRETS.scrub(message).encode("utf-8", "replace").replace(b"\n", b" ") + b"\n")


def serve(config, store, notifier: _Notifier, on_started: Callable[[], None] = lambda: None) -> int:
    """Build the filesystem and serve the mount until it ends; returns the exit code."""
    from ossfs.fuse_ops import FuseOperations, KernelSettings, fuse_options, run_fuse

    fs = build_filesystem(config, store)
    kernel = KernelSettings(
        attr_timeout=float(config.attr_timeout), entry_timeout=float(config.entry_timeout),
        negative_timeout=float(config.negative_timeout) if config.neg_cache else 0.0)
    if config.stat_cache_expire is not None and 0 <= config.stat_cache_expire:
        # The kernel must never remember longer than ossfs itself would.
        limit = float(config.stat_cache_expire)
        kernel = KernelSettings(min(kernel.attr_timeout, limit), min(kernel.entry_timeout, limit),
                                min(kernel.negative_timeout, limit))
    control = ControlServer(control_socket_path(config.mountpoint), fs.status, config.mountpoint)

    def confirm_live():
        # FUSE's init runs before libfuse has answered the kernel; a mount can still
        # fail after it.  Only a mountpoint that answers stat() is live.
        deadline = time.monotonic() + READY_TIMEOUT / 2
        while time.monotonic() < deadline:
            if os.path.realpath(config.mountpoint) in _mounted_paths():
                try:
                    os.stat(config.mountpoint)
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        else:
            notifier.fail("the mount of %s did not answer after FUSE init" % config.mountpoint)
            return
        try:
            control.start()
        except OSError as exc:
            log.warning("not serving 'ossfs status': %s", exc)
        on_started()
        notifier.ok()

    def ready():
        threading.Thread(target=confirm_live, name="ossfs-ready", daemon=True).start()

    extra = {k: v for k, v in (config.fuse_options or {}).items()
             if k not in ("attr_timeout", "entry_timeout", "negative_timeout", "ro", "allow_other",
                          "default_permissions")}
    # max_read/max_write (checked by the parser: 0 or 4096 to 1 MiB) go to FUSE init,
    # and max_read also to the mount options, which libfuse needs to agree
    sizes = {name: int(extra.pop(name, 0) or 0) or kernel.max_request for name in ("max_read", "max_write")}
    kernel = KernelSettings(kernel.attr_timeout, kernel.entry_timeout, kernel.negative_timeout,
                            max_request=sizes["max_write"], max_read=sizes["max_read"],
                            kernel_cache=bool(extra.pop("kernel_cache", False)))
    extra.setdefault("fsname", "ossfs#%s" % config.bucket)
    options = fuse_options(fsname=extra.pop("fsname"), allow_other=bool(config.allow_other),
                           read_only=bool(config.ro), extra=extra, max_request=kernel.max_read)
    operations = FuseOperations(fs, kernel, on_ready=ready)
    log.info("mounting bucket %s%s from %s on %s", config.bucket,
             (":/" + config.prefix) if config.prefix else "", config.url, config.mountpoint)
    try:
        run_fuse(operations, config.mountpoint, options=options, single_thread=bool(config.single_thread),
                 fuse_debug=config.debug >= 2)
    except RuntimeError as exc:
        if operations.initialized:
            raise UserError("the mount of %s ended with a libfuse error (%s)" % (config.mountpoint, exc)) from None
        notifier.fail("cannot mount %s: libfuse failed (%s)" % (config.mountpoint, exc))
        raise UserError("cannot mount %s: libfuse failed (%s)" % (config.mountpoint, exc)) from None
    finally:
        control.stop()
    if not operations.initialized:
        # libfuse gave up before FUSE init; it said why on stderr, which the daemon
        # adds to this message (the last line of its start-up log)
        raise UserError("cannot mount %s: libfuse gave up before the mount started" % config.mountpoint)
    log.info("unmounted %s", config.mountpoint)
    return 0


def _wait_ready(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline and not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def _redirect_stdio(path: str) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if path != os.devnull else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = [ln.strip() for ln in f.read()[-4096:].splitlines() if ln.strip()]
        return lines[-1].decode("utf-8", "replace") if lines else ""
    except OSError:
        return ""


def mount(config, environ) -> int:
    """``ossfs BUCKET MOUNTPOINT``: check, daemonize (unless -f), serve.  Returns the exit code."""
    # Everything this process creates on local disk (cache, index, logs, control socket)
    # holds users' data or names: private to the mounting user.
    os.umask(0o077)
    log_to_stderr(config)
    for warning in config.warnings or ():
        sys.stderr.write("ossfs: warning: %s\n" % warning)
    check_mountpoint(config.mountpoint, bool(config.nonempty))
    check_outside_mountpoint(config.mountpoint, {"the cache directory": cache_dir_for(config),
                                                 "the log file": getattr(config, "logfile", "") or None})
    check_logfile(getattr(config, "logfile", "") or None)
    if getattr(config, "check_cache_dir_exist", False) and config.use_cache and not os.path.isdir(config.use_cache):
        raise UserError("cache directory %s does not exist (check_cache_dir_exist)" % config.use_cache)
    credentials = resolve_and_remember(config, environ)
    store = build_store(config, credentials)
    check_bucket(store, config)
    cache_dir = cache_dir_for(config)
    lock_cache_dir(cache_dir)  # released when the process that serves the mount exits

    if config.foreground:
        return serve(config, store, _Notifier(None))

    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        try:
            answer = _wait_ready(read_fd, READY_TIMEOUT)
        finally:
            os.close(read_fd)
            os.waitpid(pid, 0)  # the intermediate child exits at once
        if answer == "OK":
            return 0
        if answer.startswith("ERR "):
            raise UserError(answer[4:])
        if not answer:
            raise UserError("the mount of %s did not come up within %d seconds (see the logs)"
                            % (config.mountpoint, READY_TIMEOUT))
        raise UserError("the mount of %s failed: %s" % (config.mountpoint, answer))

    # The intermediate child: a new session, then fork again so that the daemon is
    # not a session leader and can never acquire a controlling terminal.
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    notifier = _Notifier(write_fd)
    code = 1
    startup_err = tempfile.NamedTemporaryFile(prefix="startup-", suffix=".err", dir=cache_dir, delete=False).name
    try:
        os.chdir("/")
        _redirect_stdio(startup_err)
        log_file = log_in_background(config, cache_dir)

        def started():
            # libfuse's messages until now went to startup_err; from now on to the log.
            _redirect_stdio(log_file or os.devnull)

        try:
            code = serve(config, store, notifier, on_started=started)
        except UserError as exc:
            detail = _last_line(startup_err)
            notifier.fail(str(exc) + (": " + detail if detail else ""))
            log.error("%s", exc)
        except BaseException as exc:  # noqa: BLE001 - the daemon reports, then exits
            log.error("mount failed", exc_info=True)
            notifier.fail("mount failed: %s" % (str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    finally:
        try:
            os.unlink(startup_err)
        except OSError:
            pass
        notifier.fail("mount failed (see the logs)")
        logging.shutdown()
        os._exit(code)
