"""The ``ossfs`` command: the only place that calls ``sys.exit``.

Owns the dispatch from a parsed :class:`~ossfs.config.Config` to an action and the
way failures reach the user:

* a :class:`~ossfs.errors.UserError` (bad option, passwd file, mountpoint, endpoint,
  key, bucket...) prints ``ossfs: <message>`` as one line on stderr and exits with
  its ``exit_code``;
* any other exception also prints one line (``ossfs: unexpected error: ...``) and
  exits 1; its traceback is printed only with ``-d``, because it is a bug report,
  not a message for the user;
* standard output that cannot be written (``ossfs --version > /dev/full``) prints
  ``ossfs: cannot write to standard output: <reason>`` and exits 1; a reader that went
  away (``ossfs --help | head -1``) ends ossfs quietly with 141, as SIGPIPE ends a C
  program (the shell's 128 + 13).  Either way nothing more is written to stdout.

Actions: ``mount`` (default, :func:`ossfs.mount.mount`), ``help``, ``version``
(ossfs, oss2, mfusepy and libfuse versions), ``mpu_list``/``mpu_abort``
(``--incomplete-mpu-list``/``--incomplete-mpu-abort[=all|=AGE] BUCKET``) and
``status MOUNTPOINT`` (asks the running mount over its control socket and prints
the files waiting for upload, with a progress bar when stdout is a terminal).
"""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from typing import Optional, TextIO

from ossfs import __version__
from ossfs.errors import UserError

log = logging.getLogger(__name__)


class OutputError(Exception):
    """Standard output could not be written; ``errno`` and ``strerror`` are the OSError's."""

    def __init__(self, cause: OSError):
        super().__init__(cause.strerror or str(cause))
        self.errno = cause.errno
        self.broken_pipe = isinstance(cause, BrokenPipeError)


class _Output:
    """A text stream whose write/flush failures become :class:`OutputError`, so that
    they are not mistaken for the failures of the action that was writing."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc

    def isatty(self) -> bool:
        return self._stream.isatty()


def _abandon_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush at exit cannot fail
    again (and print a traceback of its own) on output that was already refused."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _versions() -> str:
    lines = ["ossfs %s" % __version__]
    try:
        import oss2
        lines.append("oss2 %s" % oss2.__version__)
    except Exception as exc:  # noqa: BLE001 - report what is missing, do not fail
        lines.append("oss2: not available (%s)" % exc)
    try:
        from ossfs.fuse_ops import libfuse_version, mfusepy_version
        lines.append("mfusepy %s" % mfusepy_version())
        lines.append("libfuse %s" % libfuse_version())
    except Exception as exc:  # noqa: BLE001
        lines.append("mfusepy/libfuse: not available (%s)" % str(exc).splitlines()[0])
    return "\n".join(lines) + "\n"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


def _bar(done: int, total: int, width: int = 24) -> str:
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / float(total)))
    filled = int(round(frac * width))
    return "[%s%s] %3d%%" % ("#" * filled, "." * (width - filled), int(frac * 100))


def format_status(answer: dict, tty: bool) -> str:
    """Human-readable text of a mount's status answer.

    The core's ``status()`` is a dict; known keys are laid out (``dirty``: files not
    yet uploaded, ``uploads``: uploads in flight with ``done``/``total`` bytes), any
    other scalar is printed as ``name: value`` so nothing the core reports is hidden.
    """
    status = answer.get("status") or {}
    out = ["%s: ossfs mount (pid %s)" % (answer.get("mountpoint", "?"), answer.get("pid", "?"))]
    lists = {}
    for key in sorted(status):
        value = status[key]
        if isinstance(value, (list, tuple)):
            lists[key] = value
        elif isinstance(value, dict):
            for sub in sorted(value):
                out.append("  %s.%s: %s" % (key, sub, value[sub]))
        else:
            out.append("  %s: %s" % (key, value))
    for key, items in lists.items():
        out.append("  %s: %d" % (key, len(items)))
        for item in items:
            if not isinstance(item, dict):
                out.append("    %s" % (item,))
                continue
            path = item.get("path") or item.get("key") or "?"
            done, total = item.get("uploaded", item.get("done")), item.get("total", item.get("size"))
            if item.get("uploading", True) and isinstance(done, int) and isinstance(total, int):
                progress = (_bar(done, total) + " ") if tty else ""
                out.append("    %s%s  %s / %s" % (progress, path, _human(done), _human(total)))
            else:
                rest = ", ".join("%s=%s" % (k, v) for k, v in sorted(item.items()) if k not in ("path", "key"))
                out.append("    %s%s" % (path, ("  " + rest) if rest else ""))
    return "\n".join(out) + "\n"


def _status(config, stdout: TextIO) -> int:
    from ossfs.mount import query_status
    answer = query_status(config.mountpoint)
    if "error" in answer:
        raise UserError("the mount of %s refused the request: %s" % (config.mountpoint, answer["error"]))
    stdout.write(format_status(answer, stdout.isatty()))
    return 0


def _maintenance_store(config, environ):
    from ossfs.mount import build_store, check_bucket, log_to_stderr, resolve_and_remember
    log_to_stderr(config)
    store = build_store(config, resolve_and_remember(config, environ))
    check_bucket(store, config)
    return store


def _mpu_list(config, environ, stdout: TextIO) -> int:
    from ossfs.transfer import list_incomplete
    uploads = list_incomplete(_maintenance_store(config, environ))
    for u in uploads:
        stdout.write("%s  %s  %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(u.initiated)),
                                       u.upload_id, u.key))
    stdout.write("%d incomplete multipart upload(s) in bucket %s\n" % (len(uploads), config.bucket))
    return 0


def _mpu_abort(config, environ, stdout: TextIO) -> int:
    """Abort old incomplete uploads.  With an age (default 24 h), uploads that this
    host's cache for the bucket (``-o use_cache=``, else the default) will resume are
    kept and listed; ``=all`` aborts every one, those too (their files stay dirty in
    the cache and are sent again from the start)."""
    from ossfs.cache import checkpointed_uploads
    from ossfs.mount import cache_dir_for
    from ossfs.transfer import abort_incomplete, list_incomplete
    store = _maintenance_store(config, environ)
    keep = set()
    if config.mpu_abort_age is not None:
        keep = checkpointed_uploads(cache_dir_for(config))
        for u in list_incomplete(store):
            if u.upload_id in keep:
                stdout.write("kept %s  %s  (a dirty file in this host's cache resumes it)\n" % (u.upload_id, u.key))
    aborted = abort_incomplete(store, config.mpu_abort_age, keep=keep)
    for u in aborted:
        stdout.write("aborted %s  %s\n" % (u.upload_id, u.key))
    age = "any age" if config.mpu_abort_age is None else "older than %d s" % config.mpu_abort_age
    stdout.write("%d incomplete multipart upload(s) %s aborted in bucket %s\n" % (len(aborted), age, config.bucket))
    return 0


def run(argv: list, environ, stdout: TextIO = sys.stdout) -> int:
    """Parse and run; returns the exit code; raises UserError for the user's mistakes."""
    from ossfs.config import help_text, parse_args
    config = parse_args(argv, environ)
    if config.action == "help":
        stdout.write(help_text())
        return 0
    if config.action == "version":
        stdout.write(_versions())
        return 0
    if config.action == "status":
        return _status(config, stdout)
    if config.action == "mpu_list":
        return _mpu_list(config, environ, stdout)
    if config.action == "mpu_abort":
        return _mpu_abort(config, environ, stdout)
    from ossfs.mount import mount
    return mount(config, environ)


def _debug_requested(argv: list) -> bool:
    return any(a.startswith("-") and not a.startswith("--") and set(a[1:]) <= set("fds") and "d" in a
               for a in argv)


def main(argv: Optional[list] = None) -> None:
    """Console entry point ``ossfs``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    out = _Output(sys.stdout)
    try:
        code = run(argv, os.environ, out)
        out.flush()
    except OutputError as exc:
        _abandon_stdout()
        if not exc.broken_pipe:
            sys.stderr.write("ossfs: cannot write to standard output: %s\n" % exc)
        code = 141 if exc.broken_pipe else 1
    except UserError as exc:
        sys.stderr.write("ossfs: %s\n" % str(exc).replace("\n", " "))
        code = exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ossfs: interrupted\n")
        code = 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; traceback only with -d
        if _debug_requested(argv):
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        sys.stderr.write("ossfs: unexpected error: %s%s\n" % (type(exc).__name__, (": " + first) if first else ""))
        code = 1
    try:
        sys.stdout.flush()
    except OSError:
        _abandon_stdout()
    sys.exit(code)


if __name__ == "__main__":
    main()
