"""Tests of passwd-file formats, permission checks and the credentials lookup order."""
import os
from types import SimpleNamespace

import pytest

from ossfs.credentials import Credentials, parse_passwd, resolve_credentials
from ossfs.errors import UserError

SECRET = "TopSecretValue123"
ME = os.geteuid()


def cfg(bucket="mybucket", passwd_file=""):
    return SimpleNamespace(bucket=bucket, passwd_file=passwd_file)


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def resolve(config, environ=None, tmp=None, **kw):
    kw.setdefault("home", str(tmp / "home") if tmp else "/nonexistent-home")
    kw.setdefault("etc_path", str(tmp / "etc-passwd-ossfs") if tmp else "/nonexistent-etc")
    kw.setdefault("euid", ME)
    return resolve_credentials(config, environ or {}, **kw)


def fails(fn, *args, **kw):
    with pytest.raises(UserError) as exc:
        fn(*args, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and SECRET not in msg
    return msg


@pytest.mark.parametrize("text,bucket,expected", [
    ("AKID:%s\n" % SECRET, "mybucket", ("AKID", SECRET)),
    ("mybucket:AKID:%s\n" % SECRET, "mybucket", ("AKID", SECRET)),
    ("AKID:dflt\nmybucket:BKID:%s\n" % SECRET, "mybucket", ("BKID", SECRET)),   # bucket entry wins
    ("mybucket:BKID:%s\nAKID:dflt\n" % SECRET, "mybucket", ("BKID", SECRET)),
    ("AKID:dflt\nother:BKID:%s\n" % SECRET, "mybucket", ("AKID", "dflt")),
    ("mybucket:AKID:sec:ret\n", "mybucket", None),  # split on first and last ':'
    ("# comment\n\n   \n  # indented comment\nAKID:%s\r\n" % SECRET, "mybucket", ("AKID", SECRET)),
    ("OSSAccessKeyId=AKID\nOSSSecretKey=%s\n" % SECRET, "mybucket", ("AKID", SECRET)),
    ("OSSAccessKeyId=AKID\nOSSSecretKey=a=b\n", "mybucket", ("AKID", "a=b")),
    ("AKID:sec=ret\n", "mybucket", ("AKID", "sec=ret")),
])
def test_formats(tmp_path, text, bucket, expected):
    path = write(tmp_path / "p", text)
    if expected is None:  # "mybucket:AKID:sec:ret" -> bucket "mybucket", id "AKID:sec", secret "ret"
        assert parse_passwd(text, path) == {"mybucket": ("AKID:sec", "ret")}
        return
    c = resolve(cfg(bucket, path))
    assert (c.access_key_id, c.access_key_secret, c.source) == (expected + (path,))


@pytest.mark.parametrize("text,expected", [
    ("AKID: %s\n" % SECRET, "line 1: whitespace inside the line"),
    ("AKID:%s \n" % SECRET, "line 1: whitespace inside the line"),
    ("\tAKID:%s\n" % SECRET, "line 1: whitespace inside the line"),
    ("# c\n[default]\nAKID:%s\n" % SECRET, "line 2: sections ('[...]') are not supported"),
    ("a:%s\nb:%s\n" % (SECRET, SECRET), "line 2: a second entry for all buckets"),
    ("mybucket:a:%s\nmybucket:b:%s\n" % (SECRET, SECRET), "line 2: a second entry for bucket 'mybucket'"),
    ("AKID:x\nOSSAccessKeyId=a\nOSSSecretKey=%s\n" % SECRET, "a second entry for all buckets"),
    (":%s\n" % SECRET, "line 1: empty access key id or secret"),
    ("AKID:\n", "line 1: empty access key id or secret"),
    ("mybucket::%s\n" % SECRET, "line 1: empty access key id or secret"),
    ("justonevalue%s\n" % SECRET, "line 1: expected AKID:SECRET"),
    ("Foo=%s\n" % SECRET, "line 1: unknown key"),
    ("OSSAccessKeyId=a\n", "OSSSecretKey= is missing"),
    ("OSSSecretKey=%s\n" % SECRET, "OSSAccessKeyId= is missing"),
    ("OSSSecretKey=%s\nOSSSecretKey=%s\n" % (SECRET, SECRET), "line 2: OSSSecretKey given twice"),
    ("# only a comment\n", "holds no access key"),
    ("other:AKID:%s\n" % SECRET, "has no entry for bucket 'mybucket' and no default entry"),
])
def test_format_errors(tmp_path, text, expected):
    path = write(tmp_path / "p", text)
    msg = fails(resolve, cfg("mybucket", path))
    assert msg.startswith("passwd file %s" % path) and expected in msg


@pytest.mark.parametrize("mode,ok", [
    (0o600, True), (0o400, True), (0o640, False), (0o604, False), (0o660, False), (0o700, False),
    (0o610, False), (0o601, False), (0o644, False),
])
def test_permissions_of_user_files(tmp_path, mode, ok):
    path = write(tmp_path / "p", "AKID:%s\n" % SECRET, mode)
    if ok:
        assert resolve(cfg(passwd_file=path)).access_key_id == "AKID"
    else:
        msg = fails(resolve, cfg(passwd_file=path))
        assert msg.startswith("passwd file %s must not be" % path)


@pytest.mark.parametrize("mode,ok", [(0o600, True), (0o640, True), (0o660, False), (0o644, False),
                                     (0o650, False)])
def test_permissions_of_etc_file(tmp_path, mode, ok):
    etc = write(tmp_path / "etc-passwd-ossfs", "AKID:%s\n" % SECRET, mode)
    if ok:
        assert resolve(cfg(), tmp=tmp_path).source == etc
    else:
        assert "must not be" in fails(resolve, cfg(), tmp=tmp_path)


def test_not_a_regular_file_and_owner(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    assert fails(resolve, cfg(passwd_file=str(d))) == "passwd file %s is not a regular file" % d
    path = write(tmp_path / "p", "AKID:%s\n" % SECRET)
    if ME == 0:
        # a file owned by root is trusted by every user...
        assert resolve(cfg(passwd_file=path), euid=12345).access_key_id == "AKID"
        # ...one owned by somebody else is not
        os.chown(path, 12345, -1)
        owner, euid = 12345, 0
    else:
        owner, euid = ME, ME + 1
    msg = fails(resolve, cfg(passwd_file=path), euid=euid)
    assert msg == "passwd file %s is owned by uid %d, not by you or root" % (path, owner)


def test_missing_named_files(tmp_path):
    missing = str(tmp_path / "nope")
    assert "cannot read passwd file %s" % missing in fails(resolve, cfg(passwd_file=missing))
    assert "cannot read passwd file %s" % missing in fails(
        resolve, cfg(), {"OSS_CREDENTIAL_FILE": missing}, tmp_path)


def test_lookup_order(tmp_path):
    (tmp_path / "home").mkdir()
    opt = write(tmp_path / "opt", "OPT:s1\n")
    named = write(tmp_path / "named", "NAMED:s3\n")
    home = write(tmp_path / "home" / ".passwd-ossfs", "HOME:s4\n")
    etc = write(tmp_path / "etc-passwd-ossfs", "ETC:s5\n", 0o640)
    env = {"OSS_ACCESS_KEY_ID": "ENV", "OSS_ACCESS_KEY_SECRET": "s2", "OSS_CREDENTIAL_FILE": named}

    assert resolve(cfg(passwd_file=opt), env, tmp_path).access_key_id == "OPT"
    assert resolve(cfg(), env, tmp_path).access_key_id == "ENV"
    del env["OSS_ACCESS_KEY_ID"], env["OSS_ACCESS_KEY_SECRET"]
    assert resolve(cfg(), env, tmp_path).access_key_id == "NAMED"
    del env["OSS_CREDENTIAL_FILE"]
    assert resolve(cfg(), env, tmp_path).source == home
    os.unlink(home)
    assert resolve(cfg(), env, tmp_path).source == etc
    os.unlink(etc)
    assert fails(resolve, cfg(), env, tmp_path).startswith("no credentials:")


def test_home_from_environ(tmp_path):
    path = write(tmp_path / ".passwd-ossfs", "AKID:%s\n" % SECRET)
    c = resolve_credentials(cfg(), {"HOME": str(tmp_path)}, etc_path="/nonexistent", euid=ME)
    assert c.source == path


@pytest.mark.parametrize("env,expected", [
    ({"OSS_ACCESS_KEY_ID": "A", "OSS_ACCESS_KEY_SECRET": SECRET}, ("A", SECRET, "")),
    ({"OSSACCESSKEYID": "A", "OSSSECRETACCESSKEY": SECRET, "OSSSESSIONTOKEN": "T"}, ("A", SECRET, "T")),
    ({"OSS_ACCESS_KEY_ID": "A", "OSS_ACCESS_KEY_SECRET": SECRET, "OSS_SESSION_TOKEN": "T"}, ("A", SECRET, "T")),
])
def test_environment(env, expected):
    c = resolve(cfg(), env)
    assert (c.access_key_id, c.access_key_secret, c.session_token) == expected
    assert c.source == "environment"


@pytest.mark.parametrize("env,expected", [
    ({"OSS_ACCESS_KEY_ID": "A"}, "OSS_ACCESS_KEY_ID is set but not OSS_ACCESS_KEY_SECRET"),
    ({"OSSSECRETACCESSKEY": SECRET}, "OSSSECRETACCESSKEY is set but not OSS_ACCESS_KEY_ID"),
])
def test_environment_incomplete(env, expected):
    assert fails(resolve, cfg(), env) == expected


def test_repr_hides_secrets():
    c = Credentials("AKID", SECRET, "TOKEN123", "environment")
    assert SECRET not in repr(c) and "TOKEN123" not in repr(c) and SECRET not in str(c)
    assert "AKID" in repr(c) and "***" in repr(c)
