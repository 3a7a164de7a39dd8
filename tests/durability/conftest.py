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
import time

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
