"""Real mounts: ``python -m ossfs BUCKET MNT -o url=...,passwd_file=...`` as a daemon
against the ``oss_server`` fixture, exercised with ordinary tools.

Fixtures
    ``mount``: one live mount (the default daemon mode, as users run it) of the test
    server's bucket; yields a :class:`Mount`.  When the test ends, also on failure,
    the mount is unmounted with ``fusermount3 -u`` (lazily as a last resort) and the
    daemon must have exited; the server is stopped by ``oss_server``.
    ``mounter``: a factory ``mounter(**options) -> Mount`` for tests that need a
    second mount or special options; everything it mounts is unmounted at the end.
    ``run_ossfs``: runs the ``ossfs`` command and returns the CompletedProcess.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOUNT_TIMEOUT = 60
EXIT_TIMEOUT = 120  # uploading dirty data at unmount may take a while


def ossfs_env(extra: dict = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    for name in list(env):
        # Only the passwd file given by the test may supply credentials.
        if name.startswith(("OSS_", "OSSACCESS", "OSSSECRET", "OSSFS_")) or name == "OSS_CREDENTIAL_FILE":
            del env[name]
    env.update(extra or {})
    return env


def ossfs_cmd(*args) -> list:
    return [sys.executable, "-m", "ossfs"] + [str(a) for a in args]


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == real for line in f)


def find_daemon(mountpoint: str):
    """Pid of the ossfs process serving ``mountpoint`` (by its command line)."""
    want = os.fsencode(mountpoint)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"ossfs" in argv and want in argv:
            return int(entry)
    return None


def pid_alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Mount:
    """A live ossfs mount; ``path`` is the mountpoint, ``server`` the OssServer."""

    def __init__(self, server, path: str, passwd: str, cache: str, logfile: str, options: dict):
        self.server = server
        self.path = path
        self.passwd = passwd
        self.cache = cache
        self.logfile = logfile
        self.options = options
        self.pid = None

    def p(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    def option_string(self) -> str:
        opts = {"url": self.server.endpoint, "passwd_file": self.passwd, "use_cache": self.cache,
                "logfile": self.logfile}
        opts.update(self.options)
        return ",".join(k if v is True else "%s=%s" % (k, v) for k, v in opts.items() if v is not False)

    def command(self, *extra, bucket: str = None) -> list:
        return ossfs_cmd(bucket or self.server.bucket, self.path, "-o", self.option_string(), *extra)

    def start(self, *extra) -> "Mount":
        proc = subprocess.run(self.command(*extra), env=ossfs_env(), capture_output=True, text=True,
                              timeout=MOUNT_TIMEOUT)
        if proc.returncode != 0:
            raise AssertionError("ossfs failed (%d): %s\n%s" % (proc.returncode, proc.stderr, self.log()))
        if "-d" not in extra:  # with -d, startup logs go to the terminal before daemonizing
            assert proc.stderr == "", proc.stderr
        assert is_mounted(self.path), "ossfs returned 0 but %s is not mounted" % self.path
        self.pid = find_daemon(self.path)
        assert self.pid, "no ossfs daemon found for %s" % self.path
        return self

    def log(self) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while self.pid and pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not (self.pid and pid_alive(self.pid))

    def unmount(self) -> None:
        """Unmount and wait for the daemon to upload and exit; asserts it did."""
        if is_mounted(self.path):
            for _ in range(50):
                if subprocess.run(["fusermount3", "-u", self.path], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
        exited = self.wait_exit()
        assert not is_mounted(self.path), "%s still mounted" % self.path
        assert exited, "ossfs (pid %s) did not exit after unmount" % self.pid

    def force_cleanup(self) -> None:
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", self.path], capture_output=True)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-uz", self.path], capture_output=True)
        if self.pid and pid_alive(self.pid) and not self.wait_exit(10):
            os.kill(self.pid, signal.SIGKILL)
            self.wait_exit(10)


@pytest.fixture
def run_ossfs():
    def run(*args, timeout: float = 60, env: dict = None):
        return subprocess.run(ossfs_cmd(*args), env=ossfs_env(env), capture_output=True, text=True,
                              timeout=timeout)
    return run


def write_passwd(path: str, server) -> str:
    with open(path, "w") as f:
        f.write("%s:%s:%s\n" % (server.bucket, server.access_key_id, server.access_key_secret))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def mounter(oss_server, tmp_path):
    made = []
    # Mountpoints live in a world-traversable directory so that tests can act as
    # another user; the passwd file and caches stay in the private tmp_path.
    base = tempfile.mkdtemp(prefix="ossfs-mnt-")
    os.chmod(base, 0o755)

    def make(*extra, start: bool = True, **options) -> Mount:
        n = len(made)
        mnt = os.path.join(base, "mnt%d" % n)
        os.mkdir(mnt)
        os.chmod(mnt, 0o755)
        passwd = write_passwd(str(tmp_path / "passwd"), oss_server)
        m = Mount(oss_server, str(mnt), passwd, str(tmp_path / ("cache%d" % n)), str(tmp_path / ("ossfs%d.log" % n)),
                  options)
        made.append(m)
        if start:
            m.start(*extra)
        return m

    try:
        yield make
    finally:
        failures = []
        for m in made:
            try:
                if m.pid:
                    m.unmount()
            except AssertionError as exc:
                failures.append(str(exc))
            finally:
                m.force_cleanup()
        # Never rmtree here: a mount that refused to go away would lose bucket data.
        for m in made:
            if not is_mounted(m.path):
                try:
                    os.rmdir(m.path)
                except OSError:
                    pass
        try:
            os.rmdir(base)
        except OSError:
            pass
        assert not failures, failures


@pytest.fixture
def mount(mounter) -> Mount:
    return mounter()


def unique(prefix: str = "f") -> str:
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])
