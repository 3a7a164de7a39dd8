"""The ossfs benchmark harness: ossfs against s3fs-fuse, rclone, the oss2 SDK and the
local disk, on one ossfs-server, in one run.  ``benchmarks/run.py`` is the entry point.

Modules, each talking only to the one below it:

``run.py``        command line, the run loop (peers alternate between runs), RESULTS.md
``report.py``     medians, ratios, targets (PASS/MISS), the markdown tables
``workloads.py``  the seven workloads; each returns :class:`~harness.common.Sample` records
``peers.py``      how each peer mounts, unmounts, drops its cache and names its daemon
``server.py``     the ossfs-server process, its request counters, and a probe client
``common.py``     records, sizes per scale, subprocess and polling helpers
"""
