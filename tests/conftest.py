"""Shared pytest fixtures: a real ``ossfs-server`` subprocess on loopback.

Fixtures
    ``oss_server`` (function scope) and ``oss_server_session`` (session scope) yield an
    :class:`OssServer`:

    * ``.endpoint`` (``"http://127.0.0.1:PORT"``), ``.host``, ``.port``
    * ``.access_key_id``, ``.access_key_secret``, ``.bucket`` (created at start),
      ``.data_dir`` (the server's ``--data`` directory)
    * ``.stats() -> dict`` (``{"requests": {"PutObject": n, ...}, "total": N,
      "bytes_in": .., "bytes_out": ..}``), ``.reset_stats()``
    * ``.set_faults(fault_rate=, drop_rate=, latency_ms=, bandwidth=, fail_next=) -> dict``
    * ``.restart()`` (same data directory and port), ``.stop()``
    * ``.oss_bucket(name=None, auth=None, **kw)`` -> ``oss2.Bucket`` with ``enable_crc=True``
      (path style, because the endpoint is an IP address)
    * ``.auth()`` -> ``oss2.Auth`` for the server's key pair

    The secret reaches the server through the environment, never its command line.
    The server is stopped (SIGTERM, then SIGKILL) when the fixture ends, also on failure.
    Tests that change faults on the session server must reset them (``set_faults()``
    with zeros); prefer the function-scoped fixture for that.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_ENV = "OSSFS_SERVER_ACCESS_KEY_SECRET"
_LISTEN_RE = re.compile(r"listening on (http://[^\s]+)")


class OssServer:
    """A running ossfs-server subprocess; see the module docstring."""

    def __init__(self, data_dir: str, bucket: str = "ossfs-test",
                 access_key_id: str = "test-key-id", access_key_secret: str = None,
                 extra_args=()):
        self.data_dir = data_dir
        self.bucket = bucket
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret or "test-secret-" + uuid.uuid4().hex
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = 0
        self.host = "127.0.0.1"
        self.endpoint = None
        self.stderr_path = os.path.join(os.path.dirname(data_dir) or ".", "server-stderr-%s.log" % uuid.uuid4().hex[:8])

    def start(self, port: int = 0) -> "OssServer":
        env = dict(os.environ)
        env[SECRET_ENV] = self.access_key_secret
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "ossfs.server", "--data", self.data_dir, "--host", self.host,
               "--port", str(port), "--access-key-id", self.access_key_id,
               "--bucket", self.bucket] + self.extra_args
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=REPO)
        deadline = time.monotonic() + 20
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        m = _LISTEN_RE.search(line.decode("utf-8", "replace"))
        if not m:
            self.stop()
            with open(self.stderr_path, "rb") as f:
                err = f.read().decode("utf-8", "replace")
            raise RuntimeError("ossfs-server did not start: %r %s" % (line, err[-2000:]))
        self.endpoint = m.group(1)
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        self._stderr.close()

    def restart(self) -> None:
        port = self.port
        self.stop()
        for _ in range(50):   # the port may linger briefly
            try:
                self.start(port)
                return
            except RuntimeError:
                time.sleep(0.1)
        self.start(port)

    def _hook(self, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self._hook("/_ossfs/stats")

    def reset_stats(self) -> dict:
        return self._hook("/_ossfs/stats/reset", {})

    def set_faults(self, **kw) -> dict:
        """Set fault settings; with no arguments, switch every fault off."""
        if not kw:
            kw = {"fault_rate": 0, "drop_rate": 0, "latency_ms": 0, "bandwidth": 0, "fail_next": 0}
        return self._hook("/_ossfs/faults", kw)

    def auth(self):
        import oss2
        return oss2.Auth(self.access_key_id, self.access_key_secret)

    def oss_bucket(self, name: str = None, auth=None, **kw):
        import oss2
        kw.setdefault("enable_crc", True)
        return oss2.Bucket(auth or self.auth(), self.endpoint, name or self.bucket, **kw)

    def signed_request(self, method: str, bucket: str = None, key: str = "", params: dict = None,
                       headers: dict = None, data: bytes = b"", date: str = None,
                       access_key_id: str = None, access_key_secret: str = None,
                       virtual_host: bool = False):
        """Send one V1-signed request with ``requests`` (path style) and return the response.

        For cases oss2 refuses to produce (invalid bucket names, old dates...).
        ``params`` are signed as oss2 signs them (only its sub-resource names).
        """
        import base64
        import email.utils
        import hashlib
        import hmac
        from urllib.parse import quote

        import requests
        headers = dict(headers or {})
        params = dict(params or {})
        headers["Date"] = date or email.utils.formatdate(usegmt=True)
        resource = "/%s/%s" % (bucket, key) if bucket else "/"
        import oss2.auth
        subs = sorted((k, v) for k, v in params.items() if k in oss2.auth.ProviderAuth._subresource_key_set)
        if subs:
            resource += "?" + "&".join(k + "=" + v if v else k for k, v in subs)
        oss_headers = "".join("%s:%s\n" % (k.lower(), v) for k, v in
                              sorted(headers.items(), key=lambda kv: kv[0].lower())
                              if k.lower().startswith("x-oss-"))
        sts = "\n".join([method, headers.get("Content-MD5", ""), headers.get("Content-Type", ""),
                         headers["Date"], oss_headers + resource])
        secret = access_key_secret or self.access_key_secret
        sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode()
        headers["Authorization"] = "OSS %s:%s" % (access_key_id or self.access_key_id, sig)
        if virtual_host:   # Host: <bucket>.localhost:PORT, path /<key>
            headers["Host"] = "%s.localhost:%d" % (bucket, self.port)
            url = self.endpoint + "/" + quote(key, safe="")
        else:
            url = self.endpoint + "/" + ("%s/%s" % (bucket, quote(key, safe="")) if bucket else "")
        query = "&".join(quote(k, safe="") + ("=" + quote(v, safe="") if v else "") for k, v in params.items())
        if query:
            url += "?" + query
        return requests.request(method, url, headers=headers, data=data, timeout=30)

    def oss_service(self, auth=None):
        import oss2
        return oss2.Service(auth or self.auth(), self.endpoint)


def _make(tmp_path_factory, name):
    base = tmp_path_factory.mktemp(name)
    data = os.path.join(str(base), "data")
    os.makedirs(data)
    return OssServer(data)


@pytest.fixture
def oss_server(tmp_path_factory):
    """A fresh ossfs-server subprocess for one test (see the module docstring)."""
    server = _make(tmp_path_factory, "oss-server")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oss_server_session(tmp_path_factory):
    """One ossfs-server subprocess shared by the whole session (faults must be reset)."""
    server = _make(tmp_path_factory, "oss-server-session")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "packaging: builds, installs and removes the .deb (root, apt, about 1 minute)")
