"""How the kernel holds a file in its page cache: small (4 KiB) pages or large folios.

Explains the warm-read row of the benchmark.  A warm read through a FUSE mount is
served by the kernel's page cache without a request reaching ossfs, so its speed is the
kernel's; copying out of one 4 KiB page at a time costs more than copying out of large
folios, and the first re-read of a freshly cached file also moves every page to the
active LRU list, once per page.  ext4 caches large files in large folios; FUSE on
kernel 6.18 does not, with or without the writeback cache (measured with a bare mfusepy
filesystem).  Run it on a file of the mount and on a local file after reading both:

    python3 benchmarks/pagecache_folios.py /mnt/oss/big /var/tmp/big

It maps the file (a private, read-only use of a ``MAP_PRIVATE`` mapping: nothing is
written), touches the first ``--pages`` pages, and classifies each page's frame with
``/proc/self/pagemap`` and ``/proc/kpageflags`` (root only): the head or a tail page of
a large folio, or a page of its own.
"""
import argparse
import ctypes
import mmap
import struct
import sys

PAGE = mmap.PAGESIZE
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
PFN_MASK = (1 << 55) - 1
PRESENT = 1 << 63


def classify(path: str, pages: int) -> dict:
    """Counts of ``head``, ``tail`` and ``small`` pages among the first ``pages`` pages of
    ``path`` (pages the kernel did not map are counted as ``absent``)."""
    counts = {"head": 0, "tail": 0, "small": 0, "absent": 0}
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            n = min(pages, len(m) // PAGE)
            view = memoryview(m)
            for i in range(n):
                view[i * PAGE]  # fault the page in, reading only
            base = ctypes.addressof(ctypes.c_char.from_buffer(m)) // PAGE
            with open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kflags:
                for i in range(n):
                    pagemap.seek((base + i) * 8)
                    entry = struct.unpack("Q", pagemap.read(8))[0]
                    if not entry & PRESENT:
                        counts["absent"] += 1
                        continue
                    kflags.seek((entry & PFN_MASK) * 8)
                    flags = struct.unpack("Q", kflags.read(8))[0]
                    if flags >> KPF_COMPOUND_HEAD & 1:
                        counts["head"] += 1
                    elif flags >> KPF_COMPOUND_TAIL & 1:
                        counts["tail"] += 1
                    else:
                        counts["small"] += 1
            del view
        finally:
            m.close()
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--pages", type=int, default=4096, help="pages to look at from the start (default 4096)")
    args = ap.parse_args(argv)
    for path in args.files:
        try:
            c = classify(path, args.pages)
        except OSError as exc:
            print("%s: %s" % (path, exc), file=sys.stderr)
            return 1
        in_folios = c["head"] + c["tail"]
        print("%s: %d of %d pages in large folios (%d folios), %d small pages, %d not mapped"
              % (path, in_folios, sum(c.values()), c["head"], c["small"], c["absent"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
