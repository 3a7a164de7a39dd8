"""Fixtures for security tests: the mount fixtures of ``tests/mount`` and a way to run
a command as another user (``nobody``, uid/gid 65534, no supplementary groups)."""
from __future__ import annotations

import subprocess

import pytest

from mount.conftest import mount, mounter, run_ossfs  # noqa: F401  (fixtures reused)

NOBODY = 65534


def as_nobody(*argv, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def other_user():
    return as_nobody
