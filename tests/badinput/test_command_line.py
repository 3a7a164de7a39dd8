"""Hostile or broken command lines, passwd files, bucket names, mountpoints and
endpoints: each must end in ONE line on stderr starting ``ossfs:``, a non-zero exit,
no traceback, and no mount left behind.

The table :data:`CASES` maps a case name to a function that prepares the case in a
:class:`Ctx` and returns ``(argv, needles)``: the arguments after ``ossfs`` and words
the error line must contain (case-insensitive) so that the user can tell what to fix.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from mount.conftest import is_mounted, ossfs_cmd, ossfs_env


class Ctx:
    def __init__(self, server, tmp_path, extra=None):
        self.server = server
        self.tmp = tmp_path
        self.mnt = str(tmp_path / "mnt")
        os.mkdir(self.mnt)
        self.cache = str(tmp_path / "cache")
        self.extra = extra or {}

    def passwd(self, text: str = None, mode: int = 0o600, name: str = "passwd") -> str:
        path = str(self.tmp / name)
        if text is None:
            text = "%s:%s:%s\n" % (self.server.bucket, self.server.access_key_id, self.server.access_key_secret)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def opts(self, *more, passwd: str = None, url: str = None) -> str:
        base = ["url=%s" % (url or self.server.endpoint), "passwd_file=%s" % (passwd or self.passwd()),
                "use_cache=%s" % self.cache]
        return ",".join(base + list(more))

    def argv(self, *more, bucket: str = None, mnt: str = None, **kw) -> list:
        return [self.server.bucket if bucket is None else bucket, mnt or self.mnt, "-o", self.opts(*more, **kw)]


def _pw(text=None, mode=0o600):
    def case(c):
        p = c.passwd(text if text is None else text.format(b=c.server.bucket, k=c.server.access_key_id,
                                                                 s=c.server.access_key_secret), mode)
        return c.argv(passwd=p), ["passwd", p]
    return case


def _opt(option, *needles):
    return lambda c: (c.argv(option), list(needles) or [option.split("=")[0]])


def _bucket(name, *needles):
    return lambda c: (c.argv(bucket=name), list(needles) or ["bucket"])


def _passwd_dir(c):
    d = str(c.tmp / "pwdir")
    os.mkdir(d, 0o700)
    return c.argv(passwd=d), ["not a regular file"]


def _passwd_missing(c):
    p = str(c.tmp / "no-such-passwd")
    return c.argv(passwd=p), [p]


def _mnt_missing(c):
    return c.argv(mnt=c.mnt + "-missing"), ["does not exist"]


def _mnt_file(c):
    p = str(c.tmp / "plain-file")
    open(p, "w").close()
    return c.argv(mnt=p), ["not a directory"]


def _mnt_not_empty(c):
    open(os.path.join(c.mnt, "somefile"), "w").close()
    return c.argv(), ["not empty", "nonempty"]


def _unreachable(c):
    return c.argv("retries=1", "connect_timeout=5", url="http://127.0.0.1:1"), ["cannot reach", "127.0.0.1:1"]


def _html(c):
    return c.argv("retries=1", url=c.extra["html"]), [c.extra["html"], "OSS"]


def _wrong_key_id(c):
    p = c.passwd("%s:%s:%s\n" % (c.server.bucket, "no-such-key-id", c.server.access_key_secret))
    return c.argv(passwd=p), ["access key id"]


def _wrong_secret(c):
    p = c.passwd("%s:%s:%s\n" % (c.server.bucket, c.server.access_key_id, "wrong-secret-value"))
    return c.argv(passwd=p), ["secret"]


def _missing_bucket(c):
    p = c.passwd("%s:%s\n" % (c.server.access_key_id, c.server.access_key_secret))
    return c.argv(bucket="no-such-bucket-here", passwd=p), ["no-such-bucket-here"]


def _cache_is_file(c):
    p = str(c.tmp / "cache-file")
    open(p, "w").close()
    return [c.server.bucket, c.mnt, "-o", c.opts().replace("use_cache=%s" % c.cache, "use_cache=%s" % p)], [p]


def _logfile_in_missing_dir(c):
    p = str(c.tmp / "no-such-dir" / "ossfs.log")
    return c.argv("logfile=%s" % p), [p]


def _inside_mnt(option):
    def case(c):
        path = os.path.join(c.mnt, "inside")
        opts = c.opts("nonempty", "%s=%s" % (option, path))
        if option == "use_cache":
            opts = opts.replace("use_cache=%s," % c.cache, "").replace(",use_cache=%s" % c.cache, "")
        return [c.server.bucket, c.mnt, "-o", opts], ["inside the mountpoint", c.mnt]
    return case


def _config_not_utf8(c):
    p = str(c.tmp / "bad.conf")
    with open(p, "wb") as f:
        f.write(b"[[[\n= =\n\x00\xff\n")
    return c.argv() + ["--config", p], [p, "utf-8"]


CASES = {
    # passwd files
    "passwd_0644": _pw(None, 0o644),
    "passwd_0604": _pw(None, 0o604),
    "passwd_0640": _pw(None, 0o640),
    "passwd_0700_exec_bit": _pw(None, 0o700),
    "passwd_is_directory": _passwd_dir,
    "passwd_missing": _passwd_missing,
    "passwd_empty": _pw(""),
    "passwd_only_comments": _pw("# nothing here\n\n"),
    "passwd_whitespace_in_line": _pw("{b}:{k}: {s}\n"),
    "passwd_section_line": _pw("[default]\n{b}:{k}:{s}\n"),
    "passwd_duplicate_bucket": _pw("{b}:{k}:{s}\n{b}:{k}:other\n"),
    "passwd_other_bucket_only": _pw("another-bucket:{k}:{s}\n"),
    "passwd_no_colon": _pw("justonefield\n"),
    "passwd_empty_secret": _pw("{b}:{k}:\n"),
    "passwd_binary_garbage": _pw("\x00\x01\x02\xff\n"),
    "passwd_is_dev_null": lambda c: (c.argv(passwd="/dev/null"), ["/dev/null", "not a regular file"]),
    "cache_dir_is_a_file": _cache_is_file,
    "cache_dir_inside_mountpoint": _inside_mnt("use_cache"),
    "logfile_inside_mountpoint": _inside_mnt("logfile"),
    "config_file_not_utf8": _config_not_utf8,
    "logfile_in_missing_directory": _logfile_in_missing_dir,
    # options
    "option_unknown": _opt("foo"),
    "option_umask_9z": _opt("umask=9z", "umask"),
    "option_umask_0999": _opt("umask=0999", "umask"),
    "option_retries_negative": _opt("retries=-1", "retries"),
    "option_multipart_size_1": _opt("multipart_size=1", "multipart_size"),
    "option_uid_abc": _opt("uid=abc", "uid"),
    "option_gid_negative": _opt("gid=-5", "gid"),
    "option_stat_cache_expire_x": _opt("stat_cache_expire=x", "stat_cache_expire"),
    "option_max_keys_too_big": _opt("list_object_max_keys=5000", "list_object_max_keys"),
    "option_dbglevel_bad": _opt("dbglevel=loud", "dbglevel"),
    "option_connect_timeout_zero": _opt("connect_timeout=0", "connect_timeout"),
    "option_ram_role_refused": _opt("ram_role=myrole", "ram_role"),
    "option_flag_with_value": _opt("nonempty=maybe", "nonempty"),
    "option_long_unknown": lambda c: (c.argv() + ["--frobnicate"], ["frobnicate"]),
    "option_max_read_too_small": _opt("max_read=100", "max_read", "4096"),
    "option_max_write_too_big": _opt("max_write=2097152", "max_write"),
    "option_sigv4_without_region": _opt("sigv4", "sigv4", "region"),
    # bucket names and prefixes
    "bucket_uppercase_underscore": _bucket("Bad_Bucket", "Bad_Bucket"),
    "bucket_too_short": _bucket("ab", "ab"),
    "bucket_leading_hyphen": _bucket("-abc", "-abc"),
    "bucket_double_dot": _bucket("a..b", "a..b"),
    "bucket_url": _bucket("http://x", "://"),
    "bucket_too_long": _bucket("a" * 64),
    "prefix_dotdot": lambda c: (c.argv(bucket=c.server.bucket + ":/../x"), [".."]),
    "prefix_double_slash": lambda c: (c.argv(bucket=c.server.bucket + "://x"), ["://"]),
    # mountpoints
    "mountpoint_missing": _mnt_missing,
    "mountpoint_is_file": _mnt_file,
    "mountpoint_not_empty": _mnt_not_empty,
    # endpoints, keys, buckets
    "endpoint_unreachable": _unreachable,
    "endpoint_not_oss": _html,
    "endpoint_bad_scheme": _opt("url=ftp://127.0.0.1:21", "ftp://127.0.0.1:21"),
    "endpoint_port_out_of_range": lambda c: (c.argv(url="http://127.0.0.1:99999"), ["url", "99999"]),
    "endpoint_port_not_a_number": lambda c: (c.argv(url="http://127.0.0.1:abc"), ["url", "abc"]),
    "endpoint_without_host": lambda c: (c.argv(url="http://"), ["url", "host"]),
    "wrong_access_key_id": _wrong_key_id,
    "wrong_secret": _wrong_secret,
    "missing_bucket": _missing_bucket,
}


def assert_one_line_failure(proc, needles):
    assert proc.returncode != 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ossfs: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_with_one_clear_line(name, oss_server, tmp_path, run_ossfs, html_server):
    ctx = Ctx(oss_server, tmp_path, {"html": html_server})
    argv, needles = CASES[name](ctx)
    try:
        proc = run_ossfs(*argv, timeout=90)
        line = assert_one_line_failure(proc, needles)
        assert oss_server.access_key_secret not in proc.stderr + proc.stdout
        assert "wrong-secret-value" not in proc.stderr + proc.stdout
        assert not is_mounted(ctx.mnt)
    finally:
        if is_mounted(ctx.mnt):
            subprocess.run(["fusermount3", "-u", "-z", ctx.mnt], capture_output=True)


def test_busy_mountpoint_refused(mount, run_ossfs):
    proc = run_ossfs(mount.server.bucket, mount.path, "-o", "url=%s,passwd_file=%s,nonempty,use_cache=%s"
                     % (mount.server.endpoint, mount.passwd, mount.cache + "-second"))
    assert_one_line_failure(proc, [mount.path])
    assert os.listdir(mount.path) == []   # the first mount still answers


def test_bad_url_scheme_is_reported_as_a_scheme_error(oss_server, tmp_path, run_ossfs):
    """``url=ftp://...`` is a wrong scheme, not a DNS problem: the line should say so."""
    ctx = Ctx(oss_server, tmp_path)
    proc = run_ossfs(*ctx.argv("url=ftp://127.0.0.1:21"), timeout=90)
    line = assert_one_line_failure(proc, ["ftp"])
    assert "name resolution" not in line and ("scheme" in line or "http" in line.replace("ftp://", "")), line


def test_there_are_at_least_forty_cases():
    assert len(CASES) + 1 >= 40


def test_cache_on_a_full_disk_is_one_line(oss_server, tmp_path, run_ossfs):
    """The cache index cannot even be created: say which directory, not 'disk I/O error'."""
    ctx = Ctx(oss_server, tmp_path)
    full = str(tmp_path / "full")
    os.mkdir(full)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", full], check=True)
    try:
        argv = [oss_server.bucket, ctx.mnt, "-o", ctx.opts().replace("use_cache=%s" % ctx.cache, "use_cache=" + full)]
        proc = run_ossfs(*argv, timeout=90)
        assert_one_line_failure(proc, ["cache directory", full, "full"])
        assert not is_mounted(ctx.mnt)
    finally:
        if is_mounted(ctx.mnt):
            subprocess.run(["fusermount3", "-u", "-z", ctx.mnt], capture_output=True)
        subprocess.run(["umount", full], capture_output=True)


def test_unwritable_stdout_is_one_line(oss_server):
    """``ossfs --version > /dev/full``: say that stdout failed, not 'unexpected error'."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(ossfs_cmd("--version"), env=ossfs_env(), stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    proc.stdout = ""          # it went to /dev/full
    line = assert_one_line_failure(proc, ["standard output", "no space left"])
    assert "unexpected" not in line


def test_reader_gone_ends_quietly(oss_server):
    """``ossfs --version | (exit)``: the reader went away; no message, exit as SIGPIPE would."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(ossfs_cmd("--version"), env=ossfs_env(), stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
