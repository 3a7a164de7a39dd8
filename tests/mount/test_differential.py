"""A mount and a local directory given the same random operations must agree.

Each run applies one seeded sequence of operations, through the mount and through a
directory on the local disk (the reference): writes at any offset, ``O_TRUNC`` and
``O_APPEND``, truncates, renames of files and directories (onto existing names
too), unlinks, ``mkdir``/``rmdir``, ``chmod``, ``chown``, ``utime``, xattrs, symlinks, and file
handles kept open across the other operations (reads and writes through them,
writes through a shared ``mmap``, also after their file was renamed, replaced or
unlinked).  After every operation
the outcome (result or errno) must be the same; every few operations, and after
each remount, the whole tree is compared: names, types, sizes, modes, owners,
``user.`` xattrs, contents, symlink targets, and mtimes wherever the reference shows
one set by ``utime``.

While no handle is open, a second mount of the bucket that caches no metadata
(``stat_cache_expire=0``) must show what the reference shows, entry by entry:
what reached the bucket is what the first mount shows (close-to-open).

Every 50 operations the open handles are closed and the mount is replaced, in turn: unmounted
and mounted again on the same cache directory (staged files and the metadata cache
reused), killed with SIGKILL and mounted again on that cache, and mounted afresh
(everything comes from the bucket); what the mount shows must survive all three.  The mount uses small multipart and cache
limits, so large sparse files go up in parts and clean files get evicted.

A second test runs ``OSSFS_DIFF_THREADS`` (4) such sequences at once, each in its own
directory of one mount, each against its own reference: the daemon's shared state
(handles, cache, stat cache, uploads) must not let one program see another's.

``OSSFS_DIFF_SEEDS=N`` (default 3) and ``OSSFS_DIFF_OPS=N`` (default 200) run more;
a failure names its seed, and ``OSSFS_DIFF_SEED=S`` replays that one.
"""
from __future__ import annotations

import errno
import mmap
import os
import random
import signal
import stat
import subprocess
import threading

import pytest

from .conftest import Mount

SEEDS = int(os.environ.get("OSSFS_DIFF_SEEDS", "3"))
OPS = int(os.environ.get("OSSFS_DIFF_OPS", "200"))
THREADS = int(os.environ.get("OSSFS_DIFF_THREADS", "4"))
FAULT_RATE = float(os.environ.get("OSSFS_DIFF_FAULT_RATE", "0.04"))  # of requests answered 500/503, and again of connections cut
ONLY_SEED = os.environ.get("OSSFS_DIFF_SEED")
MiB = 1 << 20

# A small pool of names, so that operations collide: the same names as files in one
# step and directories in another, renames onto existing names, and so on.
PATHS = ["a", "b", "c", "d", "e", "d/a", "d/b", "d/f", "d/f/a", "d/f/b", "e/a", "e/d", "e/d/a"]
DIRS_AT = ["", "d", "e", "d/f", "e/d"]
SYMLINK_TARGETS = ["a", "b", "../a", "d/a", "nowhere", "d"]
XATTR_NAMES = ["user.a", "user.mime_type", "user.\u00e9t\u00e9"]


def outcome(fn, *args):
    """``("ok", value)`` or ``("err", errno name)``: what a program would see."""
    try:
        return ("ok", fn(*args))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno, exc.errno))


class Side:
    """One of the two trees: ``root`` and its open handles (handle id -> fd)."""

    def __init__(self, root: str):
        self.root = root
        self.fds = {}

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def resolve(self, rel: str, follow: bool = False) -> str:
        """``rel`` with symlinks in its directories resolved (and in its last
        component too when ``follow``), relative to the root."""
        if follow:
            full = os.path.realpath(self.p(rel))
        else:
            full = os.path.join(os.path.realpath(os.path.dirname(self.p(rel))), os.path.basename(rel))
        return os.path.relpath(full, os.path.realpath(self.root))

    # Each operation returns a value comparable between the two sides.
    def write(self, rel, flags, offset, data):
        fd = os.open(self.p(rel), flags, 0o644)
        try:
            if flags & os.O_APPEND:
                n = os.write(fd, data)
            else:
                n = os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        return n

    def read(self, rel):
        with open(self.p(rel), "rb") as f:
            return f.read()

    def truncate(self, rel, size):
        os.truncate(self.p(rel), size)

    def unlink(self, rel):
        os.unlink(self.p(rel))

    def mkdir(self, rel):
        os.mkdir(self.p(rel), 0o755)

    def rmdir(self, rel):
        os.rmdir(self.p(rel))

    def rename(self, src, dst):
        os.rename(self.p(src), self.p(dst))

    def chmod(self, rel, mode):
        os.chmod(self.p(rel), mode)

    def utime(self, rel, ns):
        os.utime(self.p(rel), ns=ns)

    def chown(self, rel, uid, gid):
        os.chown(self.p(rel), uid, gid)

    def setxattr(self, rel, name, value, flags):
        os.setxattr(self.p(rel), name, value, flags)

    def getxattr(self, rel, name):
        return os.getxattr(self.p(rel), name)

    def removexattr(self, rel, name):
        os.removexattr(self.p(rel), name)

    def listxattr(self, rel):
        return sorted(n for n in os.listxattr(self.p(rel)) if n.startswith("user."))

    def symlink(self, target, rel):
        os.symlink(target, self.p(rel))

    def readlink(self, rel):
        return os.readlink(self.p(rel))

    def listdir(self, rel):
        return sorted(os.listdir(self.p(rel)))

    def hopen(self, h, rel, flags):
        self.fds[h] = os.open(self.p(rel), flags, 0o644)

    def hwrite(self, h, offset, data):
        return os.pwrite(self.fds[h], data, offset)

    def hread(self, h, offset, n):
        return os.pread(self.fds[h], n, offset)

    def htruncate(self, h, size):
        os.ftruncate(self.fds[h], size)

    def hmmap(self, h, where, data):
        """Write ``data`` through a shared mapping of the whole file, at ``where`` (a
        fraction of its size), and msync; what an mmap-ing program does."""
        fd = self.fds[h]
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        offset = min(int(where * size), size - 1)
        data = data[:size - offset]
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[offset:offset + len(data)] = data
            m.flush()
        return len(data)

    def hsize(self, h):
        return os.fstat(self.fds[h]).st_size

    def hclose(self, h):
        os.close(self.fds.pop(h))

    def snapshot(self, explicit_mtimes):
        """Every entry below the root: type, mode, size, content or target, and the
        mtime where ``explicit_mtimes`` (set of ``(ino, mtime_ns)`` of this side's
        reference files) says it was set by ``utime``."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.root)
                st = os.lstat(full)
                entry = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
                         "owner": (st.st_uid, st.st_gid)}
                if stat.S_ISLNK(st.st_mode):
                    entry["target"] = os.readlink(full)
                else:
                    entry["xattrs"] = {n: os.getxattr(full, n) for n in os.listxattr(full) if n.startswith("user.")}
                if stat.S_ISREG(st.st_mode):
                    entry["size"] = st.st_size
                    with open(full, "rb") as f:
                        entry["data"] = f.read()
                out[rel] = (entry, (st.st_ino, st.st_mtime_ns))
        return out


class Where:
    """Where libfuse keeps an open file's name: ``path`` while it has one; after
    an unlink (or a rename over it) the hidden name in ``hidden_in``, its directory
    then; ``orphan`` once that directory is removed too, or at once for an open
    directory that is removed (libfuse hides files only)."""

    def __init__(self, path: str):
        self.path, self.hidden_in, self.orphan = path, None, False

    def follow(self, op: str, src: str, dst: str = None) -> None:
        """Apply a successful ``unlink``/``rmdir``/``rename`` of resolved paths."""
        def moved(p):
            if p is None or op != "rename":
                return p
            return dst if p == src else dst + p[len(src):] if p.startswith(src + "/") else p
        if op == "rmdir" and self.path == src:  # an open directory, removed
            self.path, self.orphan = None, True
        elif self.path is not None and (op == "unlink" and self.path == src
                                        or op == "rename" and self.path == dst and src != dst):
            self.path, self.hidden_in = None, os.path.dirname(src if op == "unlink" else dst)
        elif op == "rmdir" and self.hidden_in is not None and (self.hidden_in + "/").startswith(src + "/"):
            self.orphan = True
        else:
            self.path, self.hidden_in = moved(self.path), moved(self.hidden_in)


def random_data(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.1:
        n = 0
    elif kind < 0.8:
        n = rnd.randint(1, 9000)
    else:
        n = rnd.randint(9000, 300_000)
    return rnd.randbytes(n)


def random_offset(rnd: random.Random) -> int:
    kind = rnd.random()
    if kind < 0.6:
        return rnd.randint(0, 20_000)
    if kind < 0.9:
        return rnd.randint(0, 400_000)
    return rnd.randint(5 * MiB, 12 * MiB)  # sparse, and above the multipart threshold


def random_op(rnd: random.Random, handles: dict) -> tuple:
    """One operation as ``(name, args...)``; handles maps open handle ids to flags."""
    path = rnd.choice(PATHS)
    choice = rnd.random()
    if handles and choice < 0.3:
        h = rnd.choice(sorted(handles))
        what = rnd.random()
        writable = handles[h] & (os.O_WRONLY | os.O_RDWR)
        if what < 0.35 and writable:
            return ("hwrite", h, random_offset(rnd) if rnd.random() < 0.3 else rnd.randint(0, 20_000),
                    random_data(rnd))
        if what < 0.6:
            return ("hread", h, rnd.randint(0, 30_000), rnd.randint(1, 70_000))
        if what < 0.66 and handles[h] & os.O_RDWR:
            return ("hmmap", h, rnd.random(), random_data(rnd)[:20_000])
        if what < 0.72 and writable:
            return ("htruncate", h, rnd.choice([0, rnd.randint(0, 50_000), rnd.randint(5 * MiB, 7 * MiB)]))
        if what < 0.85:
            return ("hsize", h)
        return ("hclose", h)
    if choice < 0.4 and len(handles) < 3:
        flags = rnd.choice([os.O_RDONLY, os.O_RDWR, os.O_RDWR | os.O_CREAT, os.O_WRONLY | os.O_CREAT,
                            os.O_RDWR | os.O_CREAT | os.O_TRUNC])
        h = max(handles, default=0) + 1
        return ("hopen", h, path, flags)
    ops = [
        (14, lambda: ("write", path, rnd.choice([os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT,
                                                  os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                                  os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                                  os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_WRONLY]),
                      random_offset(rnd), random_data(rnd))),
        (6, lambda: ("read", path)),
        (4, lambda: ("truncate", path, rnd.choice([0, rnd.randint(0, 30_000), rnd.randint(5 * MiB, 7 * MiB)]))),
        (5, lambda: ("unlink", path)),
        (6, lambda: ("mkdir", rnd.choice(DIRS_AT[1:] + PATHS))),
        (3, lambda: ("rmdir", rnd.choice(DIRS_AT[1:] + PATHS))),
        (8, lambda: ("rename", path, rnd.choice(PATHS))),
        (3, lambda: ("chmod", path, rnd.choice([0o600, 0o644, 0o755, 0o700, 0o640, 0o711]))),
        (3, lambda: ("utime", path, (rnd.randint(1, 2_000_000_000) * 10**9 + rnd.randint(0, 10**9 - 1),
                                     rnd.randint(1, 2_000_000_000) * 10**9 + rnd.randint(0, 10**9 - 1)))),
        (2, lambda: ("chown", path, rnd.choice([0, 1000, 65534]), rnd.choice([0, 100, 65534]))),
        (2, lambda: ("setxattr", path, rnd.choice(XATTR_NAMES), rnd.randbytes(rnd.randint(0, 40)),
                     rnd.choice([0, os.XATTR_CREATE, os.XATTR_REPLACE]))),
        (1, lambda: ("getxattr", path, rnd.choice(XATTR_NAMES))),
        (1, lambda: ("removexattr", path, rnd.choice(XATTR_NAMES))),
        (1, lambda: ("listxattr", path)),
        (2, lambda: ("symlink", rnd.choice(SYMLINK_TARGETS), path)),
        (1, lambda: ("readlink", path)),
        (3, lambda: ("listdir", rnd.choice(DIRS_AT))),
    ]
    total = sum(w for w, _ in ops)
    pick = rnd.uniform(0, total)
    for weight, make in ops:
        pick -= weight
        if pick <= 0:
            return make()
    return ops[-1][1]()


def peer_view(root: str, rel: str) -> tuple:
    """What a program sees of ``rel`` below ``root``: type, mode, owners, size, and
    the content, listing or target; or the errno."""
    full = os.path.join(root, rel)
    try:
        st = os.lstat(full)
        seen = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                return seen + (st.st_size, f.read())
        if stat.S_ISDIR(st.st_mode):
            return seen + (sorted(os.listdir(full)),)
        return seen + (os.readlink(full),)
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno, exc.errno))


def compare_trees(ref: Side, mnt: Side, explicit: set, where: str) -> None:
    want = ref.snapshot(explicit)
    got = mnt.snapshot(set())
    assert sorted(got) == sorted(want), "%s: names differ" % where
    for rel, (entry, (ino, mtime_ns)) in want.items():
        got_entry, (_, got_mtime) = got[rel]
        if entry != got_entry:
            diff = {k: (entry.get(k) if k != "data" else len(entry.get(k) or b""),
                        got_entry.get(k) if k != "data" else len(got_entry.get(k) or b""))
                    for k in set(entry) | set(got_entry) if entry.get(k) != got_entry.get(k)}
            raise AssertionError("%s: %s differs (reference, mount): %r" % (where, rel, diff))
        if (ino, mtime_ns) in explicit:
            assert got_mtime == mtime_ns, "%s: mtime of %s: %d, reference %d" % (where, rel, got_mtime, mtime_ns)


class Sequence:
    """One seeded sequence of operations on a reference root and a mount root."""

    def __init__(self, seed: int, ref_root: str, mnt_root: str):
        self.seed, self.rnd = seed, random.Random(seed)
        self.ref, self.mnt = Side(ref_root), Side(mnt_root)
        self.handles = {}  # handle -> open flags
        self.where = {}    # handle -> Where: what libfuse knows of its file's name
        self.explicit = set()
        self.log = []
        self.peer = None  # root of the same bucket in a second mount, that caches nothing
        self.peer_rnd = random.Random(seed * 7919)

    def context(self) -> str:
        recent = self.log[-int(os.environ.get("OSSFS_DIFF_CONTEXT", "12")):]
        return "seed %d, op %s\n  recent: %s" % (self.seed, self.log[-1], "\n  ".join(recent))

    def step(self, i: int) -> None:
        """Apply one random operation to both sides; assert they agree."""
        ref, mnt = self.ref, self.mnt
        op = random_op(self.rnd, self.handles)
        name, args = op[0], op[1:]
        self.log.append("%d: %s" % (i, _show(op)))
        resolved = ([ref.resolve(a) for a in args[:2] if isinstance(a, str)]
                    if name in ("unlink", "rename", "rmdir") else [])
        want = outcome(getattr(ref, name), *args)
        got = outcome(getattr(mnt, name), *args)
        if name == "hopen" and want[0] == "ok":
            self.handles[args[0]] = args[2]
            self.where[args[0]] = Where(ref.resolve(args[1], follow=True))
        if name == "hclose":
            self.handles.pop(args[0], None)
            self.where.pop(args[0], None)
        if want[0] == "ok" and resolved:
            for w in self.where.values():
                w.follow(name, *resolved)
        if name == "hsize" and got == ("err", "ESTALE") and want[0] == "ok" and self.where[args[0]].orphan:
            # libfuse answers fstat itself, ESTALE, for an open file whose name and
            # directory are both gone, or an open directory removed (docs/semantics.md)
            got = want
        if name == "utime" and want[0] == "ok":
            st = os.stat(ref.p(args[0]))
            self.explicit.add((st.st_ino, st.st_mtime_ns))
        if name == "hopen" and want[0] != got[0]:
            # Keep the two sides' handle tables alike before failing.
            for side, res in ((ref, want), (mnt, got)):
                if res[0] == "ok":
                    os.close(side.fds.pop(args[0]))
        assert got == want, "%s\n  reference %s, mount %s\n  open files: %s" % (
            self.context(), _show(want), _show(got), {h: vars(w) for h, w in self.where.items()})
        if i % 10 == 9:
            self.compare(self.context())
        if self.peer is not None and not self.handles and self.peer_rnd.random() < 0.3:
            # What is in the bucket is what this mount shows, once nothing is open.
            path = self.peer_rnd.choice(PATHS + DIRS_AT[1:])
            want, got = peer_view(ref.root, path), peer_view(self.peer, path)
            assert got == want, "%s\n  another mount shows %s: %s, reference %s" % (
                self.context(), path, _show(got), _show(want))

    def close_all(self) -> None:
        """Close every open handle on both sides, as a program would before a remount."""
        for h in sorted(self.handles):
            assert outcome(self.mnt.hclose, h) == outcome(self.ref.hclose, h), self.context()
            self.handles.pop(h), self.where.pop(h)

    def compare(self, where: str, mnt_root: str = None) -> None:
        compare_trees(self.ref, Side(mnt_root) if mnt_root else self.mnt, self.explicit, where)


def run_sequence(seed: int, ops: int, ref_root: str, mounter, sequences: list) -> None:
    opts = dict(multipart_threshold=5, multipart_size=5, cache_size_mb=24)
    mount: Mount = mounter(**opts)
    seq = Sequence(seed, ref_root, mount.path)
    seq.peer = mounter(stat_cache_expire=0).path
    sequences.append(seq)
    remounts = 0
    for i in range(ops):
        seq.step(i)
        if i % 50 == 49:
            seq.close_all()
            remounts += 1
            if remounts % 3 == 0:
                mount.unmount()
                mount = mounter(**opts)  # a fresh cache directory: everything from the bucket
            elif remounts % 3 == 1:
                mount.unmount()
                mount.start()  # the same cache directory
            else:
                os.kill(mount.pid, signal.SIGKILL)  # a crash: the next mount starts from what the cache holds
                assert mount.wait_exit(30)
                subprocess.run(["fusermount3", "-u", mount.path], check=True)
                mount.start()
            seq.mnt = Side(mount.path)
            seq.compare("after remount %d, %s" % (remounts, seq.context()))
    seq.close_all()
    seq.compare("seed %d, end" % seed)
    mount.unmount()
    mount = mounter(**opts)
    seq.compare("seed %d, end, fresh mount" % seed, mount.path)


def _show(value) -> str:
    text = repr(tuple(v if not isinstance(v, bytes) or len(v) < 16 else "<%d bytes>" % len(v)
                      for v in (value if isinstance(value, tuple) else (value,))))
    return text


def _close_everything(sequences: list) -> None:
    """A failed run leaves handles open: close them before the mount is unmounted."""
    for seq in sequences:
        for side in (seq.ref, seq.mnt):
            for fd in side.fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.mark.parametrize("seed", [int(ONLY_SEED)] if ONLY_SEED else list(range(1, SEEDS + 1)))
def test_mount_agrees_with_a_local_directory(seed, mounter, tmp_path):
    ref_root = tmp_path / "reference"
    ref_root.mkdir()
    sequences = []
    try:
        run_sequence(seed, OPS, str(ref_root), mounter, sequences)
    finally:
        _close_everything(sequences)


@pytest.mark.parametrize("seed", [int(ONLY_SEED)] if ONLY_SEED else list(range(101, 101 + max(1, SEEDS // 2))))
def test_mount_agrees_with_a_local_directory_while_requests_fail(seed, oss_server, mounter, tmp_path):
    """The same, with the server failing requests (500, 503) and cutting connections
    (mid-body, or after doing the request and before answering it) at random: the
    retries must hide every one of them, and none may do a change twice."""
    oss_server.set_faults(fault_rate=FAULT_RATE, drop_rate=FAULT_RATE)
    ref_root = tmp_path / "reference"
    ref_root.mkdir()
    sequences = []
    try:
        run_sequence(seed, OPS, str(ref_root), mounter, sequences)
        counts = oss_server.stats()["requests"]
        assert counts.get("faults", 0) >= 3 and counts.get("drops", 0) >= 3, str(counts)  # they did happen
        print("COUNTS", counts)
    finally:
        _close_everything(sequences)
        oss_server.set_faults(fault_rate=0, drop_rate=0)


def test_concurrent_sequences_in_separate_directories_agree(mounter, tmp_path):
    """Several programs at once, each in its own directory of one mount: each must
    see exactly what it would alone (the daemon's shared state: handle table, cache,
    stat cache, uploads)."""
    mount = mounter(multipart_threshold=5, multipart_size=5, cache_size_mb=24)
    sequences = []
    for k in range(THREADS):
        ref_root, mnt_root = tmp_path / ("reference%d" % k), os.path.join(mount.path, "program%d" % k)
        ref_root.mkdir()
        os.mkdir(mnt_root)
        sequences.append(Sequence(1000 + k, str(ref_root), mnt_root))
    failures = []

    def run(seq: Sequence) -> None:
        try:
            for i in range(OPS):
                seq.step(i)
            seq.close_all()
        except BaseException as exc:  # reported below, with its seed
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(seq,)) for seq in sequences]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not any(t.is_alive() for t in threads), "a sequence did not finish in 10 minutes"
        assert not failures, "\n".join(str(f) for f in failures)
        for seq in sequences:
            seq.compare("seed %d, end" % seq.seed)
        mount.unmount()
        fresh = mounter()
        for k, seq in enumerate(sequences):
            seq.compare("seed %d, end, fresh mount" % seq.seed, os.path.join(fresh.path, "program%d" % k))
    finally:
        _close_everything(sequences)
