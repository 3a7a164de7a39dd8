"""The benchmark harness runs end to end: ``benchmarks/run.py`` at its smallest scale,
ossfs and the local disk only, one run.  Behaviour only (a table, request counts, a
verdict per target); no number is judged here: speed is measured in benchmarks/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"),
    reason="needs root, /dev/fuse and fusermount3")


def test_harness_produces_tables_with_request_counts(tmp_path):
    out = tmp_path / "RESULTS.md"
    p = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "run.py"), "--scale", "tiny", "--runs", "1",
         "--peers", "ossfs,disk", "--out", str(out), "--work", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240, cwd=REPO)
    log = p.stdout.decode(errors="replace")
    assert p.returncode == 0, log[-3000:]
    text = out.read_text()
    for section in ("## Targets", "## Results", "## Requests per metric"):
        assert section in text
    # Every workload produced a row, for ossfs and for the disk where it applies.
    for metric in ("write 8 MiB", "read cold", "read warm", "create 20", "ls -l 50 cold",
                   "find 50 remount", "rename 8 MiB file", "untar 30 files", "peak RSS"):
        assert metric in text, metric
    assert "FAILED" not in text, text
    assert "PASS" in text or "MISS" in text
    # The request counts come from the server: writing the file sent its bytes.
    samples = json.loads((tmp_path / "RESULTS.json").read_text())
    write = [s for s in samples if s["peer"] == "ossfs" and s["metric"].startswith("write 8 MiB")]
    assert write and write[0]["bytes_in"] >= 8 << 20
    assert sum(write[0]["requests"].values()) > 0
    ren = [s for s in samples if s["peer"] == "ossfs" and s["metric"].startswith("rename 8 MiB")]
    assert ren and ren[0]["requests"]
    # Nothing left mounted or running.
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    assert not (tmp_path / "work").exists() or not any(
        n.startswith("run-") for n in os.listdir(tmp_path / "work"))


def test_pagecache_folios_accounts_for_every_page(tmp_path):
    """The folio report covers each page it was asked about, once; a file shorter than
    ``--pages`` is looked at to its end."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(64 * 4096 + 100))
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "pagecache_folios.py"),
                          "--pages", "1000", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r": (\d+) of (\d+) pages in large folios \((\d+) folios\), (\d+) small pages, "
                  r"(\d+) not mapped$", out.stdout.strip())
    assert m, out.stdout
    in_folios, total, _, small, absent = map(int, m.groups())
    assert total == 64
    assert in_folios + small + absent == total
    assert absent == 0


def test_pagecache_folios_reports_a_missing_file(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "pagecache_folios.py"),
                          str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "No such file" in out.stderr
