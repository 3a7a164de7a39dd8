"""Where the access key comes from: ossfs 1.x passwd files and environment variables.

Owns the passwd file formats, the lookup order and the permission checks; reads files
and ``environ``, nothing else.  Contracts:

* :func:`resolve_credentials` returns :class:`Credentials` or raises
  :class:`~ossfs.errors.UserError` with one line naming the file (and line number) and
  the problem.  No message, log record or repr ever contains a secret or a line of a
  passwd file (a line holds the secret).
* Lookup order (first that is present wins): ``-o passwd_file=``; the environment
  (``OSS_ACCESS_KEY_ID``/``OSSACCESSKEYID`` with ``OSS_ACCESS_KEY_SECRET``/
  ``OSSSECRETACCESSKEY``, optional ``OSS_SESSION_TOKEN``/``OSSSESSIONTOKEN``);
  ``$OSS_CREDENTIAL_FILE``; ``$HOME/.passwd-ossfs``; ``/etc/passwd-ossfs``.
  A file named explicitly (option or ``OSS_CREDENTIAL_FILE``) must exist.
* File format, one entry a line: ``AKID:SECRET`` (any bucket) or
  ``BUCKET:AKID:SECRET`` (split on the first and the last ``:``), or the pair
  ``OSSAccessKeyId=...`` / ``OSSSecretKey=...`` (a default entry).  ``#`` comments and
  blank lines are skipped.  Errors: whitespace inside a line, a line starting with
  ``[`` (an ini-style file), two entries for one bucket (or two default entries), an
  empty field.  The entry for the mounted bucket wins over the default entry.
* Permission checks (as ossfs 1.x, plus ownership): a regular file; no permission
  bits for others; no execute bits; no group bits, except that ``/etc/passwd-ossfs``
  may be group-readable (0640).  Decision: the file must also be owned by the user
  running ossfs or by root, since anyone who can rewrite it can redirect the mount to
  a bucket of theirs; 1.x does not check this.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .errors import UserError

log = logging.getLogger(__name__)

ETC_PASSWD = "/etc/passwd-ossfs"
HOME_PASSWD = ".passwd-ossfs"

_ENV_ID = ("OSS_ACCESS_KEY_ID", "OSSACCESSKEYID")
_ENV_SECRET = ("OSS_ACCESS_KEY_SECRET", "OSSSECRETACCESSKEY")
_ENV_TOKEN = ("OSS_SESSION_TOKEN", "OSSSESSIONTOKEN")
_KV_ID, _KV_SECRET = "OSSAccessKeyId", "OSSSecretKey"


@dataclass(frozen=True)
class Credentials:
    """An access key; the secret and the token never appear in its repr."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    session_token: str = field(default="", repr=False)
    source: str = ""  # the file or "environment" they came from, for log lines

    def __repr__(self) -> str:
        return "Credentials(access_key_id=%r, access_key_secret='***'%s, source=%r)" % (
            self.access_key_id, ", session_token='***'" if self.session_token else "", self.source)

    __str__ = __repr__


def _first(environ: Mapping[str, str], names: tuple) -> tuple:
    for name in names:
        if environ.get(name):
            return name, environ[name]
    return None, ""


def check_permissions(path: str, *, allow_group_read: bool = False, euid: Optional[int] = None) -> None:
    """Raise UserError if ``path`` is not a private regular file of this user (or root)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UserError("cannot read passwd file %s: %s" % (path, exc.strerror or exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError("passwd file %s is not a regular file" % path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o111:
        raise UserError("passwd file %s must not be executable (chmod 600 %s)" % (path, path))
    if mode & 0o007:
        raise UserError("passwd file %s must not be accessible by others (chmod 600 %s)" % (path, path))
    group_allowed = 0o040 if allow_group_read else 0
    if mode & 0o070 & ~group_allowed:
        hint = "640" if allow_group_read else "600"
        raise UserError("passwd file %s must not be %s by its group (chmod %s %s)"
                        % (path, "writable" if allow_group_read else "accessible", hint, path))
    euid = os.geteuid() if euid is None else euid
    if st.st_uid not in (euid, 0):
        raise UserError("passwd file %s is owned by uid %d, not by you or root" % (path, st.st_uid))


def parse_passwd(text: str, path: str) -> dict:
    """Entries of a passwd file: ``{bucket or "": (akid, secret)}``.  ``path`` names
    the file in error messages."""
    entries: dict = {}
    kv: dict = {}
    kv_line = 0

    def add(bucket: str, akid: str, secret: str, lineno: int) -> None:
        if not akid or not secret:
            raise UserError("passwd file %s line %d: empty access key id or secret" % (path, lineno))
        if bucket in entries:
            what = "bucket '%s'" % bucket if bucket else "all buckets (no bucket name)"
            raise UserError("passwd file %s line %d: a second entry for %s" % (path, lineno, what))
        entries[bucket] = (akid, secret)

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            raise UserError("passwd file %s line %d: sections ('[...]') are not supported; write "
                            "AKID:SECRET or BUCKET:AKID:SECRET" % (path, lineno))
        if any(ch.isspace() for ch in line):
            raise UserError("passwd file %s line %d: whitespace inside the line" % (path, lineno))
        if ":" in line:
            first, last = line.index(":"), line.rindex(":")
            if first == last:
                add("", line[:first], line[first + 1:], lineno)
            else:
                add(line[:first], line[first + 1:last], line[last + 1:], lineno)
        elif "=" in line:
            key, _, value = line.partition("=")
            if key not in (_KV_ID, _KV_SECRET):
                raise UserError("passwd file %s line %d: unknown key (expected %s= or %s=)"
                                % (path, lineno, _KV_ID, _KV_SECRET))
            if key in kv:
                raise UserError("passwd file %s line %d: %s given twice" % (path, lineno, key))
            kv[key] = value
            kv_line = lineno
        else:
            raise UserError("passwd file %s line %d: expected AKID:SECRET, BUCKET:AKID:SECRET or "
                            "%s=/%s= lines" % (path, lineno, _KV_ID, _KV_SECRET))
    if kv:
        if len(kv) != 2:
            missing = _KV_SECRET if _KV_ID in kv else _KV_ID
            raise UserError("passwd file %s: %s= is missing" % (path, missing))
        add("", kv[_KV_ID], kv[_KV_SECRET], kv_line)
    return entries


def read_passwd_file(path: str, bucket: str, *, allow_group_read: bool = False,
                     euid: Optional[int] = None) -> Credentials:
    """Check and read one passwd file; the entry for ``bucket`` wins over the default."""
    check_permissions(path, allow_group_read=allow_group_read, euid=euid)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UserError("cannot read passwd file %s: %s" % (path, reason)) from None
    entries = parse_passwd(text, path)
    entry = entries.get(bucket) if bucket else None
    if entry is None:
        entry = entries.get("")
    if entry is None:
        if not entries:
            raise UserError("passwd file %s holds no access key" % path)
        raise UserError("passwd file %s has no entry for bucket '%s' and no default entry" % (path, bucket))
    return Credentials(entry[0], entry[1], "", path)


def resolve_credentials(config, environ: Mapping[str, str], *, home: Optional[str] = None,
                        etc_path: str = ETC_PASSWD, euid: Optional[int] = None) -> Credentials:
    """The credentials for ``config.bucket`` following the 1.x lookup order.

    ``home``, ``etc_path`` and ``euid`` exist so tests need not touch the real ones.
    """
    bucket = getattr(config, "bucket", "") or ""
    passwd_file = getattr(config, "passwd_file", "") or ""
    if passwd_file:
        return read_passwd_file(passwd_file, bucket, euid=euid)

    id_name, akid = _first(environ, _ENV_ID)
    secret_name, secret = _first(environ, _ENV_SECRET)
    if akid or secret:
        if not akid:
            raise UserError("%s is set but not %s" % (secret_name, _ENV_ID[0]))
        if not secret:
            raise UserError("%s is set but not %s" % (id_name, _ENV_SECRET[0]))
        return Credentials(akid, secret, _first(environ, _ENV_TOKEN)[1], "environment")

    named = environ.get("OSS_CREDENTIAL_FILE")
    if named:
        return read_passwd_file(named, bucket, euid=euid)

    home = home if home is not None else (environ.get("HOME") or os.path.expanduser("~"))
    candidates = [(os.path.join(home, HOME_PASSWD), False)] if home else []
    candidates.append((etc_path, True))
    for path, group_read in candidates:
        if os.path.lexists(path):
            return read_passwd_file(path, bucket, allow_group_read=group_read, euid=euid)
    raise UserError("no credentials: use -o passwd_file=FILE, OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET, "
                    "~/.passwd-ossfs or %s" % etc_path)
