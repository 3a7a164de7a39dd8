"""Command line of ossfs-server (``ossfs-server`` / ``python -m ossfs.server``).

Owns argument parsing, the start-up line on stdout and the exit status; bad arguments
give one line ``ossfs-server: <message>`` on stderr and exit status 2, no traceback.
The secret may come from the environment (``OSSFS_SERVER_ACCESS_KEY_SECRET``) so that
it does not show in ``ps``; it is never printed or logged.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

DEFAULT_ACCESS_KEY_ID = "OSSFSTESTACCESSKEY"
DEFAULT_ACCESS_KEY_SECRET = "ossfs-server-default-secret"
SECRET_ENV = "OSSFS_SERVER_ACCESS_KEY_SECRET"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("ossfs-server: %s\n" % message)
        sys.exit(2)


def _rate(text: str) -> float:
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return v


def _nonneg(kind):
    def conv(text: str):
        v = kind(text)
        if v < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return v
    conv.__name__ = kind.__name__
    return conv


def _port(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError("must be from 0 to 65535")
    return v


def _directory(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ossfs-server",
        description="An OSS-compatible (and S3-compatible) object server keeping its objects "
                    "under a local directory.  For tests, benchmarks and trying ossfs out.",
        epilog="Without --access-key-id/--access-key-secret the server accepts the default pair "
               "%s / %s (for loopback testing only).  The secret can also be given in the "
               "environment variable %s, which keeps it out of ps."
               % (DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SECRET_ENV))
    p.add_argument("--data", required=True, type=_directory, metavar="DIR",
                   help="directory holding all buckets and objects")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0, help="port (default 0: a free port)")
    p.add_argument("--access-key-id", metavar="ID", help="the accepted AccessKeyId")
    p.add_argument("--access-key-secret", metavar="SECRET", help="its AccessKeySecret")
    p.add_argument("--bucket", action="append", default=[], metavar="NAME",
                   help="create this bucket at start if missing (repeatable)")
    p.add_argument("--region", default="oss-cn-hangzhou", help="region reported by GetBucketLocation")
    p.add_argument("--fault-rate", type=_rate, default=0.0, metavar="F",
                   help="fraction of requests answered 500/503 (default 0)")
    p.add_argument("--drop-rate", type=_rate, default=0.0, metavar="F",
                   help="fraction of requests whose connection is cut mid-body (default 0)")
    p.add_argument("--latency-ms", type=_nonneg(float), default=0.0, metavar="N",
                   help="delay added before every request")
    p.add_argument("--bandwidth", type=_nonneg(int), default=0, metavar="BYTES_PER_S",
                   help="per-connection bandwidth cap for bodies, both directions (0: none)")
    p.add_argument("--log-level", default="warning",
                   choices=["debug", "info", "warning", "error"], help="log level (stderr)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key_id = args.access_key_id
    secret = args.access_key_secret or os.environ.get(SECRET_ENV)
    if bool(key_id) != bool(secret):
        sys.stderr.write("ossfs-server: --access-key-id and --access-key-secret go together\n")
        return 2
    if not key_id:
        key_id, secret = DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    from ossfs.server.httpd import make_server
    from ossfs.server.state import FaultSettings, Faults, ServerState
    from ossfs.server.store import Store, StoreError, validate_bucket_name

    try:
        for b in args.bucket:
            validate_bucket_name(b)
    except StoreError:
        sys.stderr.write("ossfs-server: invalid bucket name %r\n" % b)
        return 2
    try:
        store = Store(args.data)
        for b in args.bucket:
            store.ensure_bucket(b)
    except OSError as e:
        sys.stderr.write("ossfs-server: cannot use data directory %s: %s\n" % (args.data, e.strerror or e))
        return 1
    faults = Faults(FaultSettings(args.fault_rate, args.drop_rate, args.latency_ms, args.bandwidth))
    state = ServerState(store, {key_id: secret}, faults, host=args.host, region=args.region)
    try:
        server = make_server(state, args.host, args.port)
    except OSError as e:
        sys.stderr.write("ossfs-server: cannot listen on %s:%s: %s\n" % (args.host, args.port, e.strerror or e))
        return 1
    host, port = server.server_address[:2]
    shown = "[%s]" % host if ":" in host else host
    print("ossfs-server: listening on http://%s:%d (access key id %s, data %s)"
          % (shown, port, key_id, os.path.abspath(args.data)), flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
