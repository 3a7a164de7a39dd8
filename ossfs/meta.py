"""Pure codec between object headers and file attributes (no I/O, no state).

Owns the on-bucket format of file attributes, so that a bucket written by s3fs-fuse,
ossfs 1.x, rclone or gcsfuse-style tools mounts correctly with ossfs, and the other
way round.  Contracts:

* :func:`attr_from_info` reads **every** known form and never raises on garbage: a
  header that cannot be decoded is ignored (logged at debug) and the next fallback,
  then the mount's :class:`Defaults`, is used.
* :func:`meta_from_attr` writes only the canonical s3fs form (``mode``, ``uid``,
  ``gid``, ``mtime``, ``ctime``, ``atime``, plus ``xattr`` and ``symlink-target``
  when needed).  Meta dicts use the ``ObjectStore`` convention: the ``x-oss-meta-``
  prefix removed, lower-case names.
* Round trip: for every :class:`Attr` ``a`` whose type matches ``is_dir``,
  ``attr_from_info(info_with(meta_from_attr(a)), Defaults(umask=0), is_dir)`` gives
  ``a`` back (size and, for directories, the reported size excepted).

Decisions (documented here because users see them):

* **Mode**: ``mode`` is the decimal full ``st_mode``; fallbacks ``permissions``
  (decimal, older s3fs) then ``goog-reserved-posix-mode`` (octal).  A value without
  type bits gets them from the object kind.  The object kind wins over a mode that
  contradicts it: a directory object is always ``S_IFDIR``; a file object whose
  mode says directory is shown as a regular file (only the namespace decides what
  is a directory).  Symlinks, FIFOs, sockets and device nodes keep their type.
* **Objects without headers** (console or SDK uploads) get ``file_mode`` 0644 and
  ``dir_mode`` 0755 by default, not 1.x's 0640/0750: with 0640 such files look
  unreadable to every user but the mounting one, the most common complaint of 1.x
  users.  Both are options (``default_file_mode=``, ``default_dir_mode=``).
* **umask** (``-o umask=``) masks the permission bits of every entry, whatever its
  headers say, as s3fs and ossfs 1.x do; symlinks stay 0777.
* **uid=/gid=** given explicitly (``Defaults.force_uid``/``force_gid``) override the
  headers for every entry, as s3fs does; otherwise they only fill in missing ones.
* umask and forced owners change what the mount **shows**, never what it **writes**:
  :func:`attr_from_info` with :func:`stored_defaults` gives the attributes the headers
  hold, which a chmod, a chown or a rewrite changes and writes back, and
  :func:`shown_attr` turns them into what ``stat`` reports (a mount with ``umask=077``
  that touches a file must not make it 0600 for every other client).
* **Sizes**: directories report 4096 (like ext4 and s3fs), so tools that treat a
  zero-size entry as empty or special do not misbehave; files and symlinks report
  the object size (a symlink whose target lives in the headers reports the target's
  length in bytes, as POSIX requires).
* **Times** are integer nanoseconds.  The canonical text is ``"<sec>"`` when the
  nanoseconds are zero, else ``"<sec>.<9 digits>"`` where ``sec`` is the floor (the
  ``struct timespec`` form s3fs writes, so ``-1 ns`` is ``"-1.999999999"``).  Readers
  accept that form, plain decimals and floats with exponents (rclone).  Exactly nine
  fractional digits are read as a timespec (s3fs); anything else as a decimal value.
  Times beyond a signed 64-bit number of seconds are garbage.
* **xattrs**: ``xattr`` is the url-encoding (s3fs ``urlEncode``: everything but
  ``A-Za-z0-9/._-~`` as ``%XX``) of a compact JSON object ``{"name":"<base64>"}`` with
  sorted names.  Names are JSON-escaped (s3fs does not escape, so names containing
  ``"``, ``,`` or ``:`` are only readable by us).
* **symlink-target** (ossfs 1.x ``symlink_in_meta``): ``header:<len>:<urlencoded>``
  where ``len`` is the target's length in bytes.
"""
from __future__ import annotations

import base64
import binascii
import decimal
import json
import logging
import math
import re
import stat
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

from .store import ObjectInfo

log = logging.getLogger(__name__)

DIR_CONTENT_TYPE = "application/x-directory"
_DIR_CONTENT_TYPES = frozenset({"application/x-directory", "httpd/unix-directory"})

DIR_SIZE = 4096
NS = 1_000_000_000
_MAX_MODE = 0o177777
_MAX_ID = 2**32 - 2  # 2**32-1 is (uid_t)-1, "no change" in chown: never a real owner
_MAX_SEC = 2**63 - 1

# The type bits a mode may carry; anything else in S_IFMT is treated as "no type".
_VALID_TYPES = frozenset({stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO,
                          stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK})

_OCTAL = re.compile(r"[0-7]+")
_TIMESPEC = re.compile(r"(-?[0-9]+)\.([0-9]{9})")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_SYMLINK_PREFIX = "header:"


@dataclass
class Attr:
    """The attributes of one entry, as the filesystem core sees them."""

    mode: int  # full st_mode including the type bits
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    atime_ns: int
    xattrs: dict = field(default_factory=dict)  # name (str) -> value (bytes)
    symlink_target: Optional[str] = None  # only when carried in the symlink-target header


@dataclass(frozen=True)
class Defaults:
    """What an object without headers looks like, built from the mount options."""

    uid: int
    gid: int
    file_mode: int = 0o644
    dir_mode: int = 0o755
    umask: int = 0
    force_uid: bool = False  # uid= given: every entry shows this owner (s3fs behaviour)
    force_gid: bool = False


def is_dir_content_type(ct: Optional[str]) -> bool:
    """True for the content types tools use to mark directory objects."""
    if not ct:
        return False
    return ct.split(";", 1)[0].strip().lower() in _DIR_CONTENT_TYPES


# --- times ---

def format_time(ns: int) -> str:
    """Canonical header text for a time in nanoseconds (s3fs timespec form)."""
    sec, frac = divmod(int(ns), NS)
    if frac == 0:
        return str(sec)
    return "%d.%09d" % (sec, frac)


def is_decimal(s: str) -> bool:
    """``s`` is one or more ASCII digits (``str.isdigit`` alone also takes other
    scripts' digits and superscripts, which ``int`` refuses or reads differently)."""
    return s.isascii() and s.isdigit()


def parse_time(s: Optional[str]) -> Optional[int]:
    """Nanoseconds from header text, or None if it is not a time we can represent."""
    if s is None:
        return None
    s = s.strip()
    if is_decimal(s):
        ns = int(s) * NS  # whole seconds, as s3fs and ossfs 1.x write them: the common case
    elif (m := _TIMESPEC.fullmatch(s)):
        sec = int(m.group(1))
        ns = sec * NS + int(m.group(2))
    elif _DECIMAL.fullmatch(s):
        with decimal.localcontext() as ctx:
            ctx.prec = 80
            ctx.traps[decimal.Inexact] = False
            try:
                ns = int((decimal.Decimal(s) * NS).to_integral_value(rounding=decimal.ROUND_FLOOR))
            except (decimal.DecimalException, ValueError, OverflowError):
                return None
    else:
        return None
    if not (-_MAX_SEC - 1) * NS <= ns <= _MAX_SEC * NS + NS - 1:
        return None
    return ns


# --- xattrs ---

def encode_xattrs(x: Mapping[str, bytes]) -> Optional[str]:
    """The ``xattr`` header value for ``x``; None when there is nothing to store
    (the caller then removes the header)."""
    if not x:
        return None
    doc = {name: base64.b64encode(bytes(value)).decode("ascii") for name, value in x.items()}
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return urllib.parse.quote(text, safe="/")


def decode_xattrs(s: Optional[str]) -> dict:
    """xattrs from an ``xattr`` header; garbage gives ``{}`` (or skips the bad entry)."""
    if not s:
        return {}
    try:
        text = urllib.parse.unquote(s, errors="strict")
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        log.debug("ignoring undecodable xattr header: %s", exc)
        return {}
    if not isinstance(doc, dict):
        log.debug("ignoring xattr header that is not a JSON object")
        return {}
    out = {}
    for name, value in doc.items():
        if not isinstance(value, str) or not name:
            log.debug("ignoring xattr %r with a non-string value", name)
            continue
        try:
            out[name] = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            log.debug("ignoring xattr %r whose value is not base64", name)
    return out


# --- symlink target in headers ---

def encode_symlink_target(target: str) -> str:
    """``header:<len>:<urlencoded target>`` as ossfs 1.x writes it."""
    raw = target.encode("utf-8", "surrogateescape")
    return "%s%d:%s" % (_SYMLINK_PREFIX, len(raw), urllib.parse.quote_from_bytes(raw, safe="/"))


def decode_symlink_target(s: Optional[str]) -> Optional[str]:
    """The target from a ``symlink-target`` header, None when absent or garbage."""
    if not s or not s.startswith(_SYMLINK_PREFIX):
        return None
    length, sep, encoded = s[len(_SYMLINK_PREFIX):].partition(":")
    if not sep or not is_decimal(length):
        log.debug("ignoring malformed symlink-target header")
        return None
    raw = urllib.parse.unquote_to_bytes(encoded)
    if len(raw) != int(length):
        # The length guards against a header cut short; a target we cannot trust
        # is worse than none (the body is then used).
        log.debug("ignoring symlink-target header whose length does not match")
        return None
    return raw.decode("utf-8", "surrogateescape")


# --- field decoders: each returns None on absence or garbage ---

def _decimal_field(meta: Mapping[str, str], name: str, limit: int) -> Optional[int]:
    value = meta.get(name)
    if value is None:
        return None
    value = value.strip()
    if is_decimal(value):
        number = int(value)
        if number <= limit:
            return number
    log.debug("ignoring garbage %s header %r", name, value[:40])
    return None


def _octal_field(meta: Mapping[str, str], name: str, limit: int) -> Optional[int]:
    value = meta.get(name)
    if value is None:
        return None
    value = value.strip()
    if _OCTAL.fullmatch(value) and int(value, 8) <= limit:
        return int(value, 8)
    log.debug("ignoring garbage %s header %r", name, value[:40])
    return None


def _raw_mode(meta: Mapping[str, str]) -> Optional[int]:
    for name in ("mode", "permissions"):
        mode = _decimal_field(meta, name, _MAX_MODE)
        if mode is not None:
            return mode
    return _octal_field(meta, "goog-reserved-posix-mode", _MAX_MODE)


def _id(meta: Mapping[str, str], names: tuple, default: int) -> int:
    for name in names:
        value = _decimal_field(meta, name, _MAX_ID)
        if value is not None:
            return value
    return default


def _time(meta: Mapping[str, str], names: tuple) -> Optional[int]:
    for name in names:
        value = meta.get(name)
        if value is None:
            continue
        ns = parse_time(value)
        if ns is not None:
            return ns
        log.debug("ignoring garbage %s header %r", name, value[:40])
    return None


def _resolve_mode(raw: Optional[int], defaults: Defaults, is_dir: bool) -> int:
    if raw is None:
        perms = defaults.dir_mode if is_dir else defaults.file_mode
        ftype = 0
    else:
        perms = stat.S_IMODE(raw)
        ftype = stat.S_IFMT(raw)
    if ftype not in _VALID_TYPES:
        ftype = 0
    if is_dir:
        ftype = stat.S_IFDIR
    elif ftype in (0, stat.S_IFDIR):
        ftype = stat.S_IFREG
    if ftype == stat.S_IFLNK:
        return stat.S_IFLNK | 0o777
    return ftype | stat.S_IMODE(perms)


def stored_defaults(defaults: Defaults) -> Defaults:
    """``defaults`` without what only changes how entries are shown (umask, forced
    owners): decoding with it gives the attributes the headers hold."""
    return replace(defaults, umask=0, force_uid=False, force_gid=False)


def shown_attr(attr: Attr, defaults: Defaults) -> Attr:
    """What ``stat`` reports for the stored attributes ``attr``: the mount's umask
    masks the permission bits (symlinks stay 0777), forced owners replace the
    headers' (module docstring)."""
    mode = attr.mode
    if not stat.S_ISLNK(mode) and defaults.umask & stat.S_IMODE(mode):
        mode = stat.S_IFMT(mode) | (stat.S_IMODE(mode) & ~defaults.umask)
    if mode == attr.mode and not defaults.force_uid and not defaults.force_gid:
        return attr
    return replace(attr, mode=mode,
                   uid=defaults.uid if defaults.force_uid else attr.uid,
                   gid=defaults.gid if defaults.force_gid else attr.gid)


def implicit_dir_attr(defaults: Defaults, ns: int) -> Attr:
    """The stored attributes of a directory no object describes (a prefix with objects
    under it): the mount's default directory mode and owners, and time ``ns``."""
    return Attr(stat.S_IFDIR | (defaults.dir_mode & 0o7777), defaults.uid, defaults.gid, 4096, ns, ns, ns)


def attr_from_info(info: ObjectInfo, defaults: Defaults, is_dir: bool) -> Attr:
    """The attributes shown for the entry described by ``info`` (a HEAD result, or a
    LIST entry whose ``meta`` is None); with :func:`stored_defaults`, those the
    headers hold.  Never raises on malformed headers."""
    meta = info.meta or {}
    mode = _resolve_mode(_raw_mode(meta), defaults, is_dir)
    uid = _id(meta, ("uid", "owner", "goog-reserved-posix-uid"), defaults.uid)
    gid = _id(meta, ("gid", "group", "goog-reserved-posix-gid"), defaults.gid)

    mtime = _time(meta, ("mtime", "goog-reserved-file-mtime"))
    if mtime is None:
        lm = info.last_modified
        # A Last-Modified beyond what a time can hold is a broken server: show the epoch.
        mtime = int(round(lm * NS)) if math.isfinite(lm) and abs(lm) <= _MAX_SEC else 0
    ctime = _time(meta, ("ctime",))
    atime = _time(meta, ("atime",))

    symlink_target = decode_symlink_target(meta.get("symlink-target")) if stat.S_ISLNK(mode) else None
    if is_dir:
        size = DIR_SIZE
    elif symlink_target is not None:
        size = len(symlink_target.encode("utf-8", "surrogateescape"))
    else:
        size = max(0, int(info.size))

    return shown_attr(Attr(
        mode=mode,
        uid=uid,
        gid=gid,
        size=size,
        mtime_ns=mtime,
        ctime_ns=mtime if ctime is None else ctime,
        atime_ns=mtime if atime is None else atime,
        xattrs=decode_xattrs(meta.get("xattr")),
        symlink_target=symlink_target,
    ), defaults)


def meta_from_attr(attr: Attr, *, symlink_in_meta: bool = False) -> dict:
    """The canonical headers (without the ``x-oss-meta-`` prefix) for ``attr``.

    ``symlink-target`` is written only for symlinks with ``symlink_in_meta`` (the
    1.x option) and a known target; ``xattr`` only when there are xattrs.
    """
    meta = {
        "mode": str(attr.mode),
        "uid": str(attr.uid),
        "gid": str(attr.gid),
        "mtime": format_time(attr.mtime_ns),
        "ctime": format_time(attr.ctime_ns),
        "atime": format_time(attr.atime_ns),
    }
    xattr = encode_xattrs(attr.xattrs)
    if xattr is not None:
        meta["xattr"] = xattr
    if symlink_in_meta and stat.S_ISLNK(attr.mode) and attr.symlink_target is not None:
        meta["symlink-target"] = encode_symlink_target(attr.symlink_target)
    return meta
