"""Records shared by the harness modules, the sizes of each scale, and small helpers
(bounded subprocess calls, bounded polling, dropping the kernel's caches).

Nothing here holds state shared between threads.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class BenchError(Exception):
    """A workload could not run on a peer; the table shows the message."""


@dataclass(frozen=True)
class Scale:
    name: str
    big_bytes: int          # workloads 1, 2 and 5 (the large file)
    small_count: int        # workload 3 (files of small_size)
    small_size: int
    list_count: int         # workload 4 (objects created on the server side)
    rename_dir_count: int   # workload 5 (files in the renamed directory)
    tree_files: int         # workload 6 (files in the tarball)
    rss_bytes: int          # workload 7 (the file written while sampling RSS)


SCALES = {
    "full": Scale("full", 1024 * MiB, 1000, 4096, 10000, 1000, 3000, 4096 * MiB),
    "small": Scale("small", 64 * MiB, 200, 4096, 1000, 200, 300, 256 * MiB),
    # For the smoke test: every workload runs, each in a second or two.
    "tiny": Scale("tiny", 8 * MiB, 20, 4096, 50, 20, 30, 16 * MiB),
}


@dataclass
class Sample:
    """One measured value of one metric, on one peer, in one run."""
    workload: str
    metric: str            # e.g. "write MiB/s", "ls -l cold s"
    peer: str
    run: int
    value: Optional[float]  # None when the peer failed this metric
    unit: str              # "MiB/s", "s", "files/s", "MB"
    higher_is_better: bool
    requests: dict = field(default_factory=dict)   # server op name -> count (this metric only)
    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


def run_cmd(argv, *, timeout: float, env=None, cwd=None, check=True, shell=False) -> subprocess.CompletedProcess:
    """Runs a command with a time limit; a failure raises BenchError with its stderr."""
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, shell=shell, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise BenchError("timed out after %ds: %s" % (timeout, _show(argv)))
    if check and p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError("%s exited %d: %s" % (_show(argv), p.returncode, err[-1] if err else ""))
    return p


def _show(argv) -> str:
    return argv if isinstance(argv, str) else " ".join(str(a) for a in argv[:3])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def wait_until(cond: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Polls ``cond`` until true; raises BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            raise BenchError("gave up after %ds waiting for %s" % (timeout, what or "a condition"))
        time.sleep(interval)


def drop_kernel_caches() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches`` (needs root; a warning otherwise)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log.warning("cannot drop the page cache (%s); cold reads may be warm", e)


def is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)
