"""Fixtures and the workload for fault tests.

:func:`run_workload` writes a tree through a mount (30 small files of 1-200 KiB and
two large ones of 20 and 24 MiB, all deterministic), reads each back after close,
and returns a :class:`WorkloadResult`: the MD5 of every file whose ``close()``
returned successfully, and every error the workload saw.  :func:`assert_intact`
then compares each of those files with the object in the bucket via oss2.

Every loop is bounded in count and time; mounts come from ``tests/mount``'s
``mounter`` fixture and are unmounted at the end, also on failure.
"""
from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass, field

from mount.conftest import mount, mounter, run_ossfs  # noqa: F401  (fixtures reused)

KiB = 1024
MiB = 1024 * KiB

# Generous retries so that injected faults at these rates never get through.
FAULT_MOUNT_OPTS = {"retries": 10, "stat_cache_expire": 0, "attr_timeout": 0, "entry_timeout": 0,
                    "multipart_threshold": 5, "multipart_size": 5, "parallel_count": 3,
                    "connect_timeout": 10, "readwrite_timeout": 20}


def content(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    block = hashlib.sha256(seed).digest() * (64 * KiB // 32)
    reps = size // len(block) + 1
    return (block * reps)[:size]


def workload_files(small: int = 30, large=(20 * MiB, 24 * MiB), seed: int = 7) -> list:
    rng = random.Random(seed)
    files = []
    for i in range(small):
        files.append(("tree/d%d/small-%02d.bin" % (i % 4, i), rng.randint(1 * KiB, 200 * KiB)))
    for i, size in enumerate(large):
        files.append(("tree/large-%d.bin" % i, size))
    return files


@dataclass
class WorkloadResult:
    closed: dict = field(default_factory=dict)      # key -> md5 hex of what close() acknowledged
    errors: list = field(default_factory=list)      # (key, step, repr(exc))
    read_back: int = 0


def write_one(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])


def run_workload(root: str, files=None, deadline_s: float = 300, on_progress=None) -> WorkloadResult:
    """Write, close and read back every file; stop early when ``deadline_s`` passes."""
    files = files if files is not None else workload_files()
    res = WorkloadResult()
    deadline = time.monotonic() + deadline_s
    for n, (key, size) in enumerate(files):
        if time.monotonic() > deadline:
            res.errors.append((key, "deadline", "workload ran out of time"))
            break
        path = os.path.join(root, key)
        data = content(key, size)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_one(path, data)
        except OSError as exc:
            res.errors.append((key, "write", repr(exc)))
            continue
        res.closed[key] = hashlib.md5(data).hexdigest()
        try:
            with open(path, "rb") as f:
                got = f.read()
            if hashlib.md5(got).hexdigest() != res.closed[key]:
                res.errors.append((key, "read", "read back %d bytes, different content" % len(got)))
            else:
                res.read_back += 1
        except OSError as exc:
            res.errors.append((key, "read", repr(exc)))
        if on_progress:
            on_progress(n)
    return res


def assert_intact(server, closed: dict) -> None:
    """Every acknowledged file is in the bucket with the acknowledged content."""
    server.set_faults()
    oss = server.oss_bucket()
    bad = {}
    for key, md5 in closed.items():
        try:
            got = hashlib.md5(oss.get_object(key).read()).hexdigest()
        except Exception as exc:  # noqa: BLE001 - report every key, not the first
            bad[key] = repr(exc)
            continue
        if got != md5:
            bad[key] = "content differs"
    assert not bad, bad


def assert_answers(mount, files) -> None:
    """The mount still lists and stats the tree."""
    seen = set()
    for dirpath, _dirs, names in os.walk(mount.p("tree")):
        for n in names:
            seen.add(os.path.relpath(os.path.join(dirpath, n), mount.path))
    assert {k for k, _ in files} <= seen, sorted({k for k, _ in files} - seen)
