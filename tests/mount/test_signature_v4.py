"""A mount signing with OSS signature V4 (`-o sigv4`) works end to end, and the region
comes from `endpoint=` or from an Aliyun-style url."""
import os
import types

from ossfs.mount import region_of


def test_mount_with_sigv4_reads_and_writes(mounter, oss_server):
    m = mounter(sigv4=True, endpoint="cn-hangzhou")
    with open(m.p("v4.txt"), "wb") as f:
        f.write(b"signed with v4")
    assert open(m.p("v4.txt"), "rb").read() == b"signed with v4"
    assert oss_server.oss_bucket().get_object("v4.txt").read() == b"signed with v4"
    assert "v4.txt" in os.listdir(m.path)
    assert "OSS4-HMAC-SHA256" not in m.log()  # signatures never reach the log


def test_region_from_options_or_url():
    cfg = lambda url, endpoint="": types.SimpleNamespace(url=url, endpoint=endpoint)
    assert region_of(cfg("https://oss-cn-hangzhou.aliyuncs.com")) == "cn-hangzhou"
    assert region_of(cfg("http://oss-cn-beijing-internal.aliyuncs.com")) == "cn-beijing"
    assert region_of(cfg("http://127.0.0.1:9000", "cn-shanghai")) == "cn-shanghai"
    assert region_of(cfg("http://127.0.0.1:9000")) is None


def test_sigv4_without_a_region_is_one_clear_line(mounter):
    m = mounter(sigv4=True, start=False)
    import subprocess
    from tests.mount.conftest import ossfs_env
    proc = subprocess.run(m.command(), env=ossfs_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ossfs:") and "region" in lines[0], proc.stderr
