"""Run-time state of one ossfs-server process shared by both faces (OSS and S3).

What it owns
    :class:`ServerState` bundles the :class:`~ossfs.server.store.Store`, the accepted
    credentials, the request counters (:class:`Stats`) and the fault-injection settings
    (:class:`Faults`).  One instance lives for the life of the server and is handed to
    every request handler; nothing here is global.

Contracts
    * ``Stats.count(op)`` is called once per request under its OSS operation name
      (``PutObject``, ``GetObject`` ...), by whichever face served it; requests refused by
      an injected fault are counted under ``"faults"`` instead; a request whose
      connection the drop fault will cut is also counted under ``"drops"``.
    * ``Faults`` values may change at any moment (``POST /_ossfs/faults``); each request
      reads them once, through :meth:`Faults.snapshot`.

Threads and locks
    ``Stats._lock`` guards the counters; ``Faults._lock`` guards the settings.  Neither is
    held while doing I/O, and they are never nested.
"""
from __future__ import annotations

import logging
import random
import threading
from dataclasses import asdict, dataclass
from typing import Dict, Optional

from ossfs.server.store import Store

log = logging.getLogger(__name__)


class Stats:
    """Thread-safe request and byte counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Dict[str, int] = {}
        self._bytes_in = 0
        self._bytes_out = 0

    def count(self, op_name: str, n: int = 1) -> None:
        with self._lock:
            self._requests[op_name] = self._requests.get(op_name, 0) + n

    def add_bytes(self, bytes_in: int = 0, bytes_out: int = 0) -> None:
        with self._lock:
            self._bytes_in += bytes_in
            self._bytes_out += bytes_out

    def snapshot(self) -> dict:
        """``{"requests": {op: n}, "total": N, "bytes_in": .., "bytes_out": ..}``."""
        with self._lock:
            return {"requests": dict(self._requests), "total": sum(self._requests.values()),
                    "bytes_in": self._bytes_in, "bytes_out": self._bytes_out}

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes_in = self._bytes_out = 0


@dataclass
class FaultSettings:
    """One consistent view of the fault settings (0 / None means off)."""

    fault_rate: float = 0.0      # fraction of requests answered 500/503 before the store
    drop_rate: float = 0.0       # fraction of requests whose connection is cut mid-body
    latency_ms: float = 0.0      # added before every request
    bandwidth: int = 0           # bytes/s per connection, both directions; 0 = unlimited
    fail_next: int = 0           # the next N requests are answered 503, whatever fault_rate says


class Faults:
    """Fault-injection settings, changeable at run time."""

    def __init__(self, settings: Optional[FaultSettings] = None, seed: Optional[int] = None):
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._random = random.Random(seed)

    def snapshot(self) -> FaultSettings:
        with self._lock:
            return FaultSettings(**asdict(self._settings))

    def update(self, **kw) -> FaultSettings:
        """Set any of fault_rate, drop_rate, latency_ms, bandwidth, fail_next; ValueError on bad input."""
        with self._lock:
            new = asdict(self._settings)
            for name, value in kw.items():
                if name not in new:
                    raise ValueError("unknown fault setting %r" % name)
                value = int(value) if name in ("bandwidth", "fail_next") else float(value)
                if value < 0 or (name.endswith("_rate") and value > 1):
                    raise ValueError("%s out of range: %r" % (name, value))
                new[name] = value
            self._settings = FaultSettings(**new)
            return FaultSettings(**new)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``."""
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def take_forced(self) -> bool:
        """True (and one fewer left) while ``fail_next`` requests remain to be failed."""
        with self._lock:
            if self._settings.fail_next <= 0:
                return False
            self._settings.fail_next -= 1
            return True

    # properties for convenience (each reads the current value)
    @property
    def fault_rate(self) -> float:
        return self.snapshot().fault_rate

    @property
    def drop_rate(self) -> float:
        return self.snapshot().drop_rate

    @property
    def latency_ms(self) -> float:
        return self.snapshot().latency_ms

    @property
    def bandwidth(self) -> int:
        return self.snapshot().bandwidth


class ServerState:
    """Everything a request handler needs: store, credentials, stats, faults."""

    def __init__(self, store: Store, credentials: Dict[str, str],
                 faults: Optional[Faults] = None, host: str = "127.0.0.1",
                 region: str = "oss-cn-hangzhou"):
        self.store = store
        self.credentials = dict(credentials)   # access_key_id -> secret; read-only after start
        self.stats = Stats()
        self.faults = faults or Faults()
        self.host = host                       # for virtual-host style: "<bucket>.<host>"
        self.region = region
