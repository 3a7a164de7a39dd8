"""Fixtures and helpers for the durability suite: real mounts (``tests/mount``'s
``mounter``) against ``ossfs-server`` with fault injection, kill -9 and restarts.

Every loop is bounded in count and time; every mount is unmounted at the end (also
after kill -9: ``fusermount3 -uz``), every daemon killed, every tmpfs unmounted.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from typing import Optional, Tuple

from mount.conftest import is_mounted, mount, mounter, pid_alive, run_ossfs  # noqa: F401  (fixtures reused)

KiB = 1024
MiB = 1024 * KiB


def pattern(name: str, size: int) -> bytes:
    """Deterministic, incompressible-looking content of ``size`` bytes."""
    seed = hashlib.sha256(name.encode()).digest()
    block = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(256)) * 128  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


def write_chunks(f, name: str, size: int, chunk: int = MiB) -> str:
    """Write ``size`` bytes of :func:`pattern`-like content to the open file ``f`` in
    chunks (memory stays bounded); returns their MD5."""
    md5 = hashlib.md5()
    block = pattern(name, chunk)
    done = 0
    while done < size:
        piece = block[:min(chunk, size - done)]
        # vary each chunk so that parts differ
        piece = done.to_bytes(8, "big") + piece[8:] if len(piece) >= 8 else piece
        f.write(piece)
        md5.update(piece)
        done += len(piece)
    return md5.hexdigest()


def object_md5(server, key: str) -> str:
    md5 = hashlib.md5()
    body = server.oss_bucket().get_object(key)
    for chunk in iter(lambda: body.read(MiB), b""):
        md5.update(chunk)
    return md5.hexdigest()


def file_md5(path: str) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            md5.update(chunk)
    return md5.hexdigest()


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll ``predicate`` until it returns something true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def kill9(m) -> None:
    """kill -9 the daemon of mount ``m`` and clear the dead mount."""
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(m.pid), 10), "ossfs survived SIGKILL"
    subprocess.run(["fusermount3", "-uz", m.path], capture_output=True)
    assert wait_for(lambda: not is_mounted(m.path), 10)
    m.pid = None


def remount(m) -> None:
    """Mount ``m`` again with the same options and cache directory."""
    m.start()


_WRITER = r"""
import errno, os, sys, time
sys.path.insert(0, sys.argv[1])
from durability.conftest import write_chunks
path, size = sys.argv[2], int(sys.argv[3])
f = open(path, "wb")
print(write_chunks(f, os.path.basename(path), size), flush=True)
sys.stdin.readline()
t0 = time.monotonic()
try:
    f.close()
    result = "ok"
except OSError as exc:
    result = errno.errorcode.get(exc.errno, str(exc.errno))
print(result, time.monotonic() - t0, flush=True)
"""


class WriterProcess:
    """A child process that writes ``size`` bytes of :func:`write_chunks` content to
    ``path`` and keeps the file open until :meth:`close` asks it to close.

    Tests that watch a slow ``close()`` while they start other processes (``ossfs
    status``, a server) must not hold the file open themselves: every fork copies the
    descriptor, and the exec that follows closes the copy, which is a FUSE flush that
    uploads the file, so the new process would hang in exec until the upload ended.
    """

    def __init__(self, path: str, size: int):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen([sys.executable, "-c", _WRITER, here, path, str(size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.md5 = self.proc.stdout.readline().strip()  # the file is written and still open
        assert len(self.md5) == 32, "the writer failed: %r" % self.md5

    def close(self) -> None:
        """Let the child call close() (it returns at once; see :meth:`result`)."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> Optional[Tuple[str, float]]:
        """``("ok" or the errno name, seconds close() took)``, or None if close() has
        not returned within ``timeout``."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        words = out.split()
        return (words[0], float(words[1])) if len(words) == 2 else (out.strip() or "no answer", 0.0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
