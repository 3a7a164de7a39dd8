"""What a listing costs in requests: ``ls -l``, ``find`` and small files against a real
mount, counted by the server (``GET /_ossfs/stats``).

The counts are behaviour (``namespace.py``, ``metacache.py``): the first ``ls -l`` of
a directory costs its LIST pages and one HEAD per object; after that, and after a
remount on the same cache directory, an object whose ETag, size and Last-Modified the
LIST shows unchanged costs no HEAD at all.
"""
from __future__ import annotations

import errno
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

N = 2000          # objects in the big directory
PAGES = 3         # LIST pages of big/: its marker and N objects, 1,000 keys a page
SMALL = 200       # small files written through the mount
S3FS_HEADERS = {"x-oss-meta-mode": str(0o100640), "x-oss-meta-uid": "1234", "x-oss-meta-gid": "2345",
                "x-oss-meta-mtime": "1700000000"}


def requests(server) -> dict:
    return {k: v for k, v in server.stats()["requests"].items() if v}


def xattr_syscalls(argv) -> int:
    """How many getxattr-family system calls ``argv`` made (counted by strace)."""
    out = subprocess.run(["strace", "-f", "-qq", "-c", "-U", "calls,name", "-e", "trace=getxattr,lgetxattr,fgetxattr",
                          "-o", "/dev/stderr", *argv], capture_output=True, text=True, timeout=300, check=True).stderr
    rows = [line.split() for line in out.splitlines()]
    return sum(int(r[0]) for r in rows if len(r) == 2 and r[0].isdigit() and r[1].endswith("getxattr"))


def ls_l(path: str) -> list:
    out = subprocess.run(["ls", "-ln", "--time-style=+%s", path], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    return [line for line in out.splitlines() if not line.startswith("total")]


@pytest.fixture
def big_dir(oss_server):
    bucket = oss_server.oss_bucket()
    bucket.put_object("big/", b"", headers={"Content-Type": "application/x-directory"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bucket.put_object("big/f%05d" % i, b"x" * (i % 7), headers=S3FS_HEADERS),
                      range(N)))
    return bucket


def test_ls_l_costs_lists_only_once_attributes_are_known(mounter, big_dir, oss_server):
    m = mounter()
    big = m.p("big")
    os.stat(big)
    oss_server.reset_stats()
    lines = ls_l(big)
    assert len(lines) == N
    assert all(line.split()[0] == "-rw-r-----" and line.split()[2:4] == ["1234", "2345"] for line in lines)
    first = requests(oss_server)
    assert first == {"ListObjects": PAGES, "HeadObject": N}, first

    oss_server.reset_stats()
    assert len(ls_l(big)) == N
    assert requests(oss_server) == {"ListObjects": PAGES}

    # ls -l asks for ACLs and security labels: ENOTSUP, which ossfs answers without a
    # request, and which tells ls to stop asking for the rest of the listing.
    oss_server.reset_stats()
    for name in ("f00001", "f01999"):
        for attr in ("system.posix_acl_access", "security.selinux"):
            with pytest.raises(OSError) as err:
                os.getxattr(os.path.join(big, name), attr)
            assert err.value.errno == errno.ENOTSUP
    assert requests(oss_server) == {}
    assert xattr_syscalls(["ls", "-l", big]) <= 4     # not 2 per entry

    # Remount on the same cache directory: the attributes are still known.
    m.unmount()
    m.start()
    oss_server.reset_stats()
    assert ls_l(big) == lines
    assert requests(oss_server) == {"ListObjects": PAGES}

    # Another client changes one object's content and another's mode (copy onto itself).
    big_dir.put_object("big/f00010", b"changed", headers=S3FS_HEADERS)
    big_dir.copy_object(big_dir.bucket_name, "big/f00011", "big/f00011",
                        headers={**S3FS_HEADERS, "x-oss-meta-mode": str(0o100600),
                                 "x-oss-metadata-directive": "REPLACE"})
    big_dir.delete_object("big/f00012")
    oss_server.reset_stats()
    after = {line.split()[-1]: line.split() for line in ls_l(big)}
    assert requests(oss_server) == {"ListObjects": PAGES - 1, "HeadObject": 2}  # 2,000 keys now
    assert after["f00010"][4] == "7" and after["f00011"][0] == "-rw-------" and "f00012" not in after

    oss_server.reset_stats()
    out = subprocess.run(["find", m.path, "-type", "f", "-size", "-10c"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert len(out.splitlines()) == N - 1
    counts = requests(oss_server)
    assert "HeadObject" not in counts and "GetObject" not in counts, counts


def test_small_files_cost_one_put_each(mount, oss_server):
    d = mount.p("small")
    os.mkdir(d)
    oss_server.reset_stats()
    for i in range(SMALL):
        with open(os.path.join(d, "s%03d" % i), "wb") as f:
            f.write(os.urandom(4096))
    assert requests(oss_server) == {"PutObject": SMALL}

    oss_server.reset_stats()
    lines = ls_l(d)
    assert len(lines) == SMALL and all(line.split()[4] == "4096" for line in lines)
    assert requests(oss_server) == {"ListObjects": 1}

    oss_server.reset_stats()
    for i in range(SMALL):
        os.unlink(os.path.join(d, "s%03d" % i))
    assert requests(oss_server) == {"DeleteObject": SMALL}


def test_renames_and_attribute_changes_ask_nothing_known(mount, oss_server):
    """chmod, utime and rename of files whose attributes ossfs knows (from its own
    uploads or from a LIST) copy them server-side without a HEAD of each source."""
    n = 40
    d = mount.p("attrs")
    os.mkdir(d)
    for i in range(n):
        with open(os.path.join(d, "a%02d" % i), "wb") as f:
            f.write(b"a" * i)
    oss_server.reset_stats()
    for i in range(n):
        os.chmod(os.path.join(d, "a%02d" % i), 0o600)
        os.utime(os.path.join(d, "a%02d" % i), (1600000000, 1600000000 + i))
    assert requests(oss_server) == {"CopyObject": 2 * n}

    oss_server.reset_stats()
    os.rename(d, mount.p("attrs2"))
    counts = requests(oss_server)
    assert counts.get("CopyObject") == n + 1          # the files and the directory marker
    assert counts.get("HeadObject", 0) <= 3, counts   # the new name's lookups, not one per file
    lines = ls_l(mount.p("attrs2"))
    assert len(lines) == n and all(line.split()[0] == "-rw-------" for line in lines)
    assert sorted(int(line.split()[5]) for line in lines) == [1600000000 + i for i in range(n)]

    oss_server.reset_stats()
    os.rename(mount.p("attrs2", "a07"), mount.p("attrs2", "b07"))
    counts = requests(oss_server)
    assert counts.get("CopyObject") == 1 and counts.get("DeleteObject") == 1
    assert counts.get("HeadObject", 0) <= 2, counts   # the new name's lookup (file, then directory)
    with open(mount.p("attrs2", "b07"), "rb") as f:
        assert f.read() == b"a" * 7


def test_attribute_changes_after_a_write_or_a_listing_cost_one_copy(mounter, oss_server):
    """``cp -p`` writes a file and at once sets its mode, owner and times; ``chmod -R``
    lists then changes each entry.  What the mount just learnt (its own upload, single
    or multipart, or a listing's HEADs) already tells the headers to keep, so each
    change is one copy and no HEAD."""
    m = mounter(multipart_threshold=5, multipart_size=5)
    d = m.p("cp")
    os.mkdir(d)
    for name, size in (("small", 100), ("large", 6 * 1024 * 1024)):
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        oss_server.reset_stats()
        os.chmod(path, 0o600)
        os.chown(path, 1234, 5678)
        os.utime(path, (1_700_000_000, 1_700_000_000))
        counts = requests(oss_server)
        assert "HeadObject" not in counts and counts.get("CopyObject", 0) + counts.get("UploadPartCopy", 0) >= 3, \
            (name, counts)
    oss_server.oss_bucket().put_object("cp/other", b"from another tool", headers=S3FS_HEADERS)
    os.listdir(d)
    ls_l(d)                                 # HEADs "other" (new to this mount)
    oss_server.reset_stats()
    for name in ("small", "other"):
        os.chmod(os.path.join(d, name), 0o644)
    counts = requests(oss_server)
    assert "HeadObject" not in counts and counts.get("CopyObject") == 2, counts
