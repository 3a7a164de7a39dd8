"""Options that shape the objects a mount writes: storage_class=, default_acl=,
use_path_request_style, and the copy sizes."""
import os


def test_storage_class_and_acl_reach_new_objects(mounter, oss_server):
    m = mounter(storage_class="IA", default_acl="private", use_path_request_style=True,
                singlepart_copy_limit=5, multipart_copy_size=5)
    with open(m.p("cold.txt"), "wb") as f:
        f.write(b"rarely read")
    b = oss_server.oss_bucket()
    assert b.head_object("cold.txt").headers["x-oss-storage-class"] == "IA"
    os.chmod(m.p("cold.txt"), 0o600)  # a copy of the object onto itself keeps the class
    h = b.head_object("cold.txt").headers
    assert h["x-oss-storage-class"] == "IA" and h["x-oss-meta-mode"] == str(0o100600)
    assert open(m.p("cold.txt"), "rb").read() == b"rarely read"


def test_objects_without_the_option_are_standard(mount, oss_server):
    with open(mount.p("hot.txt"), "wb") as f:
        f.write(b"x")
    assert oss_server.oss_bucket().head_object("hot.txt").headers["x-oss-storage-class"] == "Standard"


def test_check_cache_dir_exist_refuses_a_missing_cache_dir(mounter, tmp_path):
    import subprocess
    from tests.mount.conftest import ossfs_env
    m = mounter(check_cache_dir_exist=True, start=False)
    m.options["use_cache"] = str(tmp_path / "no-such-cache")
    proc = subprocess.run(m.command(), env=ossfs_env(), capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "no-such-cache" in lines[0] and "does not exist" in lines[0]
    assert not os.path.exists(tmp_path / "no-such-cache")
