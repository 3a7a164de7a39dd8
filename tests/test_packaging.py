"""The .deb and .rpm packages: built from the committed tree, installed, used, removed.

What a user of the Debian package does, in order:

* build ``dist/ossfs_<version>_<arch>.deb`` with ``packaging/deb/build.sh`` from
  ``git archive HEAD`` (what CI's clean clone holds; uncommitted files are not packaged);
* ``apt-get install ./dist/ossfs_*.deb``: ossfs runs on /usr/bin/python3 with Debian's
  libraries plus its private /usr/lib/ossfs/site-packages, and nothing lands in the system
  Python's own directories;
* ``/usr/bin/ossfs-server`` serves a bucket on loopback, and the bucket is mounted in the
  four ways users mount it (command line, ``mount -t fuse.ossfs``, an fstab line of type
  ``fuse.ossfs``, the legacy ``ossfs#bucket`` fstab line of type ``fuse``), written, read,
  unmounted with ``umount``, and the object checked on the server;
* ``man ossfs`` lists every option of ossfs/config.py's table; ``ossfs --version``;
* the systemd examples pass ``systemd-analyze verify`` (systemd is not PID 1 here, so
  nothing is started through systemd);
* ``apt-get remove`` leaves nothing behind (the package has no conffiles), ``purge``
  forgets it.

The .rpm cannot be installed on Debian: its file list and dependencies are checked.

These tests install and remove a system package, so they need root, apt and /dev/fuse;
they take about two minutes.
"""
from __future__ import annotations

import fcntl
import gzip
import os
import re
import shutil
import signal
import subprocess
import uuid

import pytest

pytestmark = [pytest.mark.packaging]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = "/usr/lib/ossfs/site-packages"
# Commands run by mount(8) must find the packaged ossfs, not a development install.
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}


def run(cmd, *, check=True, timeout=300, env=None, cwd=None):
    """Runs cmd; on failure the assertion shows its output."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    if check:
        assert p.returncode == 0, "%s -> %d\nstdout: %s\nstderr: %s" % (
            " ".join(cmd), p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


# Another run of the test suite on the same machine may hold dpkg's lock for a while.
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def package_installed() -> bool:
    p = run(["dpkg-query", "-W", "-f=${Status}", "ossfs"], check=False)
    return p.returncode == 0 and "install ok installed" in p.stdout


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The committed source tree (git archive HEAD), as CI's clean clone has it."""
    if os.geteuid() != 0:
        pytest.fail("the packaging tests install a system package: run them as root")
    dest = tmp_path_factory.mktemp("ossfs-src")
    archive = subprocess.Popen(["git", "-C", REPO, "archive", "--format=tar", "HEAD"],
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    assert archive.wait() == 0
    # SOURCE_DATE_EPOCH from the commit, since the archive is not a git checkout.
    stamp = run(["git", "-C", REPO, "log", "-1", "--format=%ct"]).stdout.strip()
    return dest, stamp


@pytest.fixture(scope="module")
def version(tree):
    text = (tree[0] / "ossfs" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def deb(tree):
    src, stamp = tree
    out = run(["bash", "packaging/deb/build.sh"], cwd=str(src),
              env=dict(os.environ, SOURCE_DATE_EPOCH=stamp)).stdout.strip().splitlines()[-1]
    path = src / out
    assert path.is_file(), out
    return path


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed with apt-get; removed again (and purged) at the end.

    Two runs of the suite on one machine take turns: the package is system-wide."""
    with open("/run/lock/ossfs-packaging-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run(APT + ["install", str(deb)], env=APT_ENV)
        try:
            yield deb
        finally:
            if run(["dpkg-query", "-W", "ossfs"], check=False).returncode == 0:
                run(APT + ["purge", "ossfs"], check=False, env=APT_ENV)


def test_deb_name_metadata_and_contents(deb, version):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    # pycryptodome's compiled modules make the package architecture-specific.
    assert deb.name == "ossfs_%s_%s.deb" % (version, arch)
    info = run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Depends"]).stdout
    assert "Version: %s\n" % version in info
    depends = {d.split()[0] for d in info.split("Depends:")[1].strip().split(", ")}
    assert {"python3", "fuse3", "libfuse3-3", "python3-requests", "python3-crcmod", "python3-diskcache",
            "python3-xattr", "python3-configargparse"} <= depends
    # Nothing that Debian lacks is asked of Debian.
    assert not {d for d in depends if "oss2" in d or "fusepy" in d or "pycryptodome" in d}

    files = set()
    for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        files.add(name[1:].rstrip("/") or "/")
    for f in ["/usr/bin/ossfs", "/usr/bin/ossfs-server", "/sbin/mount.fuse.ossfs",
              "/usr/share/man/man1/ossfs.1.gz", "/usr/share/man/man1/ossfs-server.1.gz",
              "/usr/share/man/man8/mount.fuse.ossfs.8.gz",
              "/usr/share/doc/ossfs/passwd-ossfs.example", "/usr/share/doc/ossfs/README.Debian",
              "/usr/share/doc/ossfs/copyright", "/usr/share/doc/ossfs/mnt-oss.mount",
              SITE + "/ossfs/cli.py", SITE + "/ossfs/server/__main__.py", SITE + "/oss2/__init__.py",
              SITE + "/mfusepy.py", SITE + "/Crypto/Cipher/AES.py", SITE + "/aliyunsdkcore/__init__.py"]:
        assert f in files, f
    allowed = ("/usr/lib/ossfs", "/usr/bin/ossfs", "/sbin/mount.fuse.ossfs", "/usr/share/man/man1/ossfs",
               "/usr/share/man/man8/mount.fuse.ossfs", "/usr/share/doc/ossfs")
    strays = [f for f in files if not f.startswith(allowed)
              and f not in ("/", "/usr", "/usr/bin", "/sbin", "/usr/lib", "/usr/share", "/usr/share/man",
                            "/usr/share/man/man1", "/usr/share/man/man8", "/usr/share/doc")]
    assert strays == []
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if f.startswith("/etc")], "no real /etc/passwd-ossfs is shipped"
    control = run(["dpkg-deb", "-I", str(deb)]).stdout
    assert "conffiles" not in control


def test_launchers_use_system_python_and_private_dir(installed):
    for name in ("ossfs", "ossfs-server"):
        with open("/usr/bin/" + name) as f:
            text = f.read()
        assert text.startswith("#!/usr/bin/python3")
        assert SITE in text
    # The vendored libraries are the launchers' alone, not the system Python's.
    p = run(["/usr/bin/python3", "-s", "-c", "import oss2"], check=False)
    assert p.returncode != 0 and "No module named 'oss2'" in p.stderr
    p = run(["/usr/bin/python3", "-s", "-c", "import sys; sys.path.insert(0, %r); import oss2, ossfs, mfusepy;"
             " print(oss2.__file__, ossfs.__file__, mfusepy.__file__)" % SITE])
    assert p.stdout.split() == [SITE + "/oss2/__init__.py", SITE + "/ossfs/__init__.py", SITE + "/mfusepy.py"]


def test_version_names_every_component(installed, version):
    out = run(["/usr/bin/ossfs", "--version"], env=SYSTEM_ENV).stdout
    assert re.search(r"^ossfs %s$" % re.escape(version), out, re.M), out
    assert re.search(r"^oss2 2\.\d+", out, re.M), out
    assert re.search(r"^mfusepy \d+\.\d+", out, re.M), out
    assert re.search(r"^libfuse 3\.\d+", out, re.M), out


def test_man_page_lists_every_option(installed):
    assert run(["man", "-w", "ossfs"], env=SYSTEM_ENV).stdout.strip() == "/usr/share/man/man1/ossfs.1.gz"
    assert run(["man", "-w", "ossfs-server"], env=SYSTEM_ENV).stdout.strip() == \
        "/usr/share/man/man1/ossfs-server.1.gz"
    assert run(["man", "-w", "mount.fuse.ossfs"], env=SYSTEM_ENV).stdout.strip() == \
        "/usr/share/man/man8/mount.fuse.ossfs.8.gz"
    rendered = run(["man", "ossfs"], env=dict(SYSTEM_ENV, MANWIDTH="200", MAN_KEEP_FORMATTING="0")).stdout
    rendered = re.sub(r".\x08", "", rendered)
    table = run(["/usr/bin/python3", "-s", "-c",
                 "import sys; sys.path.insert(0, %r)\n"
                 "from ossfs.config import OPTIONS\n"
                 "for o in OPTIONS: print(*((o.name,) + tuple(o.aliases) + tuple(o.negations)))" % SITE]
                ).stdout.splitlines()
    names = " ".join(table).split()
    assert len(table) > 30, table
    missing = [n for n in names if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(n), rendered)]
    assert missing == []
    with gzip.open("/usr/share/man/man1/ossfs.1.gz", "rt") as f:
        source = f.read()
    options = source.split(".SH OPTIONS")[1].split(".SH ")[0]
    assert options.count(".TP") == len(table)


@pytest.fixture
def server(installed, tmp_path):
    """/usr/bin/ossfs-server on loopback with one bucket, and a passwd file for it."""
    bucket = "pkg-" + uuid.uuid4().hex[:8]
    akid, secret = "pkg-key-id", uuid.uuid4().hex
    (tmp_path / "data").mkdir()
    proc = subprocess.Popen(["/usr/bin/ossfs-server", "--data", str(tmp_path / "data"), "--host", "127.0.0.1",
                             "--port", "0", "--access-key-id", akid, "--bucket", bucket],
                            env=dict(SYSTEM_ENV, OSSFS_SERVER_ACCESS_KEY_SECRET=secret),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, "ossfs-server did not start: %r" % line
        passwd = tmp_path / "passwd-ossfs"
        passwd.write_text("%s:%s:%s\n" % (bucket, akid, secret))
        passwd.chmod(0o600)
        yield {"url": m.group(1), "bucket": bucket, "akid": akid, "secret": secret, "passwd": str(passwd)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def is_mounted(path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def served_by_packaged_ossfs(path) -> bool:
    """Whether a process started from /usr/bin/ossfs serves the mount on path."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "/usr/bin/ossfs" in args[:3] and str(path) in args:
            return True
    return False


def test_mount_four_ways_write_read_umount(server, tmp_path):
    import oss2

    url, bucket, passwd = server["url"], server["bucket"], server["passwd"]
    opts = "url=%s,passwd_file=%s" % (url, passwd)
    mnts = [tmp_path / ("mnt%d" % i) for i in range(1, 5)]
    for m in mnts:
        m.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# test fstab\n"
        "%s %s fuse.ossfs _netdev,allow_other,%s 0 0\n" % (bucket, mnts[2], opts) +
        "ossfs#%s %s fuse _netdev,%s 0 0\n" % (bucket, mnts[3], opts))
    ways = [
        ("command line", ["/usr/bin/ossfs", bucket, str(mnts[0]), "-o", opts]),
        ("mount -t fuse.ossfs", ["mount", "-t", "fuse.ossfs", bucket, str(mnts[1]), "-o", opts]),
        ("fstab fuse.ossfs", ["mount", "-T", str(fstab), str(mnts[2])]),
        ("fstab ossfs#bucket", ["mount", "-T", str(fstab), str(mnts[3])]),
    ]
    try:
        # mount(8) picks the package's helper for type fuse.ossfs (-f: only say what it would run).
        p = run(["mount", "-f", "-v", "-t", "fuse.ossfs", bucket, str(mnts[1]), "-o", "_netdev,nofail," + opts],
                env=SYSTEM_ENV)
        assert "mount.fuse.ossfs: running /usr/bin/ossfs %s %s -o rw,%s" % (bucket, mnts[1], opts) in \
            p.stdout + p.stderr
        assert not is_mounted(mnts[1])

        for i, (way, cmd) in enumerate(ways):
            run(cmd, env=SYSTEM_ENV, timeout=60)
            assert is_mounted(mnts[i]), way
            assert served_by_packaged_ossfs(mnts[i]), way
            data = ("written through %s\n" % way).encode() * 100
            name = "file-%d.txt" % i
            with open(mnts[i] / name, "wb") as f:
                f.write(data)
            with open(mnts[i] / name, "rb") as f:
                assert f.read() == data, way
            assert name in os.listdir(mnts[i]), way
            run(["umount", str(mnts[i])], env=SYSTEM_ENV, timeout=60)
            assert not is_mounted(mnts[i]), way
            # What the mount wrote is in the bucket.
            b = oss2.Bucket(oss2.Auth(server["akid"], server["secret"]), url, bucket)
            assert b.get_object(name).read() == data, way
            assert b.head_object(name).headers.get("x-oss-meta-mode") == str(0o100644), way
    finally:
        for m in mnts:
            if is_mounted(m):
                subprocess.run(["umount", "-l", str(m)], timeout=30)


def test_systemd_examples_verify(installed, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is not installed (Debian package systemd)")
    units = tmp_path / "units"
    units.mkdir()
    for name in ("mnt-oss.mount", "mnt-oss.automount"):
        shutil.copy("/usr/share/doc/ossfs/" + name, units / name)
    run(["systemd-analyze", "verify", "--man=no", str(units / "mnt-oss.mount"), str(units / "mnt-oss.automount")])
    # The fstab line of docs/install.md becomes an automount unit plus its mount unit.
    fstab = tmp_path / "fstab"
    fstab.write_text("my-bucket /mnt/oss fuse.ossfs _netdev,noauto,x-systemd.automount,"
                     "x-systemd.idle-timeout=10min,allow_other,url=oss-cn-hangzhou.aliyuncs.com 0 0\n")
    gen = tmp_path / "gen"
    for d in ("normal", "early", "late"):
        (gen / d).mkdir(parents=True)
    generator = "/lib/systemd/system-generators/systemd-fstab-generator"
    run([generator, str(gen / "normal"), str(gen / "early"), str(gen / "late")],
        env=dict(SYSTEM_ENV, SYSTEMD_FSTAB=str(fstab), SYSTEMD_PROC_CMDLINE=""))
    mount_unit = (gen / "normal" / "mnt-oss.mount").read_text()
    assert "Type=fuse.ossfs" in mount_unit and "What=my-bucket" in mount_unit
    assert (gen / "normal" / "mnt-oss.automount").is_file()
    assert "TimeoutIdleSec=10min" in (gen / "normal" / "mnt-oss.automount").read_text()
    # _netdev makes it a remote file system, ordered after the network.
    assert os.path.exists(gen / "normal" / "remote-fs.target.requires" / "mnt-oss.automount")


def test_remove_leaves_nothing_and_purge_forgets(installed):
    assert package_installed()
    assert run(["dpkg-query", "-W", "-f=${Conffiles}", "ossfs"]).stdout.strip() == ""
    listed = [f for f in run(["dpkg", "-L", "ossfs"]).stdout.splitlines() if f.strip()]
    # Byte code written at run time (postinst, or ossfs itself) must go too.
    assert os.path.isdir(SITE + "/oss2/__pycache__")
    run(APT + ["remove", "ossfs"], env=APT_ENV)
    assert not package_installed()
    left = [f for f in listed if os.path.lexists(f) and not os.path.isdir(f)]
    assert left == []
    assert not os.path.exists("/usr/lib/ossfs")
    assert not os.path.exists("/usr/share/doc/ossfs")
    run(APT + ["purge", "ossfs"], env=APT_ENV)
    assert run(["dpkg-query", "-W", "-f=${Status}", "ossfs"], check=False).stdout.strip() in ("", "unknown ok not-installed")


def test_rpm_file_list_and_requires(tree, version):
    src, stamp = tree
    out = run(["bash", "packaging/rpm/build.sh"], cwd=str(src),
              env=dict(os.environ, SOURCE_DATE_EPOCH=stamp)).stdout.strip().splitlines()[-1]
    rpm = src / out
    assert re.fullmatch(r"ossfs-%s-\d+\.x86_64\.rpm" % re.escape(version.replace("-", "_")), rpm.name), rpm.name
    files = set(run(["rpm", "-qlp", str(rpm)]).stdout.split())
    for f in ["/usr/bin/ossfs", "/usr/bin/ossfs-server", "/usr/sbin/mount.fuse.ossfs",
              "/usr/share/man/man1/ossfs.1.gz", "/usr/share/man/man1/ossfs-server.1.gz",
              "/usr/share/man/man8/mount.fuse.ossfs.8.gz",
              "/usr/share/doc/ossfs/passwd-ossfs.example", "/usr/share/doc/ossfs/mnt-oss.mount",
              SITE + "/ossfs/cli.py", SITE + "/oss2/__init__.py", SITE + "/mfusepy.py",
              SITE + "/Crypto/Cipher/AES.py"]:
        assert f in files, f
    assert not [f for f in files if not f.startswith(("/usr/lib/ossfs", "/usr/bin/ossfs", "/usr/sbin/mount.fuse.ossfs",
                                                      "/usr/share/man/man1/ossfs",
                                                      "/usr/share/man/man8/mount.fuse.ossfs", "/usr/share/doc/ossfs"))]
    requires = run(["rpm", "-qp", "--requires", str(rpm)]).stdout.splitlines()
    assert "python3 >= 3.9" in requires
    for dep in ("fuse3", "fuse3-libs", "python3dist(requests)", "python3dist(urllib3)", "python3dist(six)",
                "python3dist(crcmod)", "python3dist(diskcache)", "python3dist(xattr)", "python3dist(configargparse)",
                "python3dist(cryptography)", "python3dist(jmespath)"):
        assert dep in requires, (dep, requires)
    # The vendored libraries are private: the rpm neither provides nor requires them.
    provides = run(["rpm", "-qp", "--provides", str(rpm)]).stdout
    assert "oss2" not in provides and "python3dist" not in provides
    assert not [r for r in requires if "oss2" in r or "mfusepy" in r or "pycryptodome" in r]


HELPER = os.path.join(REPO, "packaging", "mount.fuse.ossfs")


def test_mount_helper_passes_ossfs_options_and_drops_mount_ones(tmp_path):
    # -f (fake, as mount -f passes it) -v: print what would run, run nothing.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ossfs").write_text("#!/bin/sh\nexit 99\n")
    (fake_bin / "ossfs").chmod(0o755)
    env = {"PATH": "%s:/usr/bin:/bin" % fake_bin}
    p = run([HELPER, "ossfs#my-bucket:/photos", "/mnt/x", "-s", "-f", "-n", "-v", "-o",
             "rw,_netdev,nofail,auto,noauto,user,users,nouser,defaults,comment=systemd.x,x-systemd.automount,"
             "allow_other,url=http://127.0.0.1:9/,passwd_file=/etc/passwd-ossfs", "-t", "fuse.ossfs"], env=env)
    assert p.stderr.strip() == ("mount.fuse.ossfs: running %s/ossfs my-bucket:/photos /mnt/x -o rw,allow_other,"
                                "url=http://127.0.0.1:9/,passwd_file=/etc/passwd-ossfs" % fake_bin)
    p = run([HELPER, "b", "/mnt/x", "-f", "-v", "-o", "setuid=nobody,_netdev"], env=env)
    assert p.stderr.strip() == "mount.fuse.ossfs: running as nobody: %s/ossfs b /mnt/x" % fake_bin
    # Without -f the helper runs ossfs and passes on its exit status.
    assert run([HELPER, "b", "/mnt/x", "-o", "url=u"], env=env, check=False).returncode == 99


def test_mount_helper_errors_are_one_line(tmp_path):
    p = run([HELPER, "b", "/mnt/x", "--bogus"], check=False, env={"PATH": "/usr/bin:/bin"})
    assert (p.returncode, p.stderr) == (1, "mount.fuse.ossfs: unexpected argument '--bogus'\n")
    p = run([HELPER, "b"], check=False, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "usage" in p.stderr


def test_mount_helper_unknown_setuid_user_is_its_own_error(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ossfs").write_text("#!/bin/sh\nexit 99\n")
    (fake_bin / "ossfs").chmod(0o755)
    p = run([HELPER, "b", "/mnt/x", "-o", "setuid=no-such-user-xyz,url=u"], check=False,
            env={"PATH": "%s:/usr/bin:/bin" % fake_bin})
    assert (p.returncode, p.stderr) == (32, "mount.fuse.ossfs: setuid=no-such-user-xyz: no such user\n")
