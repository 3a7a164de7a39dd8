"""Secrets stay secret and other users stay out.

* The access key secret never appears in debug logs (log file, ``-f -d`` stderr),
  in ``ps`` output, in ``/proc/PID/cmdline`` or ``environ`` of the daemon, or in an
  error message, also when authentication fails.
* The cache directory and everything in it are private to the mounting user.
* Without ``allow_other`` another user cannot enter the mount; with it, the mode bits
  decide (the kernel checks them: ``default_permissions``).
* A passwd file that others can read is refused.
"""
from __future__ import annotations

import os
import stat
import subprocess
import time

from mount.conftest import is_mounted, ossfs_cmd, ossfs_env, write_passwd

from .conftest import as_nobody


def _workload(m):
    os.makedirs(m.p("d", "e"))
    for i in range(3):
        with open(m.p("d", "e", "f%d" % i), "wb") as f:
            f.write(os.urandom(100 * 1024))
    with open(m.p("d", "e", "f0"), "rb") as f:
        f.read()
    os.chmod(m.p("d", "e", "f1"), 0o600)
    os.setxattr(m.p("d", "e", "f2"), "user.k", b"v")
    os.rename(m.p("d", "e", "f2"), m.p("d", "g"))
    os.listdir(m.p("d"))
    os.unlink(m.p("d", "g"))


def _ps_args() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_secret_not_in_debug_log_ps_or_proc(mounter):
    m = mounter("-d", "-d", dbglevel="dbg")
    secret = m.server.access_key_secret
    _workload(m)
    assert secret not in _ps_args()
    for name in ("cmdline", "environ"):
        assert secret.encode() not in _read("/proc/%d/%s" % (m.pid, name)), name
    m.unmount()
    log = m.log()
    assert "PutObject" in log or "PUT" in log or "put" in log, "the debug log shows no requests:\n" + log[-2000:]
    assert secret not in log
    for cache_file in _walk(m.cache):
        try:
            assert secret.encode() not in _read(cache_file), cache_file
        except PermissionError:
            pass


def test_secret_not_in_foreground_debug_output(oss_server, tmp_path):
    passwd = write_passwd(str(tmp_path / "passwd"), oss_server)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out_path = tmp_path / "fg.out"
    cmd = ossfs_cmd(oss_server.bucket, str(mnt), "-f", "-d", "-o",
                    "url=%s,passwd_file=%s,use_cache=%s,dbglevel=dbg" % (oss_server.endpoint, passwd, tmp_path / "c"))
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ossfs_env())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not is_mounted(str(mnt)) and proc.poll() is None:
            time.sleep(0.1)
        assert is_mounted(str(mnt)), _read(out_path)[-2000:]
        with open(mnt / "file.txt", "wb") as f:
            f.write(b"x" * 1000)
        os.listdir(mnt)
        assert oss_server.access_key_secret not in _ps_args()
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if is_mounted(str(mnt)):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30)
    out = _read(out_path).decode("utf-8", "replace")
    assert "127.0.0.1" in out, out[-2000:]     # the debug output really shows requests
    assert oss_server.access_key_secret not in out


def test_wrong_secret_not_in_error_or_log(oss_server, tmp_path, run_ossfs):
    wrong = "Wr0ngSecretValue-" + os.urandom(6).hex()
    passwd = tmp_path / "passwd"
    passwd.write_text("%s:%s:%s\n" % (oss_server.bucket, oss_server.access_key_id, wrong))
    passwd.chmod(0o600)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    logfile = tmp_path / "fail.log"
    proc = run_ossfs(oss_server.bucket, str(mnt), "-d", "-o", "url=%s,passwd_file=%s,use_cache=%s,logfile=%s,"
                     "dbglevel=dbg,retries=1" % (oss_server.endpoint, passwd, tmp_path / "c", logfile))
    assert proc.returncode != 0
    # With -d the debug lines come first; the error is the last line.
    assert proc.stderr.splitlines()[-1].startswith("ossfs: "), proc.stderr
    for text in (proc.stdout, proc.stderr, logfile.read_text() if logfile.exists() else ""):
        assert wrong not in text
        assert oss_server.access_key_secret not in text
    assert not is_mounted(str(mnt))


def _walk(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            yield os.path.join(dirpath, n)


def _mount_cache_dir(m) -> str:
    """The directory ossfs keeps for this bucket inside ``use_cache``."""
    subdirs = [os.path.join(m.cache, n) for n in os.listdir(m.cache) if n.startswith(m.server.bucket + "-")]
    assert len(subdirs) == 1, os.listdir(m.cache)
    return subdirs[0]


def _fill_cache(m):
    _workload(m)
    with open(m.p("kept.bin"), "wb") as f:
        f.write(b"k" * 4096)
    with open(m.p("kept.bin"), "rb") as f:
        f.read()


def test_cache_files_unreadable_by_other_users(mount):
    _fill_cache(mount)
    files = list(_walk(_mount_cache_dir(mount)))
    staged = [p for p in files if os.path.getsize(p) == 4096]
    assert staged and len(files) >= 2
    for p in files:
        r = as_nobody("cat", p)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (p, r)
    r = as_nobody("ls", _mount_cache_dir(mount))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r


def test_cache_directory_modes_0700_and_files_0600(mount):
    _fill_cache(mount)
    root = _mount_cache_dir(mount)
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        st = os.lstat(dirpath)
        if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
            bad.append((dirpath, oct(stat.S_IMODE(st.st_mode))))
        for n in filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_IMODE(st.st_mode) & 0o077:
                bad.append((p, oct(stat.S_IMODE(st.st_mode))))
    assert bad == []


def test_log_file_private(mounter):
    m = mounter(dbglevel="info")
    _workload(m)
    st = os.stat(m.logfile)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)


def test_other_user_cannot_enter_mount_without_allow_other(mount):
    with open(mount.p("public.txt"), "wb") as f:
        f.write(b"public")
    os.chmod(mount.p("public.txt"), 0o644)
    r = as_nobody("ls", mount.path)
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)
    r = as_nobody("cat", mount.p("public.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)
    r = as_nobody("stat", mount.p("public.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)


def test_allow_other_enforces_mode_bits(mounter):
    m = mounter(allow_other=True)
    for name, mode in (("secret.txt", 0o600), ("public.txt", 0o644)):
        with open(m.p(name), "wb") as f:
            f.write(name.encode())
        os.chmod(m.p(name), mode)
    os.mkdir(m.p("private-dir"))
    with open(m.p("private-dir", "inside.txt"), "wb") as f:
        f.write(b"inside")
    os.chmod(m.p("private-dir", "inside.txt"), 0o644)
    os.chmod(m.p("private-dir"), 0o700)
    os.mkdir(m.p("open-dir"))
    os.chmod(m.p("open-dir"), 0o755)

    r = as_nobody("ls", m.path)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"secret.txt", "public.txt", "private-dir", "open-dir"}
    r = as_nobody("cat", m.p("public.txt"))
    assert r.returncode == 0 and r.stdout == "public.txt", r
    r = as_nobody("cat", m.p("secret.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("ls", m.p("private-dir"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("cat", m.p("private-dir", "inside.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    # Writing needs write permission: root's 0755 directory is not nobody's to fill.
    r = as_nobody("sh", "-c", 'echo x > "$1"', "sh", m.p("open-dir", "new.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    assert not os.path.exists(m.p("open-dir", "new.txt"))
    r = as_nobody("rm", "-f", m.p("public.txt"))
    assert r.returncode != 0, r
    assert os.path.exists(m.p("public.txt"))
    r = as_nobody("chmod", "666", m.p("secret.txt"))
    assert r.returncode != 0, r
    assert stat.S_IMODE(os.stat(m.p("secret.txt")).st_mode) == 0o600


def test_passwd_file_readable_by_others_refused(oss_server, tmp_path, run_ossfs):
    passwd = write_passwd(str(tmp_path / "passwd"), oss_server)
    os.chmod(passwd, 0o604)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = run_ossfs(oss_server.bucket, str(mnt), "-o", "url=%s,passwd_file=%s" % (oss_server.endpoint, passwd))
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ossfs: ") and passwd in lines[0], proc.stderr
    assert oss_server.access_key_secret not in proc.stderr
    assert not is_mounted(str(mnt))


def test_control_socket_private(mount):
    from ossfs.mount import control_socket_path
    path = control_socket_path(mount.path)
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    st = os.lstat(os.path.dirname(path))
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    r = as_nobody("ls", os.path.dirname(path))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    # The owner's status request works and tells nothing secret.
    proc = subprocess.run(ossfs_cmd("status", mount.path), env=ossfs_env(), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert mount.path in proc.stdout
    assert mount.server.access_key_secret not in proc.stdout + proc.stderr
