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


def test_attribute_changes_and_renames_keep_the_headers_other_tools_set(mounter, oss_server):
    """Objects another tool uploaded with Cache-Control, Content-Encoding,
    Content-Disposition, Content-Language and Expires (a web site behind a CDN) keep
    them through chmod, chown, touch, setxattr and renames, small and large (a copy
    in parts), also after a remount, when what the mount knows of them comes from its
    metadata cache."""
    import oss2
    b = oss_server.oss_bucket()
    kept = {"Cache-Control": "public, max-age=86400", "Content-Encoding": "gzip", "Content-Language": "en",
            "Content-Disposition": 'inline; filename="app.js"', "Expires": "Wed, 21 Oct 2026 07:28:00 GMT"}
    sizes = {"site/app.js": 1000, "site/big.bin": 7 * 1024 * 1024}      # big: above the copy limit below
    for key, size in sizes.items():
        b.put_object(key, os.urandom(size), headers=dict(kept, **{"Content-Type": "application/javascript"}))
    m = mounter(singlepart_copy_limit=5, multipart_copy_size=5)

    def check(key, what):
        h = b.head_object(key).headers
        got = {k: h.get(k) for k in kept}
        assert got == kept, (key, what, got)
        assert h["Content-Type"] == "application/javascript", (key, what)

    os.listdir(m.p("site"))
    for key in sizes:
        path = m.p(key)
        os.chmod(path, 0o640)
        check(key, "chmod")
        os.chown(path, 1234, 5678)
        check(key, "chown")
        os.utime(path, (1_700_000_000, 1_700_000_000))
        check(key, "touch")
        os.setxattr(path, "user.note", b"kept")
        check(key, "setxattr")
        assert oss2.utils.http_to_unixtime(b.head_object(key).headers["Last-Modified"]) > 0
    m.unmount()
    m.start()                       # attributes now come from the metadata cache
    os.listdir(m.p("site"))
    for key in sizes:
        os.chmod(m.p(key), 0o600)
        check(key, "chmod after a remount")
        os.rename(m.p(key), m.p(key + ".moved"))
        check(key + ".moved", "rename")
        st = os.stat(m.p(key + ".moved"))
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid, int(st.st_mtime)) == (0o600, 1234, 5678, 1_700_000_000)
