"""Tests of the option table and the command line grammar."""
import dataclasses
import os
from pathlib import Path

import pytest

from ossfs import config
from ossfs.config import FSTAB_NOISE, IGNORED, IMPLEMENTED, OPTIONS, REFUSED, parse_args, parse_age
from ossfs.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

# Every option name of ossfs 1.x (docs: /work/shared CONVENTIONS) must be in the table.
OSSFS1_OPTIONS = """url host endpoint region sigv1 sigv4 passwd_file ram_role uid gid umask mp_umask
    allow_other nonempty default_acl retries connect_timeout readwrite_timeout tmpdir use_cache
    del_cache ensure_diskfree free_space_ratio max_stat_cache_size stat_cache_expire
    disable_noobj_cache list_object_max_keys multireq_max parallel_count multipart_size
    multipart_threshold multipart_copy_size singlepart_copy_limit max_dirty_data nomultipart
    nocopyapi norenameapi storage_class enable_content_md5 mime use_xattr complement_stat
    notsup_compat_dir readdir_optimize symlink_in_meta listobjectsv2 use_path_request_style
    logfile dbglevel""".split()


def mount(*opts, env=None):
    argv = ["mybucket", "/mnt/x"]
    for o in opts:
        argv += ["-o", o]
    return parse_args(argv, env or {})


def err(argv, env=None):
    with pytest.raises(UserError) as exc:
        parse_args(argv, env or {})
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_defaults():
    c = mount()
    assert (c.bucket, c.prefix, c.mountpoint, c.action) == ("mybucket", "", "/mnt/x", "mount")
    assert c.retries == 5 and c.stat_cache_expire == 900 and c.multipart_size == 10
    assert c.xattr is True and c.neg_cache is True and c.umask == 0
    assert c.default_file_mode == 0o644 and c.default_dir_mode == 0o755
    assert c.fuse_options == {} and c.warnings == [] and c.uid is None
    assert c.url == "http://oss-cn-hangzhou.aliyuncs.com"


@pytest.mark.parametrize("name", OSSFS1_OPTIONS)
def test_every_ossfs1_option_is_known(name):
    assert name in config._LOOKUP


def test_every_option_has_attribute_and_help():
    fields = {f.name for f in dataclasses.fields(config.Config)}
    for o in OPTIONS:
        assert o.name in fields and o.name.isidentifier()
        assert o.help and o.status in (IMPLEMENTED, IGNORED, REFUSED)
        assert o.kind in ("flag", "int", "octal", "float", "size_mb", "str", "choice")
    assert len(config._LOOKUP) == sum(1 + len(o.aliases) + len(o.negations) for o in OPTIONS)


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.status == IGNORED], ids=lambda o: o.name)
def test_ignored_options_warn(opt):
    c = mount(opt.name if opt.kind == "flag" else opt.name + "=1")
    assert len(c.warnings) == 1 and opt.name in c.warnings[0] and "\n" not in c.warnings[0]


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.status == REFUSED], ids=lambda o: o.name)
def test_refused_options(opt):
    msg = err(["b12", "/m", "-o", opt.name + "=x"])
    assert msg.startswith("option '%s' is not supported" % opt.name)


def test_fstab_noise_is_silent():
    c = mount(",".join(sorted(FSTAB_NOISE)) + ",x-systemd.automount,x-gvfs-hide")
    assert c.warnings == [] and c.fuse_options == {}


@pytest.mark.parametrize("argv,expected", [
    (["b12", "/m", "-o", "foo"], "unknown option 'foo'"),
    (["b12", "/m", "-o", "umask=abc"], "option 'umask': expected an octal number like 022, got 'abc'"),
    (["b12", "/m", "-o", "umask=1777"], "option 'umask': must be at most 777, got '1777'"),
    (["b12", "/m", "-o", "retries=-1"], "option 'retries': must be at least 0, got '-1'"),
    (["b12", "/m", "-o", "multipart_size=2"], "option 'multipart_size': must be at least 5, got '2'"),
    (["b12", "/m", "-o", "stat_cache_expire=x"], "option 'stat_cache_expire': expected an integer, got 'x'"),
    (["b12", "/m", "-o", "list_object_max_keys=1001"], "option 'list_object_max_keys': must be at most 1000"),
    (["b12", "/m", "-o", "dbglevel=loud"], "option 'dbglevel': expected one of crit|err|warn|info|dbg"),
    (["b12", "/m", "-o", "allow_other=maybe"], "option 'allow_other': expected no value or one of"),
    (["b12", "/m", "-o", "retries"], "option 'retries' needs a value (retries=N)"),
    (["b12", "/m", "-o", "noxattr=1"], "option 'noxattr' takes no value"),
    (["b12", "/m", "-o", "attr_timeout=nan"], "option 'attr_timeout': expected a number"),
    (["b12", "/m", "-o", "default_file_mode=8"], "option 'default_file_mode': expected an octal"),
    (["b12", "/m", "-o", "ram_role=http://x"], "option 'ram_role' is not supported"),
    (["b12", "/m", "-o"], "-o needs a list of options"),
    (["b12", "/m", "--frobnicate"], "unknown argument '--frobnicate'"),
    (["http://b12", "/m"], "bucket name 'http://b12' contains '://'"),
    (["Bad_Bucket", "/m"], "invalid bucket name 'Bad_Bucket'"),
    (["ab", "/m"], "invalid bucket name 'ab'"),
    (["-ab", "/m"], "unknown argument '-ab'"),
    (["ab-", "/m"], "invalid bucket name 'ab-'"),
    (["a" * 64, "/m"], "invalid bucket name"),
    (["b12:/a/../c", "/m"], "invalid path '/a/../c'"),
    (["b12:/a//c", "/m"], "invalid path '/a//c'"),
    (["/m"], "missing BUCKET"),
    ([], "missing MOUNTPOINT"),
    (["b12", "/m", "extra"], "too many arguments: extra"),
    (["b12", "/m", "-o", "bucket=other"], "bucket given twice"),
    (["status"], "usage: ossfs status MOUNTPOINT"),
    (["--incomplete-mpu-abort=3X", "b12"], "bad age '3X'"),
    (["--incomplete-mpu-list", "b12", "b13"], "take one BUCKET argument"),
])
def test_errors(argv, expected):
    assert expected in err(argv)


def test_error_from_env_and_file_name_the_source(tmp_path):
    assert "option 'retries' (environment): must be at least 0" in err(["b12", "/m"], {"OSSFS_RETRIES": "-3"})
    f = tmp_path / "ossfs.conf"
    f.write_text("bogus = 1\n")
    assert err(["b12", "/m", "--config", str(f)]) == "unknown option 'bogus' in config file %s" % f
    assert "cannot read config file" in err(["b12", "/m", "--config", str(tmp_path / "none")])
    f.write_text("noxattr\n")
    assert "write 'xattr = false'" in err(["b12", "/m", "--config", str(f)])
    f.write_text("url = [a, b]\n")
    assert "takes one value" in err(["b12", "/m", "--config", str(f)])


def test_flags_aliases_negations():
    c = mount("use_xattr=0", "disable_noobj_cache")
    assert c.xattr is False and c.neg_cache is False
    assert mount("noxattr").xattr is False
    assert mount("noxattr", "xattr").xattr is True  # last one wins
    assert mount("host=example.com:8080").url == "http://example.com:8080"
    assert mount("url=https://e.com/").url == "https://e.com"
    assert mount("region=cn-beijing").endpoint == "cn-beijing"


def test_values_and_multiple_o():
    c = parse_args(["b12", "m", "-o", "umask=0022,uid=1000", "-ogid=5", "-o", "stat_cache_expire=-1",
                    "-o", "allow_other,max_write=131072,attr_timeout=2.5,ro"], {})
    assert (c.umask, c.uid, c.gid, c.stat_cache_expire) == (0o22, 1000, 5, -1)
    assert c.fuse_options == {"allow_other": True, "max_write": 131072, "attr_timeout": 2.5, "ro": True}
    assert c.mountpoint == os.path.abspath("m")
    assert {"umask", "uid", "gid", "allow_other"} <= c.explicit


def test_comma_escape():
    assert mount(r"logfile=/var/log/a\,b").logfile == "/var/log/a,b"


@pytest.mark.parametrize("arg,bucket,prefix", [
    ("mybucket", "mybucket", ""),
    ("mybucket:/", "mybucket", ""),
    ("mybucket:/a/b", "mybucket", "a/b/"),
    ("mybucket:/a/b/", "mybucket", "a/b/"),
    ("mybucket:a", "mybucket", "a/"),
    ("ossfs#my-bucket-1", "my-bucket-1", ""),
])
def test_bucket_and_prefix(arg, bucket, prefix):
    c = parse_args([arg, "/m"], {})
    assert (c.bucket, c.prefix) == (bucket, prefix)


def test_bucket_from_option_env_and_file(tmp_path):
    assert parse_args(["/m", "-o", "bucket=abc"], {}).bucket == "abc"
    assert parse_args(["/m"], {"OSSFS_BUCKET": "abc"}).bucket == "abc"
    assert parse_args(["abc", "/m", "-o", "bucket=abc"], {}).bucket == "abc"


def test_precedence_cmdline_env_file(tmp_path):
    f = tmp_path / "c.conf"
    f.write_text("# comment\nretries = 1\nparallel_count = 2\nmultireq_max = 3\nallow_other\n"
                 "use_xattr = false\n")
    env = {"OSSFS_RETRIES": "7", "OSSFS_PARALLEL_COUNT": "8", "OSSFS_UNRELATED": "x"}
    c = parse_args(["b12", "/m", "--config", str(f), "-o", "retries=9"], env)
    assert (c.retries, c.parallel_count, c.multireq_max) == (9, 8, 3)
    assert c.allow_other is True and c.xattr is False and c.config == str(f)
    assert c.fuse_options == {"allow_other": True}
    # the file can also be named with -o config= or OSSFS_CONFIG
    assert parse_args(["b12", "/m", "-o", "config=%s" % f], {}).multireq_max == 3
    assert parse_args(["b12", "/m"], {"OSSFS_CONFIG": str(f)}).multireq_max == 3
    assert parse_args(["b12", "/m", "--config=%s" % f], {}).multireq_max == 3


def test_short_flags_and_actions():
    c = parse_args(["-f", "b12", "/m", "-d", "-d", "-s"], {})
    assert (c.foreground, c.debug, c.single_thread) == (True, 2, True)
    assert parse_args(["-fd", "b12", "/m"], {}).debug == 1
    assert parse_args(["-h"], {}).action == "help"
    assert parse_args(["b12", "--help"], {}).action == "help"
    assert parse_args(["--version"], {}).action == "version"


def test_maintenance_verbs():
    c = parse_args(["--incomplete-mpu-list", "b12", "-o", "url=127.0.0.1:9000"], {})
    assert (c.action, c.bucket, c.url) == ("mpu_list", "b12", "http://127.0.0.1:9000")
    c = parse_args(["--incomplete-mpu-abort", "b12"], {})
    assert (c.action, c.mpu_abort_age) == ("mpu_abort", 24 * 3600)
    assert parse_args(["--incomplete-mpu-abort=all", "b12"], {}).mpu_abort_age is None
    assert parse_args(["--incomplete-mpu-abort=1h30m", "b12"], {}).mpu_abort_age == 5400
    assert parse_args(["-u", "b12"], {}).action == "mpu_list"
    c = parse_args(["status", "/mnt/x"], {})
    assert (c.action, c.mountpoint) == ("status", "/mnt/x")


@pytest.mark.parametrize("text,seconds", [
    ("1Y6M10D12h30m30s", 365 * 86400 + 6 * 30 * 86400 + 10 * 86400 + 12 * 3600 + 30 * 60 + 30),
    ("24h", 86400), ("0s", 0), ("90m", 5400),
])
def test_parse_age(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1", "1x", "1h 2m", "-1h"])
def test_parse_age_garbage(text):
    with pytest.raises(UserError):
        parse_age(text)


def test_help_and_docs_generated_from_table():
    text = config.help_text()
    for o in OPTIONS:
        assert o.name in text and o.name in config.options_markdown()
        assert "\\fB%s\\fR" % o.name.replace("-", "\\-") in config.options_man()


def test_docs_options_md_is_up_to_date():
    current = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert current == config.options_markdown(), "regenerate: python -m ossfs.config --markdown > docs/options.md"
