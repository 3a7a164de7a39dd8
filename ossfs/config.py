"""The options of ossfs: ONE table that builds the parser, ``--help``, the README
table (``docs/options.md``) and the man page entries.

Owns the command line grammar and option validation; pure (reads a config file when
asked, nothing else).  Contracts:

* :func:`parse_args` returns a :class:`Config` or raises :class:`~ossfs.errors.UserError`
  with one line naming the bad option and the rule it breaks.
* Every option name of ossfs 1.x is in :data:`OPTIONS` with one of three statuses:
  ``implemented``; ``ignored-with-warning`` (harmless to ignore: a one-line warning is
  added to ``Config.warnings``); ``refused`` (ignoring it would surprise the user, so
  the mount fails with one line naming it).
* fstab noise (``_netdev``, ``nofail``, ``x-*`` ...) is accepted silently; any other
  unknown option is an error naming it.
* Precedence: command line (``-o``) > environment (``OSSFS_<NAME>``, e.g.
  ``OSSFS_STAT_CACHE_EXPIRE=60``) > config file (``--config FILE`` or ``-o config=FILE``
  or ``OSSFS_CONFIG``; ``name = value`` lines, a bare ``name`` sets a flag, ``#``
  comments; parsed with configargparse's config-file parser) > defaults.  Config files
  and the environment take canonical names and aliases (``use_xattr``); negative
  forms (``noxattr``) are for ``-o`` only, elsewhere write ``xattr = false``.
  Unknown ``OSSFS_*`` variables are ignored (they may belong to something else);
  unknown keys in a config file are errors.
* ``Config`` never holds a secret; its repr is safe to log.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import configargparse

from . import __version__
from .errors import UserError

log = logging.getLogger(__name__)

IMPLEMENTED = "implemented"
IGNORED = "ignored-with-warning"
REFUSED = "refused"

MB = 1024 * 1024
DEFAULT_MPU_ABORT_AGE = 24 * 3600

# Options mount(8), mount.fuse and fstab hand us that mean nothing to a FUSE mount.
FSTAB_NOISE = frozenset("""auto noauto user nouser users _netdev nofail rw dev nodev suid nosuid
    exec noexec async sync atime noatime relatime strictatime nodiratime diratime defaults
    comment""".split())

_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One ``-o`` option.  ``kind``: flag | int | octal | float | size_mb | str | choice."""

    name: str
    kind: str
    default: Any
    help: str
    status: str = IMPLEMENTED
    aliases: tuple = ()
    negations: tuple = ()  # -o names that set a flag to False (noxattr, disable_noobj_cache)
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    fuse: bool = False  # handed to FUSE (Config.fuse_options) when set

    def parse(self, raw: str) -> Any:
        """Convert a raw value; raises ValueError with the rule when it is malformed."""
        raw = raw.strip()
        if self.kind == "flag":
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected no value or one of 1/0/true/false")
        if self.kind in ("int", "size_mb"):
            if not re.fullmatch(r"[+-]?[0-9]+", raw):
                raise ValueError("expected an integer" + (" (MB)" if self.kind == "size_mb" else ""))
            value = int(raw)
        elif self.kind == "octal":
            if not re.fullmatch(r"[0-7]+", raw):
                raise ValueError("expected an octal number like 022")
            value = int(raw, 8)
            if self.maximum is not None and value > self.maximum:
                raise ValueError("must be at most %o" % self.maximum)
            return value
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
            if value != value:
                raise ValueError("expected a number")
        elif self.kind == "choice":
            if raw not in self.choices:
                raise ValueError("expected one of " + "|".join(self.choices))
            return raw
        else:
            if not raw and self.default not in ("", None):
                raise ValueError("expected a value")
            return raw
        if self.minimum is not None and value < self.minimum:
            raise ValueError("must be at least %s" % _num(self.minimum))
        if self.maximum is not None and value > self.maximum:
            raise ValueError("must be at most %s" % _num(self.maximum))
        return value

    def metavar(self) -> str:
        return {"flag": "", "int": "=N", "octal": "=OCT", "float": "=SEC", "size_mb": "=MB",
                "choice": "=" + "|".join(self.choices)}.get(self.kind, "=VALUE")

    def default_text(self) -> str:
        if self.kind == "flag":
            return "on" if self.default else "off"
        if self.default is None or self.default == "":
            return "-"
        if self.kind == "octal":
            return "%04o" % self.default
        return str(self.default)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _o(name, kind, default, help, status=IMPLEMENTED, **kw) -> Option:
    return Option(name, kind, default, help, status, **kw)


_NOT_ON_OSS = "a workaround for S3 look-alikes; OSS supports the API, so ossfs always uses it"

OPTIONS: list = [
    # --- where and who ---
    _o("bucket", "str", "", "Bucket to mount (instead of the BUCKET argument)."),
    _o("url", "str", "http://oss-cn-hangzhou.aliyuncs.com",
       "OSS endpoint; without a scheme, http:// is assumed.", aliases=("host",)),
    _o("endpoint", "str", "", "Region of the bucket (cn-hangzhou), used by signature V4.",
       aliases=("region",)),
    _o("passwd_file", "str", "", "Credentials file (see CREDENTIALS); first in the lookup order."),
    _o("ram_role", "str", "", "ECS RAM role credentials are not supported: use a passwd file or "
       "OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET/OSS_SESSION_TOKEN.", REFUSED),
    _o("sigv1", "flag", False, "Sign requests with OSS signature V1 (the default)."),
    _o("sigv4", "flag", False, "Sign requests with OSS signature V4; the region comes from endpoint=/region= "
       "or from a url like oss-cn-hangzhou.aliyuncs.com."),
    _o("use_path_request_style", "flag", False,
       "Address the bucket in the path (http://host/bucket/key) instead of the host name."),
    _o("default_acl", "choice", "", "ACL sent with every upload (x-oss-object-acl); "
       "default: inherit the bucket's.", choices=("private", "public-read", "public-read-write", "default")),
    _o("storage_class", "choice", "", "Storage class of new objects; default: the bucket's.",
       choices=("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")),
    _o("use_sse", "str", "", "Server-side encryption is not supported; ignoring it would store "
       "data unencrypted.", REFUSED),
    # --- ownership and permissions ---
    _o("uid", "int", None, "Owner of every entry (default: headers, else the mounting user).",
       minimum=0, maximum=2**32 - 2),
    _o("gid", "int", None, "Group of every entry (default: headers, else the mounting user's).",
       minimum=0, maximum=2**32 - 2),
    _o("umask", "octal", 0, "Bits removed from the permissions of every entry.", maximum=0o777),
    _o("mp_umask", "octal", 0, "Bits removed from the permissions of the mountpoint.", maximum=0o777),
    _o("default_file_mode", "octal", 0o644, "Permissions of files without mode headers (console or "
       "SDK uploads); 1.x used 0640, which made them unreadable to other users.", maximum=0o7777),
    _o("default_dir_mode", "octal", 0o755, "Permissions of directories without mode headers; "
       "1.x used 0750.", maximum=0o7777),
    _o("xattr", "flag", True, "Extended attributes stored in the x-oss-meta-xattr header "
       "(s3fs format). On by default (off in 1.x).", aliases=("use_xattr",), negations=("noxattr",)),
    _o("symlink_in_meta", "flag", False, "Also store symlink targets in the x-oss-meta-symlink-target "
       "header, as ossfs 1.x does with this option."),
    # --- network ---
    _o("retries", "int", 5, "Attempts for a failed request (backoff with jitter).", minimum=0, maximum=100),
    _o("connect_timeout", "int", 300, "Seconds to wait for a connection.", minimum=1),
    _o("readwrite_timeout", "int", 120, "Seconds to wait for data on a connection.", minimum=1),
    _o("list_object_max_keys", "int", 1000, "Keys per LIST request.", minimum=1, maximum=1000),
    _o("multireq_max", "int", 20, "Parallel HEAD requests when listing a directory.", minimum=1,
       maximum=1000),
    _o("parallel_count", "int", 5, "Parts uploaded or downloaded in parallel per file.", minimum=1,
       maximum=1000),
    _o("multipart_size", "size_mb", 10, "Part size for multipart uploads (MB, 5 to 5120).",
       minimum=5, maximum=5120),
    _o("multipart_threshold", "size_mb", 25, "Files from this size (MB) upload in parts.", minimum=5),
    _o("multipart_copy_size", "size_mb", 512, "Part size for server-side copies (MB).", minimum=5,
       maximum=5120),
    _o("singlepart_copy_limit", "size_mb", 512, "Objects larger than this (MB) are copied in parts.",
       minimum=0, maximum=1024),
    _o("nomultipart", "flag", False, "Never upload in parts (files are limited to 5 GB)."),
    _o("nocopyapi", "flag", False, "Ignored: " + _NOT_ON_OSS + ".", IGNORED),
    _o("norenameapi", "flag", False, "Ignored: " + _NOT_ON_OSS + ".", IGNORED),
    _o("enable_content_md5", "flag", False, "Ignored: ossfs always sends Content-MD5.", IGNORED),
    _o("listobjectsv2", "flag", False, "Ignored: the listing API version makes no difference to "
       "what you see.", IGNORED),
    _o("curldbg", "flag", False, "Ignored: use -d -d for request logs.", IGNORED),
    # --- caches ---
    _o("tmpdir", "str", "/tmp", "Directory for staged files when use_cache is not given."),
    _o("use_cache", "str", "", "Directory for the local cache of file contents (kept across mounts)."),
    _o("cache_size_mb", "int", 10240, "Largest size of the local cache (MB); clean files are "
       "evicted beyond it.", minimum=1),
    _o("del_cache", "flag", False, "Delete the cache directory when mounting and unmounting."),
    _o("check_cache_dir_exist", "flag", False, "Refuse to mount when the use_cache= directory does not "
       "exist (instead of creating it), as in ossfs 1.x."),
    _o("ensure_diskfree", "int", 0, "Keep this much disk space free (MB) in the cache directory.",
       minimum=0),
    _o("free_space_ratio", "int", 10, "Keep this percentage of the cache disk free.", minimum=0,
       maximum=100),
    _o("max_dirty_data", "int", 5120, "Upload a file being written once it holds this much unsent "
       "data (MB); -1: only on flush.", minimum=-1),
    _o("max_stat_cache_size", "int", 100000, "Entries in the attribute cache.", minimum=0),
    _o("stat_cache_expire", "int", 900, "Seconds an attribute stays cached; -1: forever.", minimum=-1),
    _o("neg_cache", "flag", True, "Remember for stat_cache_expire that a name does not exist.",
       negations=("disable_noobj_cache", "noneg_cache")),
    _o("readdir_optimize", "flag", False, "Ignored: listings never HEAD objects whose attributes "
       "are cached.", IGNORED),
    _o("complement_stat", "flag", False, "Ignored: entries without mode headers always get "
       "default_file_mode/default_dir_mode.", IGNORED),
    _o("notsup_compat_dir", "flag", False, "Ignored: directories of other tools (name_$folder$, "
       "implicit) are always recognised.", IGNORED),
    _o("mime", "str", "/etc/mime.types", "File mapping extensions to Content-Type of new objects."),
    # --- logging ---
    _o("logfile", "str", "", "Write logs to this file instead of syslog/stderr."),
    _o("dbglevel", "choice", "crit", "Log level.", choices=("crit", "err", "warn", "info", "dbg")),
    # --- mount behaviour and FUSE ---
    _o("nonempty", "flag", False, "Allow mounting over a non-empty directory."),
    _o("ro", "flag", False, "Read-only mount.", fuse=True),
    _o("allow_other", "flag", False, "Let other users access the mount (needs user_allow_other "
       "in /etc/fuse.conf for non-root).", fuse=True),
    _o("allow_root", "flag", False, "Let root access the mount.", fuse=True),
    _o("default_permissions", "flag", False, "Let the kernel check permissions against the "
       "mode/uid/gid shown.", fuse=True),
    _o("auto_unmount", "flag", False, "Unmount when the ossfs process dies.", fuse=True),
    _o("kernel_cache", "flag", False, "Keep file contents in the page cache across opens, also when size and mtime changed (an open that finds another ETag still drops them).", fuse=True),
    _o("direct_io", "flag", False, "Bypass the page cache.", fuse=True),
    _o("max_read", "int", 0, "Largest read request from the kernel (bytes, 4096 to 1048576; 0: 1 MiB).",
       minimum=0, maximum=1 << 20, fuse=True),
    _o("max_write", "int", 0, "Largest write request from the kernel (bytes, 4096 to 1048576; 0: 1 MiB).",
       minimum=0, maximum=1 << 20, fuse=True),
    _o("attr_timeout", "float", 1.0, "Seconds the kernel caches attributes.", minimum=0, fuse=True),
    _o("entry_timeout", "float", 1.0, "Seconds the kernel caches names.", minimum=0, fuse=True),
    _o("negative_timeout", "float", 0.0, "Seconds the kernel caches missing names.", minimum=0,
       fuse=True),
    _o("fsname", "str", "", "Source shown by mount(8) (default: ossfs#BUCKET).", fuse=True),
    _o("big_writes", "flag", False, "Ignored: always on with FUSE 3.", IGNORED),
    _o("large_read", "flag", False, "Ignored: obsolete with FUSE 3.", IGNORED),
    _o("config", "str", "", "Read options from this file (name = value lines)."),
]

BY_NAME: dict = {o.name: o for o in OPTIONS}
_LOOKUP: dict = {}  # -o name -> (Option, forced value or None)
for _opt in OPTIONS:
    _LOOKUP[_opt.name] = (_opt, None)
    for _a in _opt.aliases:
        _LOOKUP[_a] = (_opt, None)
    for _n in _opt.negations:
        _LOOKUP[_n] = (_opt, False)

_EXTRA_FIELDS = [
    ("prefix", str, ""),
    ("mountpoint", str, ""),
    ("foreground", bool, False),
    ("debug", int, 0),
    ("single_thread", bool, False),
    ("action", str, "mount"),
    ("mpu_abort_age", Optional[int], DEFAULT_MPU_ABORT_AGE),
    ("fuse_options", dict, None),
    ("warnings", list, None),
    ("explicit", frozenset, frozenset()),  # option names the user set (any source)
]

Config = dataclasses.make_dataclass(
    "Config",
    [(o.name, Any, field(default=o.default)) for o in OPTIONS]
    + [(n, t, field(default_factory=(dict if t is dict else list)) if d is None else field(default=d))
       for n, t, d in _EXTRA_FIELDS],
    namespace={"__doc__": "Everything the command line, the environment and the config file said."
                          "  One attribute per option of OPTIONS, plus the mount arguments."},
)
Config.__module__ = __name__


# --- value sources ---

def _resolve(name: str, raw: Optional[str], where: str):
    """(Option, parsed value) for one ``name[=raw]``, None for fstab noise."""
    if name in FSTAB_NOISE or name.startswith("x-"):
        return None
    if name not in _LOOKUP:
        raise UserError("unknown option '%s'%s" % (name, where))
    opt, forced = _LOOKUP[name]
    if forced is not None:
        if raw is not None:
            raise UserError("option '%s'%s takes no value" % (name, where))
        return opt, forced
    if opt.status == REFUSED:
        raise UserError("option '%s' is not supported: %s" % (name, opt.help))
    if raw is None:
        if opt.kind != "flag":
            raise UserError("option '%s'%s needs a value (%s%s)" % (name, where, name, opt.metavar()))
        raw = ""
    try:
        return opt, opt.parse(raw)
    except ValueError as exc:
        raise UserError("option '%s'%s: %s, got '%s'" % (name, where, exc, raw)) from None


def _split_o(text: str) -> list:
    """``a,b=c`` -> [(a, None), (b, "c")]; a backslash escapes a comma like libfuse."""
    items, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur))
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        out.append((name.strip(), value if sep else None))
    return out


def _read_config_file(path: str) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UserError("cannot read config file %s: %s" % (path, exc.strerror or exc)) from None
    except UnicodeDecodeError as exc:
        raise UserError("config file %s is not UTF-8 text (byte %d)" % (path, exc.start)) from None
    try:
        items = configargparse.DefaultConfigFileParser().parse(io.StringIO(text))
    except configargparse.ConfigFileParserException as exc:
        raise UserError("config file %s: %s" % (path, exc)) from None
    out = []
    for key, value in items.items():
        if isinstance(value, list):
            raise UserError("config file %s: option '%s' takes one value, not a list" % (path, key))
        if key in _LOOKUP and _LOOKUP[key][1] is not None:
            raise UserError("config file %s: write '%s = false' instead of '%s'"
                            % (path, _LOOKUP[key][0].name, key))
        opt = _LOOKUP.get(key, (None,))[0]
        if opt is not None and opt.kind == "flag" and value == "true":
            value = ""
        out.append((key, value))
    return out


# --- argument grammar ---

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_AGE_RE = re.compile(r"([0-9]+)([YMDhms])")
_AGE_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def parse_age(text: str) -> int:
    """Seconds in an age like ``1Y6M10D12h30m30s`` (a year is 365 days, a month 30)."""
    pos, total = 0, 0
    for m in _AGE_RE.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _AGE_UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise UserError("--incomplete-mpu-abort: bad age '%s': expected 'all' or like 1Y6M10D12h30m30s"
                        % text)
    return total


def check_bucket(name: str) -> str:
    if "://" in name:
        raise UserError("bucket name '%s' contains '://': give the endpoint with -o url=" % name)
    if not _BUCKET_RE.fullmatch(name):
        raise UserError("invalid bucket name '%s': 3 to 63 lowercase letters, digits and hyphens, "
                        "not starting or ending with a hyphen" % name)
    return name


def normalize_prefix(prefix: str) -> str:
    """``/a/b`` -> ``a/b/``; refuses ``..``, ``.`` and empty components."""
    stripped = prefix[1:] if prefix.startswith("/") else prefix
    if stripped.endswith("/"):
        stripped = stripped[:-1]
    if not stripped:
        return ""
    parts = stripped.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UserError("invalid path '%s' after the bucket name: no empty, '.' or '..' components"
                        % prefix)
    return stripped + "/"


def normalize_url(url: str) -> str:
    url = url.strip()
    if url and "://" not in url:
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise UserError("url '%s' has an unsupported scheme '%s': use http:// or https://" % (url, scheme))
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise UserError("url '%s' is not a valid URL (%s)" % (url, exc)) from None
    if not parts.hostname:
        raise UserError("url '%s' has no host name" % url)
    return url.rstrip("/")


USAGE = """\
usage: ossfs BUCKET[:/PREFIX] MOUNTPOINT [-o OPTION[,OPTION=VALUE]...] [-f] [-d [-d]] [-s]
       ossfs MOUNTPOINT -o bucket=BUCKET [-o ...]
       ossfs --incomplete-mpu-list BUCKET [-o url=...,passwd_file=...]
       ossfs --incomplete-mpu-abort[=all|=AGE] BUCKET [-o ...]   (AGE like 1Y6M10D12h30m30s, default 24h)
       ossfs status MOUNTPOINT        (dirty files and upload progress of a mount)
       ossfs -h | --help | --version
"""


def help_text() -> str:
    lines = ["ossfs %s: mount an Aliyun OSS bucket as a local directory" % __version__, "", USAGE,
             "general:",
             "  -f                 stay in the foreground",
             "  -d                 debug logs; twice: FUSE debug too",
             "  -s                 single-threaded",
             "  --config FILE      read options from FILE",
             "",
             "Options come from -o, then OSSFS_<NAME> variables, then the config file, then the",
             "defaults below (in that order of precedence).",
             "", "options (-o):"]
    for o in OPTIONS:
        names = ", ".join([o.name + o.metavar()] + list(o.aliases) + list(o.negations))
        tag = "" if o.status == IMPLEMENTED else " [%s]" % o.status
        lines.append("  %s" % names)
        lines.append("      %s (default: %s)%s" % (o.help, o.default_text(), tag))
    lines.append("")
    lines.append("fstab options accepted and ignored: %s, x-*" % ", ".join(sorted(FSTAB_NOISE)))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def options_markdown() -> str:
    """The options as a markdown table (docs/options.md, README)."""
    out = ["<!-- generated by `python -m ossfs.config --markdown`; do not edit -->",
           "# ossfs options", "",
           "Given as `-o name[=value]`, as `OSSFS_<NAME>` environment variables or in a config file",
           "(`--config FILE`); the command line wins over the environment, which wins over the file.",
           "", "| option | default | what it does | status |", "|---|---|---|---|"]
    for o in OPTIONS:
        names = "`%s%s`" % (o.name, o.metavar())
        extra = list(o.aliases) + list(o.negations)
        if extra:
            names += " (" + ", ".join("`%s`" % n for n in extra) + ")"
        out.append("| %s | `%s` | %s | %s |" % (names, _md(o.default_text()), _md(o.help), o.status))
    out += ["", "Accepted and ignored (fstab): " + ", ".join("`%s`" % n for n in sorted(FSTAB_NOISE))
            + ", `x-*`.", ""]
    return "\n".join(out)


def _roff(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-")


def options_man() -> str:
    """The options as roff ``.TP`` entries for the man page."""
    out = []
    for o in OPTIONS:
        out.append(".TP")
        out.append("\\fB%s\\fR%s" % (_roff(o.name), _roff(o.metavar())))
        text = "%s Default: %s." % (o.help, o.default_text())
        if o.status != IMPLEMENTED:
            text += " (%s)" % o.status
        if o.aliases or o.negations:
            text += " Also: %s." % ", ".join(o.aliases + o.negations)
        out.append(_roff(text))
    return "\n".join(out) + "\n"


# --- the parser ---

def parse_args(argv: list, environ: Mapping[str, str]) -> Config:
    """Parse ``argv`` (without the program name) and ``environ`` into a Config."""
    o_items: list = []
    positionals: list = []
    foreground = single = False
    debug = 0
    action = "mount"
    mpu_age: Optional[int] = DEFAULT_MPU_ABORT_AGE
    config_file = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            return Config(action="help")
        if arg in ("-V", "--version"):
            return Config(action="version")
        if arg == "-o" or (arg.startswith("-o") and not arg.startswith("--")):
            if arg == "-o":
                if i >= len(argv):
                    raise UserError("-o needs a list of options")
                arg, i = "-o" + argv[i], i + 1
            o_items.extend(_split_o(arg[2:]))
        elif arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i >= len(argv):
                    raise UserError("--config needs a file name")
                config_file, i = argv[i], i + 1
            else:
                config_file = arg.split("=", 1)[1]
        elif arg in ("-u", "--incomplete-mpu-list"):
            action = "mpu_list"
        elif arg == "--incomplete-mpu-abort" or arg.startswith("--incomplete-mpu-abort="):
            action = "mpu_abort"
            if "=" in arg:
                value = arg.split("=", 1)[1]
                mpu_age = None if value == "all" else parse_age(value)
        elif re.fullmatch(r"-[fds]+", arg):
            foreground |= "f" in arg
            single |= "s" in arg
            debug += arg.count("d")
        elif arg.startswith("-") and arg != "-":
            raise UserError("unknown argument '%s' (options go after -o)" % arg)
        else:
            positionals.append(arg)

    values: dict = {}
    explicit: set = set()
    warnings: list = []

    def take(items, where):
        for name, raw in items:
            resolved = _resolve(name, raw, where)
            if resolved is None:
                continue
            opt, value = resolved
            values[opt.name] = value
            explicit.add(opt.name)
            if opt.status == IGNORED:
                msg = "option '%s' is ignored: %s" % (name, opt.help.replace("Ignored: ", ""))
                if msg not in warnings:
                    warnings.append(msg)

    # Lowest precedence first, so later sources overwrite.
    if config_file is None:
        config_file = next((raw for n, raw in reversed(o_items) if n == "config" and raw), None)
    if config_file is None:
        config_file = environ.get("OSSFS_CONFIG") or None
    if config_file:
        take(_read_config_file(config_file), " in config file %s" % config_file)
    env_items = []
    for o in OPTIONS:
        for name in (o.name,) + o.aliases:
            key = "OSSFS_" + name.upper()
            if key in environ and o.name != "config":
                env_items.append((name, environ[key]))
    take(env_items, " (environment)")
    take([(n, r) for n, r in o_items if n != "config"], "")

    cfg = Config(**values)
    cfg.config = config_file or ""
    cfg.foreground, cfg.single_thread, cfg.debug = foreground, single, debug
    cfg.action, cfg.explicit, cfg.warnings = action, frozenset(explicit), warnings
    cfg.mpu_abort_age = mpu_age if action == "mpu_abort" else None
    cfg.url = normalize_url(cfg.url)

    if action in ("mpu_list", "mpu_abort"):
        if len(positionals) > 1:
            raise UserError("--incomplete-mpu-* take one BUCKET argument, got %d" % len(positionals))
        if positionals:
            _set_bucket(cfg, positionals[0])
    elif positionals and positionals[0] == "status":
        if len(positionals) != 2:
            raise UserError("usage: ossfs status MOUNTPOINT")
        cfg.action = "status"
        cfg.mountpoint = os.path.abspath(positionals[1])
        return cfg
    else:
        if len(positionals) == 2:
            _set_bucket(cfg, positionals[0])
            cfg.mountpoint = positionals[1]
        elif len(positionals) == 1:
            cfg.mountpoint = positionals[0]
        elif not positionals:
            raise UserError("missing MOUNTPOINT (usage: ossfs BUCKET[:/PREFIX] MOUNTPOINT [-o ...])")
        else:
            raise UserError("too many arguments: %s" % " ".join(positionals[2:]))
        if not cfg.mountpoint:
            raise UserError("missing MOUNTPOINT")
        cfg.mountpoint = os.path.abspath(cfg.mountpoint)
    # Local paths are taken from the directory ossfs was started in; the daemon
    # changes to / before it builds its cache and opens its log.
    for name in ("use_cache", "tmpdir", "logfile", "passwd_file", "mime"):
        if getattr(cfg, name, None):
            setattr(cfg, name, os.path.abspath(getattr(cfg, name)))
    for name in ("max_read", "max_write"):  # 0 means the 1 MiB default; the kernel needs a page
        if 0 < (values.get(name) or 0) < 4096:
            raise UserError("option '%s': must be 0 (1 MiB) or from 4096 to 1048576, got '%d'"
                            % (name, values[name]))
    if not cfg.bucket:
        raise UserError("missing BUCKET (give it as the first argument or with -o bucket=)")
    check_bucket(cfg.bucket)

    fuse = {}
    for o in OPTIONS:
        if o.fuse and o.name in explicit and values[o.name] not in (False, "", None):
            fuse[o.name] = values[o.name]
    cfg.fuse_options = fuse
    return cfg


def _set_bucket(cfg, arg: str) -> None:
    if "://" in arg:
        check_bucket(arg)
    if arg.startswith("ossfs#"):  # legacy fstab source "ossfs#bucket"
        arg = arg[len("ossfs#"):]
    bucket, sep, prefix = arg.partition(":")
    check_bucket(bucket)
    if cfg.bucket and "bucket" in cfg.explicit and cfg.bucket != bucket:
        raise UserError("bucket given twice: '%s' and -o bucket=%s" % (bucket, cfg.bucket))
    cfg.bucket = bucket
    cfg.prefix = normalize_prefix(prefix) if sep else ""


def main(argv=None) -> int:
    """``python -m ossfs.config --markdown|--man|--help``: print the generated docs."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--markdown"]:
        sys.stdout.write(options_markdown())
    elif argv == ["--man"]:
        sys.stdout.write(options_man())
    else:
        sys.stdout.write(help_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
