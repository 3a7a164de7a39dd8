#!/usr/bin/env python3
"""ossfs against s3fs-fuse, rclone, the oss2 SDK and the local disk, on one
ossfs-server, in one run.

    python3 benchmarks/run.py [--scale tiny|small|full] [--runs N] [--only WORKLOADS]
                              [--peers ossfs,s3fs,rclone,sdk,disk] [--out RESULTS.md]

Starts ossfs-server on 127.0.0.1 (data under --work, on the local disk), mounts the
bench bucket with each filesystem in turn, runs every workload on every peer, peers
alternating between runs, and writes medians, ratios, PASS/MISS per target and the
server's request counts to RESULTS.md (and the raw samples to a JSON file next to it).
Needs root (FUSE mounts, dropping the page cache).  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

from harness import report                                    # noqa: E402
from harness.common import SCALES, MiB, BenchError            # noqa: E402
from harness.peers import ALL_PEERS, MountPeer, make_peer, write_passwd   # noqa: E402
from harness.server import Probe, Server, snapshot_code                      # noqa: E402
from harness.workloads import RUNNERS, WORKLOADS, Ctx, prepare_list        # noqa: E402

log = logging.getLogger("bench")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--runs", type=int, default=3, help="runs of every workload on every peer (default 3)")
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help="comma-separated workloads (default all: %s)" % ",".join(WORKLOADS))
    p.add_argument("--once", default="",
                   help="comma-separated workloads to run in the first run only (the slow ones, e.g. tree,rss)")
    p.add_argument("--peers", default=",".join(ALL_PEERS), help="comma-separated (default %(default)s)")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="markdown report (default %(default)s)")
    p.add_argument("--work", default="/var/tmp/ossfs-bench",
                   help="scratch directory on the local disk (default %(default)s)")
    p.add_argument("--code", choices=["worktree", "head"], default="worktree",
                   help="run ossfs and ossfs-server from a copy of the checkout's files as they are "
                        "(worktree, default) or of its last commit (head)")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="delay ossfs-server adds before answering every request, as a network round "
                        "trip to a real OSS endpoint would (default 0: bare loopback)")
    p.add_argument("--note", default="", help="a line added to the report (e.g. 'machine shared')")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    a.only = [w.strip() for w in a.only.split(",") if w.strip()]
    a.peers = [x.strip() for x in a.peers.split(",") if x.strip()]
    a.once = [w.strip() for w in a.once.split(",") if w.strip()]
    for w in a.only + a.once:
        if w not in WORKLOADS:
            p.error("unknown workload %r (known: %s)" % (w, ", ".join(WORKLOADS)))
    for x in a.peers:
        if x not in ALL_PEERS:
            p.error("unknown peer %r (known: %s)" % (x, ", ".join(ALL_PEERS)))
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if a.latency_ms < 0:
        p.error("--latency-ms must not be negative")
    return a


def ossfs_transfer_settings() -> dict:
    """ossfs's own defaults for part size and parallelism (the SDK floor uses the same)."""
    try:
        from ossfs.config import BY_NAME
        d = lambda n: BY_NAME[n].default
        return dict(part_size=d("multipart_size") * MiB, parallel=d("parallel_count"),
                    multipart_threshold=d("multipart_threshold") * MiB,
                    copy_part_size=d("multipart_copy_size") * MiB)
    except Exception as e:          # the table says which values were used
        log.warning("ossfs.config not importable (%s); using 10 MiB parts x 5", e)
        return dict(part_size=10 * MiB, parallel=5, multipart_threshold=25 * MiB, copy_part_size=512 * MiB)


def _out(argv) -> str:
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=30).stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine(work: str) -> dict:
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576.0)
    df = _out(["df", "-h", "--output=source,fstype,size", work]).splitlines()
    dev = df[-1].split()[0] if len(df) > 1 else "?"
    rota = _out(["lsblk", "-dno", "ROTA,MODEL", dev]) or "?"
    return {"nproc": _out(["nproc"]), "memory": mem, "kernel": platform.release(),
            "disk": "%s (%s)" % (" ".join(df[-1].split()) if df else "?",
                                 {"0": "non-rotational", "1": "rotational"}.get(rota.split()[0] if rota.split() else "", rota)),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")}


def versions(peers) -> dict:
    import oss2
    v = {"python": platform.python_version(), "oss2": oss2.__version__}
    for p in peers:
        if p.name in ("ossfs", "s3fs", "rclone"):
            v[p.name] = p.version() or "?"
    return v


def write_report(args, res, peers, info, vers, settings, started, elapsed) -> str:
    md = ["# ossfs benchmark results", "",
          "Produced by `python3 benchmarks/run.py --scale %s --runs %d --only %s --peers %s --code %s%s` on %s "
          "(%.0f min).  Medians of %d run(s); ↑ higher is better, ↓ lower is better.  Ratios are "
          "ossfs's speed-up (>1: ossfs better).  How each number is measured: `benchmarks/README.md`."
          % (args.scale, args.runs, ",".join(args.only), ",".join(args.peers), args.code,
             " --latency-ms %g" % args.latency_ms if args.latency_ms else "",
             started.strftime("%Y-%m-%d %H:%M UTC"), elapsed / 60, args.runs), ""]
    if args.latency_ms:
        md += ["**Network:** ossfs-server waited %g ms before answering every request (every peer alike), "
               "standing in for the round trip to an OSS endpoint; without it, loopback makes a request "
               "nearly free and the PUT's disk sync the only cost." % args.latency_ms, ""]
    once = [w for w in args.once if w in args.only]
    if once:
        md[2] = md[2].replace(" --peers", " --once %s --peers" % ",".join(once))
        md += ["Run once only (their numbers are single runs): %s." % ", ".join(once), ""]
    if args.note:
        md += ["**Note:** " + args.note, ""]
    md += ["Machine: %s; %s CPUs; %s RAM; kernel %s; disk %s." %
           (info["cpu"], info["nproc"], info["memory"], info["kernel"], info["disk"]),
           "Versions: " + ", ".join("%s %s" % kv for kv in vers.items()) + ".",
           "Transfer settings (ossfs defaults, also used for the SDK floor): %d MiB parts, %d in parallel, "
           "multipart from %d MiB." % (settings["part_size"] // MiB, settings["parallel"],
                                       settings["multipart_threshold"] // MiB), "",
           "Set-ups: ossfs with `use_cache`; s3fs-fuse with its defaults (no `use_cache`, so its warm "
           "reads go to the server again); rclone `--vfs-cache-mode full --vfs-write-back 0s`, its "
           "asynchronous uploads waited for and counted; every timed region ends when the data is on "
           "the server.", "",
           "## Targets", "", report.targets_table(res), "",
           "## Results", "", report.main_table(res, args.peers), "",
           "## Requests per metric (server counters, last completed run)", "",
           report.requests_table(res, args.peers), ""]
    return "\n".join(md)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)   # "pool is full" from parallel set-up
    if os.geteuid() != 0:
        print("benchmarks/run.py: needs root (FUSE mounts, dropping the page cache)", file=sys.stderr)
        return 2
    started, t0 = datetime.datetime.utcnow(), time.monotonic()
    scale = SCALES[args.scale]
    src_dir = os.path.join(args.work, "src")
    work = os.path.join(args.work, "run-%d" % os.getpid())
    os.makedirs(src_dir, exist_ok=True)
    os.makedirs(work)
    server = Server(os.path.join(work, "data"), latency_ms=args.latency_ms)
    peers = []

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        snapshot_code(work, args.code)
        server.start()
        write_passwd(work)
        probe = Probe(server.url)
        settings = ossfs_transfer_settings()
        ctx = Ctx(scale, server, probe, work, src_dir, **settings)
        peers = [make_peer(n, work, server) for n in args.peers]
        for p in peers:
            if p.kind == "mount":
                probe.put_dir(p.prefix)
        if "list" in args.only:
            prepare_list(ctx, peers)
        print("ossfs-server on %s; work in %s; scale %s" % (server.url, work, scale.name), flush=True)
        samples = []
        info, vers = machine(args.work), versions(peers)

        def flush(done: bool) -> str:
            """Writes the report so far: an interrupted run still leaves what it measured."""
            text = write_report(args, report.Results(samples), args.peers, info, vers, settings,
                                started, time.monotonic() - t0)
            if not done:
                text = text.replace("# ossfs benchmark results\n",
                                    "# ossfs benchmark results\n\n**Incomplete: the run was still going "
                                    "or was interrupted.**\n", 1)
            with open(args.out, "w") as f:
                f.write(text)
            with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
                json.dump([dataclasses.asdict(s) for s in samples], f, indent=0)
            return text
        for run in range(args.runs):
            for wl in args.only:
                if run > 0 and wl in args.once:
                    continue
                k = (run + args.only.index(wl)) % len(peers)
                for p in peers[k:] + peers[:k]:
                    t = time.monotonic()
                    try:
                        got = RUNNERS[wl](ctx, p, run)
                    except (BenchError, OSError) as e:
                        log.warning("%s on %s failed: %s", wl, p.name, e)
                        got = [report.Sample(wl, wl + " (set-up)", p.name, run, None, "s", False,
                                             error=str(e)[:200])]
                        if isinstance(p, MountPeer):
                            p.unmount()
                    samples.extend(got)
                    print("run %d %-6s %-6s %5.1fs  %s" % (run + 1, wl, p.name, time.monotonic() - t,
                          "; ".join("%s=%s" % (s.metric, "%.3g" % s.value if s.value is not None else "FAILED")
                                    for s in got)), flush=True)
                flush(False)
        print(flush(True))
        return 0
    finally:
        for p in peers:
            if isinstance(p, MountPeer):
                try:
                    p.unmount()
                except Exception as e:      # keep cleaning up the others
                    log.warning("unmounting %s: %s", p.name, e)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
