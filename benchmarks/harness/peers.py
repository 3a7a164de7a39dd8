"""The peers: how each one mounts the bench bucket, unmounts, drops its own cache and
names its daemon process.

Mount peers (``ossfs``, ``s3fs``, ``rclone``) all mount THE SAME bucket of one
ossfs-server; each works under its own top directory ``w-<peer>/`` so their objects
never meet.  ``disk`` is a local directory on the same disk as the server's data
(the floor for local work).  ``sdk`` is not a filesystem: the workloads call oss2
directly for it (the floor for transfers and listings).

Set-ups, chosen to be each peer's sensible defaults (README explains them):

* ossfs: ``-o url=,passwd_file=,use_cache=DIR``; everything else default.
* s3fs-fuse 1.90: S3 face, ``use_path_request_style,sigv4,endpoint=us-east-1``;
  no ``use_cache`` (s3fs does not cache on disk by default), everything else default.
* rclone 1.60: ``mount --vfs-cache-mode full --cache-dir DIR --vfs-write-back 0s``:
  the write-back delay (5 s by default) is set to 0 so rclone's time is its upload,
  not an idle wait.  Its uploads are asynchronous: workloads wait for the objects to
  reach the server and count that time.  ``AWS_CA_BUNDLE`` is removed from its
  environment (rclone 1.60 refuses plain-HTTP endpoints when it is set).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

from .common import BenchError, drop_kernel_caches, is_mounted, wait_until
from .server import ACCESS_KEY_ID, ACCESS_KEY_SECRET, BUCKET, CODE, Server, code_env

log = logging.getLogger(__name__)

MOUNT_TIMEOUT = 60
ALL_PEERS = ("ossfs", "s3fs", "rclone", "sdk", "disk")


class Peer:
    """A peer with nothing to mount (``sdk``); the base of the others."""
    kind = "sdk"
    async_upload = False

    def __init__(self, name: str, work: str, server: Server):
        self.name = name
        self.work = work
        self.server = server
        self.prefix = "w-%s/" % name          # this peer's keys on the server
        self.root = ""                        # local path of self.prefix ("" for sdk)
        self.pid = None

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def mount(self) -> None:
        pass

    def unmount(self) -> None:
        pass

    def drop_cache(self) -> None:
        """Forgets what this peer cached; the peer must be unmounted."""

    def fresh_mount(self) -> None:
        """Unmount, forget every cache (the peer's and the kernel's), mount."""
        self.unmount()
        self.drop_cache()
        drop_kernel_caches()
        self.mount()

    def remount(self) -> None:
        """Unmount and mount again, keeping the peer's own cache."""
        self.unmount()
        self.mount()

    def version(self) -> str:
        return ""


class DiskPeer(Peer):
    kind = "disk"

    def __init__(self, name, work, server):
        super().__init__(name, work, server)
        self.root = os.path.join(work, "disk", self.prefix)
        os.makedirs(self.root, exist_ok=True)


class MountPeer(Peer):
    kind = "mount"

    def __init__(self, name, work, server):
        super().__init__(name, work, server)
        self.mnt = os.path.join(work, "mnt-" + name)
        self.cache = os.path.join(work, "cache-" + name)
        self.root = os.path.join(self.mnt, self.prefix)
        self.passwd = os.path.join(work, "passwd")
        os.makedirs(self.mnt, exist_ok=True)

    def command(self) -> list:
        raise NotImplementedError

    def environ(self) -> dict:
        return dict(os.environ)

    def mount(self) -> None:
        if is_mounted(self.mnt):
            return
        os.makedirs(self.cache, exist_ok=True)
        # The daemon inherits the command's stdout/stderr: a file, not a pipe nobody closes.
        logpath = os.path.join(self.work, "%s.log" % self.name)
        with open(logpath, "ab") as logf:
            try:
                rc = subprocess.run(self.command(), env=self.environ(), cwd=self.work, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=logf, timeout=MOUNT_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            raise BenchError("%s mount failed (%s): %s" % (self.name, rc, _tail(logpath)))
        wait_until(lambda: is_mounted(self.mnt), timeout=MOUNT_TIMEOUT, what="%s to mount" % self.name)
        wait_until(lambda: os.path.isdir(self.root), timeout=MOUNT_TIMEOUT,
                   what="%s to show %s" % (self.name, self.prefix))
        self.pid = self._find_pid()

    def _find_pid(self):
        """The daemon serving the mountpoint: the process whose command line names it."""
        p = subprocess.run(["pgrep", "-f", "--", self.mnt], stdout=subprocess.PIPE, timeout=10)
        pids = [int(x) for x in p.stdout.split()]
        return min(pids) if pids else None

    def unmount(self) -> None:
        if not is_mounted(self.mnt):
            self.pid = None
            return
        os.sync()
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0:
                break
            time.sleep(0.2)
        else:
            log.warning("%s busy; lazy unmount", self.mnt)
            subprocess.run(["fusermount3", "-uz", self.mnt], timeout=60)
        self._wait_daemon_exit()

    def _wait_daemon_exit(self) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        log.warning("%s daemon %d still running after unmount; killing it", self.name, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def drop_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)


class OssfsPeer(MountPeer):
    def command(self):
        return [sys.executable, "-m", "ossfs", BUCKET, self.mnt, "-o",
                "url=%s,passwd_file=%s,use_cache=%s" % (self.server.url, self.passwd, self.cache)]

    def environ(self):
        return code_env()

    def version(self):
        p = subprocess.run([sys.executable, "-c", "import ossfs; print(ossfs.__version__)"],
                           stdout=subprocess.PIPE, env=self.environ(), cwd=self.work, timeout=30)
        return p.stdout.decode().strip() + (" (git %s)" % CODE["rev"] if CODE["rev"] else "")


class S3fsPeer(MountPeer):
    def command(self):
        return ["s3fs", BUCKET, self.mnt, "-o",
                "url=%s,use_path_request_style,sigv4,endpoint=us-east-1,passwd_file=%s"
                % (self.server.url, self.passwd)]

    def version(self):
        p = subprocess.run(["s3fs", "--version"], stdout=subprocess.PIPE, timeout=30)
        first = p.stdout.decode(errors="replace").splitlines()[0]
        return first.split("File System")[-1].split("(")[0].strip()


class RclonePeer(MountPeer):
    async_upload = True

    def command(self):
        return ["rclone", "mount", "bench:" + BUCKET, self.mnt, "--vfs-cache-mode", "full",
                "--cache-dir", self.cache, "--vfs-write-back", "0s", "--daemon",
                "--daemon-wait", "30s"]

    def environ(self):
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                   RCLONE_CONFIG_BENCH_ENDPOINT=self.server.url,
                   RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY_ID,
                   RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=ACCESS_KEY_SECRET,
                   RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
                   RCLONE_CONFIG="/dev/null")
        return env

    def version(self):
        p = subprocess.run(["rclone", "version"], stdout=subprocess.PIPE, timeout=30)
        return p.stdout.decode(errors="replace").splitlines()[0].replace("rclone ", "")


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def make_peer(name: str, work: str, server: Server) -> Peer:
    classes = {"ossfs": OssfsPeer, "s3fs": S3fsPeer, "rclone": RclonePeer, "sdk": Peer, "disk": DiskPeer}
    if name not in classes:
        raise BenchError("unknown peer %r (known: %s)" % (name, ", ".join(ALL_PEERS)))
    return classes[name](name, work, server)


def write_passwd(work: str) -> None:
    """One passwd file in the ``AKID:SECRET`` form both ossfs and s3fs read, mode 0600."""
    path = os.path.join(work, "passwd")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("%s:%s\n" % (ACCESS_KEY_ID, ACCESS_KEY_SECRET))
