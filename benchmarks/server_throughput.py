"""Throughput of ossfs-server itself over loopback, beside ``cp`` on the same disk.

Starts ``python -m ossfs.server`` as a subprocess on a free port with its data directory
next to the test file, then measures for one object of ``--size`` bytes (default 1 GiB):

* ``cp``: copying the file on the same disk (the ceiling for a PUT that lands on disk);
* PUT and GET with raw ``http.client`` streaming (1 MiB chunks, V1-signed presigned URL);
* PUT and GET with ``oss2`` (``enable_crc=True``, so the client hashes CRC64 as well);
* listing with ``oss2.ObjectIterator`` (delimiter ``/``, 1000 keys a page) of ``--list``
  objects (default 10,000) laid out three ways: all in one directory (``flat/``), in 100
  subdirectories (``dirs/``), and one per subdirectory (``subdirs/``: as many common
  prefixes as objects).  The objects are written with the server's own ``Store`` before
  it starts, so that only the listing is timed.

Usage: ``python benchmarks/server_throughput.py [--size BYTES] [--list N] [--dir DIR]``.
Prints one line per measurement in MB/s (10^6 bytes per second) or seconds.
"""
import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
CHUNK = 1 << 20


def rate(n, seconds):
    return "%8.1f MB/s  (%.2f s)" % (n / seconds / 1e6, seconds)


def make_file(path, size):
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(CHUNK, left)])
            left -= CHUNK


def raw_put(url, path, size):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, blocksize=CHUNK)
    with open(path, "rb") as f:
        conn.request("PUT", u.path + "?" + u.query, body=f, headers={"Content-Length": str(size)})
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
    conn.close()


def raw_get(url, size):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("GET", u.path + "?" + u.query)
    r = conn.getresponse()
    got = 0
    buf = bytearray(CHUNK)
    while True:
        n = r.readinto(buf)
        if not n:
            break
        got += n
    assert got == size, got
    conn.close()


LAYOUTS = {
    "flat/": lambda i: "flat/f%06d" % i,
    "dirs/": lambda i: "dirs/d%03d/f%06d" % (i % 100, i),
    "subdirs/": lambda i: "subdirs/d%06d/f" % i,
}


def make_listing_objects(data_dir, bucket, n):
    import io
    from ossfs.server.store import Store
    store = Store(data_dir)
    store.ensure_bucket(bucket)
    for make_key in LAYOUTS.values():
        for i in range(n):
            store.put_object(bucket, make_key(i), io.BytesIO(b""), 0)
    store.close()


def time_listings(b, n):
    import oss2
    for prefix in LAYOUTS:
        t = time.monotonic()
        got = sum(1 for _ in oss2.ObjectIterator(b, prefix=prefix, delimiter="/", max_keys=1000))
        el = time.monotonic() - t
        want = {"flat/": n, "dirs/": min(n, 100), "subdirs/": n}[prefix]
        assert got == want, (prefix, got, want)
        print("LIST %-9s %6d entries  %6.2f s" % (prefix, got, el))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1 << 30)
    p.add_argument("--list", type=int, default=10000, help="objects per listing layout (0: skip)")
    p.add_argument("--dir", default=None, help="where to put the data (default: a temp dir in /tmp)")
    args = p.parse_args()
    from conftest import OssServer   # the same fixture class the tests use
    import oss2
    base = tempfile.mkdtemp(prefix="ossfs-bench-", dir=args.dir)
    try:
        src = os.path.join(base, "source")
        make_file(src, args.size)
        os.makedirs(os.path.join(base, "data"))
        if args.list:
            t = time.monotonic()
            make_listing_objects(os.path.join(base, "data"), "ossfs-test", args.list)
            print("(wrote %d listing objects in %.1f s)" % (3 * args.list, time.monotonic() - t))
        t = time.monotonic()
        shutil.copyfile(src, os.path.join(base, "copy"))
        with open(os.path.join(base, "copy"), "rb+") as f:
            os.fsync(f.fileno())
        print("cp (copyfile + fsync)   ", rate(args.size, time.monotonic() - t))
        os.unlink(os.path.join(base, "copy"))
        server = OssServer(os.path.join(base, "data"), bucket="ossfs-test").start()
        try:
            b = server.oss_bucket()
            put_url = b.sign_url("PUT", "raw", 3600)
            t = time.monotonic()
            raw_put(put_url, src, args.size)
            print("PUT http.client         ", rate(args.size, time.monotonic() - t))
            get_url = b.sign_url("GET", "raw", 3600)
            t = time.monotonic()
            raw_get(get_url, args.size)
            print("GET http.client         ", rate(args.size, time.monotonic() - t))
            t = time.monotonic()
            with open(src, "rb") as f:
                b.put_object("sdk", f)
            print("PUT oss2 (crc on)       ", rate(args.size, time.monotonic() - t))
            t = time.monotonic()
            r = b.get_object("sdk")
            n = 0
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
            assert n == args.size
            print("GET oss2 (crc on)       ", rate(args.size, time.monotonic() - t))
            if args.list:
                time_listings(b, args.list)
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
