"""Medians, ratios, targets and the markdown of RESULTS.md.

Ratios are speed-ups of ossfs: ``>1`` means ossfs did better, whichever way the metric
runs (for a rate ossfs/peer, for a time or a size peer/ossfs).  The floor of each
metric is the SDK for transfers, listings and renames, the local disk for warm reads
and local-style work (:data:`FLOOR`).

Request counts are those of the last run in which the peer completed the metric.
"""
from __future__ import annotations

import statistics
from collections import OrderedDict

from .common import Sample

MOUNTS = ("ossfs", "s3fs", "rclone")


def floor_of(metric: str) -> str:
    if "RSS" in metric:
        return ""
    if metric.startswith(("read warm", "untar", "cp -r", "find")):
        return "disk"
    return "sdk"


class Results:
    def __init__(self, samples):
        self.samples = list(samples)
        self.metrics = OrderedDict()        # metric -> (workload, unit, higher)
        for s in self.samples:
            self.metrics.setdefault(s.metric, (s.workload, s.unit, s.higher_is_better))

    def values(self, metric: str, peer: str) -> list:
        return [s.value for s in self.samples if s.metric == metric and s.peer == peer and s.value is not None]

    def errors(self, metric: str, peer: str) -> list:
        return [s.error for s in self.samples if s.metric == metric and s.peer == peer and s.error]

    def median(self, metric: str, peer: str):
        v = self.values(metric, peer)
        return statistics.median(v) if v else None

    def last(self, metric: str, peer: str):
        ok = [s for s in self.samples if s.metric == metric and s.peer == peer and s.value is not None]
        return ok[-1] if ok else None

    def speedup(self, metric: str, other: str):
        a, b = self.median(metric, "ossfs"), self.median(metric, other)
        if a is None or b is None or a == 0 or b == 0:
            return None
        higher = self.metrics[metric][2]
        return a / b if higher else b / a

    def metric_like(self, start: str):
        return next((m for m in self.metrics if m.startswith(start)), None)


def _num(v) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 0.1:
        return "%.2f" % v
    return "%.3f" % v


def _cell(res: Results, metric: str, peer: str) -> str:
    v = res.median(metric, peer)
    if v is not None:
        n = len(res.values(metric, peer))
        errs = res.errors(metric, peer)
        return _num(v) + ("" if not errs else " (%d failed)" % len(errs))
    errs = res.errors(metric, peer)
    if errs:
        return "FAILED: " + errs[-1].replace("|", "/")[:80]
    return "—"


def _ratio(r) -> str:
    return "—" if r is None else "%.2fx" % r


def main_table(res: Results, peers) -> str:
    cols = [p for p in ("ossfs", "s3fs", "rclone", "sdk", "disk") if p in peers]
    head = ["workload", "metric", "unit"] + cols + ["ossfs vs s3fs", "vs rclone", "vs floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric, (wl, unit, higher) in res.metrics.items():
        fl = floor_of(metric)
        label = metric[: -len(unit)].strip() if metric.endswith(unit) else metric
        row = [wl, label, unit + (" ↑" if higher else " ↓")] + [_cell(res, metric, p) for p in cols]
        row += [_ratio(res.speedup(metric, "s3fs")), _ratio(res.speedup(metric, "rclone")),
                (_ratio(res.speedup(metric, fl)) + " (%s)" % fl) if fl and res.speedup(metric, fl) else "—"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _count(sample, op: str) -> int:
    return sample.requests.get(op, 0) if sample else 0


def targets(res: Results) -> list:
    """(target, measured, verdict) rows; verdict PASS, MISS or 'not measured'."""
    rows = []

    def ratio_target(name, metric, peer, need):
        if metric is None:
            rows.append((name, "—", "not measured"))
            return
        r = res.speedup(metric, peer)
        if r is None:
            rows.append((name, "ossfs or %s missing" % peer, "not measured"))
        else:
            rows.append((name, "%.2fx" % r, "PASS" if r >= need else "MISS"))

    w, rc = res.metric_like("write "), res.metric_like("read cold")
    for what, m in (("large write", w), ("cold read", rc)):
        ratio_target("%s >= 2x s3fs-fuse" % what, m, "s3fs", 2.0)
        ratio_target("%s >= rclone" % what, m, "rclone", 1.0)
        ratio_target("%s >= 70%% of SDK" % what, m, "sdk", 0.7)
    ratio_target("warm read >= 80% of local disk (page cache)", res.metric_like("read warm"), "disk", 0.8)
    ratio_target("small-file creates >= 3x s3fs-fuse (files/s)", res.metric_like("create "), "s3fs", 3.0)
    lc = next((m for m in res.metrics if m.startswith("ls -l") and m.endswith("cold s")
               and res.metrics[m][0] == "list"), None)
    ratio_target("ls -l of the big directory, cold, >= 3x faster than s3fs-fuse", lc, "s3fs", 3.0)
    for ph in ("warm", "remount"):
        m = next((x for x in res.metrics if x.startswith("ls -l") and x.endswith(ph + " s")), None)
        s = res.last(m, "ossfs") if m else None
        if s is None:
            rows.append(("ls -l %s: zero HEAD requests" % ph, "—", "not measured"))
            rows.append(("ls -l %s within 2x of the LIST calls alone (SDK)" % ph, "—", "not measured"))
            continue
        heads = _count(s, "HeadObject")
        rows.append(("ls -l %s: zero HEAD requests" % ph, "%d HEAD, %d LIST" % (heads, _count(s, "ListObjects")),
                     "PASS" if heads == 0 else "MISS"))
        r = res.speedup(m, "sdk")
        rows.append(("ls -l %s within 2x of the LIST calls alone (SDK)" % ph,
                     "—" if r is None else "%.2fx of SDK time" % (1 / r),
                     "not measured" if r is None else ("PASS" if 1 / r <= 2.0 else "MISS")))
    m = next((x for x in res.metrics if x.startswith("rename") and "file" in x), None)
    s = res.last(m, "ossfs") if m else None
    if s is None:
        rows.append(("rename of the large file: server-side copy, no data through ossfs", "—", "not measured"))
    else:
        data = _count(s, "GetObject") + _count(s, "PutObject") + _count(s, "UploadPart")
        copies = _count(s, "CopyObject") + _count(s, "UploadPartCopy")
        rows.append(("rename of the large file: server-side copy, no data through ossfs",
                     "%d Get/Put/UploadPart, %d Copy/UploadPartCopy, bytes in %d out %d"
                     % (data, copies, s.bytes_in, s.bytes_out),
                     "PASS" if data == 0 and copies > 0 and s.bytes_in < (1 << 20) else "MISS"))
    m = res.metric_like("peak RSS")
    v = res.median(m, "ossfs") if m else None
    rows.append(("peak RSS while writing the RSS file < 200 MB", "—" if v is None else "%.0f MB" % v,
                 "not measured" if v is None else ("PASS" if v < 200 else "MISS")))
    return rows


def targets_table(res: Results) -> str:
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % r for r in targets(res)]
    return "\n".join(lines)


def _fmt_requests(s) -> str:
    if s is None:
        return "—"
    ops = ", ".join("%s %d" % (k, v) for k, v in sorted(s.requests.items()))
    mib = lambda b: ("%.1f MiB" % (b / 1048576.0)) if b >= 1048576 else ("%d B" % b)
    return "%s; in %s, out %s" % (ops or "no requests", mib(s.bytes_in), mib(s.bytes_out))


def requests_table(res: Results, peers) -> str:
    cols = [p for p in ("ossfs", "s3fs", "rclone", "sdk", "disk") if p in peers and p != "disk"]
    lines = ["| metric | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for metric in res.metrics:
        lines.append("| %s | %s |" % (metric, " | ".join(_fmt_requests(res.last(metric, p)) for p in cols)))
    return "\n".join(lines)
