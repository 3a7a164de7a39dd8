"""Writes the ossfs(1) man page (roff) to stdout.

Usage: python3 make_man.py SOURCE_TREE            (ossfs.1)
       python3 make_man.py --server SOURCE_TREE   (ossfs-server.1)

The OPTIONS section comes from the option table in ossfs/config.py through
``config.options_man()`` (roff ``.TP`` entries), so the page lists exactly the options
``ossfs`` accepts.  ossfs-server(1) is made from the server's argument parser.
"""
import datetime
import os
import sys


def options_section(tree):
    sys.path.insert(0, tree)
    from ossfs import config
    if not hasattr(config, "options_man"):
        sys.exit("make_man: ossfs/config.py has no options_man(): cannot list the options")
    return config.options_man().strip() + "\n"


def server_usage(tree):
    sys.path.insert(0, tree)
    from ossfs.server.__main__ import build_parser
    parser = build_parser()
    parser.prog = "ossfs-server"
    text = parser.format_help().replace("\\", "\\e").replace("\n.", "\n\\&.")
    return ".nf\n" + text.rstrip() + "\n.fi\n"


def main():
    server = sys.argv[1:2] == ["--server"]
    tree = os.path.abspath(sys.argv[-1])
    sys.path.insert(0, tree)
    from ossfs import __version__
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    date = datetime.datetime.fromtimestamp(int(stamp), datetime.timezone.utc) if stamp \
        else datetime.datetime.now(datetime.timezone.utc)
    page = (SERVER_PAGE if server else PAGE)
    page = page.replace("@VERSION@", __version__).replace("@DATE@", date.strftime("%Y-%m-%d"))
    if server:
        sys.stdout.write(page.replace("@USAGE@\n", server_usage(tree)))
    else:
        sys.stdout.write(page.replace("@OPTIONS@\n", options_section(tree)))


PAGE = r""".TH OSSFS 1 "@DATE@" "ossfs @VERSION@" "User Commands"
.SH NAME
ossfs \- mount an Aliyun OSS bucket as a local directory
.SH SYNOPSIS
.B ossfs
.I BUCKET\fR[\fI:/PREFIX\fR]
.I MOUNTPOINT
.RB [ \-o
.IR OPTION [ ,OPTION ...]]
.RB [ \-f ]
.RB [ \-d ]
.RB [ \-s ]
.br
.B ossfs
.I MOUNTPOINT
.B \-o bucket=\fIBUCKET\fR[\fB,\fIOPTION\fR...]
.br
.B ossfs \-\-incomplete\-mpu\-list
.I BUCKET
.RB [ \-o
.IR OPTIONS ]
.br
.B ossfs \-\-incomplete\-mpu\-abort\fR[\fB=all\fR|\fB=\fIAGE\fR]
.I BUCKET
.RB [ \-o
.IR OPTIONS ]
.br
.B umount
.I MOUNTPOINT
.SH DESCRIPTION
.B ossfs
mounts a bucket of Aliyun Object Storage Service (OSS), or a prefix inside it, as a
local directory through FUSE.
Objects become files, and file attributes are kept in the same object headers that
ossfs 1.x and s3fs use, so a bucket can be shared with those tools.
The command line, the password files and the fstab lines of ossfs 1.x keep working.
.PP
Unless
.B \-f
is given, ossfs returns once the bucket is mounted and keeps serving it in the
background; errors then go to syslog.
.SH GENERAL OPTIONS
.TP
.B \-o \fIOPTION\fR[\fB,\fIOPTION\fR...]
Mount options; see
.B OPTIONS
below.
.TP
.B \-\-config \fIFILE\fR
Read options from
.IR FILE .
Options given with
.B \-o
win over
.BI OSSFS_ NAME
environment variables, which win over the file.
.TP
.B \-f
Stay in the foreground.
.TP
.B \-d
Debug output; twice also shows the FUSE requests.
.TP
.B \-s
Serve FUSE requests on a single thread.
.TP
.BR \-h ", " \-\-help
Print the options and exit.
.TP
.B \-\-version
Print the versions of ossfs, oss2, the FUSE binding and libfuse, and exit.
.TP
.B \-\-incomplete\-mpu\-list
List the unfinished multipart uploads of the bucket.
.TP
.B \-\-incomplete\-mpu\-abort\fR[\fB=all\fR|\fB=\fIAGE\fR]
Abort unfinished multipart uploads older than 24 hours, all of them, or older than
.I AGE
(for example
.BR 1Y6M10D12h30m30s ).
.SH OPTIONS
@OPTIONS@
.SH CREDENTIALS
The AccessKey is looked up, in this order, in the file named by
.BR passwd_file= ,
in the environment variables
.B OSSACCESSKEYID
(or
.BR OSS_ACCESS_KEY_ID )
and
.B OSSSECRETACCESSKEY
(or
.BR OSS_ACCESS_KEY_SECRET ),
with
.B OSSSESSIONTOKEN
(or
.BR OSS_SESSION_TOKEN ),
in the file named by
.BR OSS_CREDENTIAL_FILE ,
in
.IR ~/.passwd\-ossfs ,
and in
.IR /etc/passwd\-ossfs .
.PP
A password file holds lines
.IB BUCKET : ACCESS_KEY_ID : ACCESS_KEY_SECRET
or, for every bucket,
.IB ACCESS_KEY_ID : ACCESS_KEY_SECRET\fR.
It must not be readable by others; only
.I /etc/passwd\-ossfs
may be readable by its group (mode 0640).
.SH FSTAB
Both forms of ossfs 1.x are understood:
.PP
.nf
.RS
my\-bucket  /mnt/oss  fuse.ossfs  _netdev,allow_other,url=oss\-cn\-hangzhou.aliyuncs.com  0 0
ossfs#my\-bucket  /mnt/oss  fuse  _netdev,allow_other,url=oss\-cn\-hangzhou.aliyuncs.com  0 0
.RE
.fi
.PP
The first runs
.BR mount.fuse.ossfs ,
the second libfuse's
.BR mount.fuse .
Add
.B x\-systemd.automount
to mount on first access.
.SH FILES
.TP
.I /etc/passwd\-ossfs
System-wide credentials (mode 0640 or 0600).
.TP
.I ~/.passwd\-ossfs
The user's credentials (mode 0600).
.TP
.I /sbin/mount.fuse.ossfs
The
.BR mount (8)
helper for file systems of type
.BR fuse.ossfs ;
see
.BR mount.fuse.ossfs (8).
.SH EXIT STATUS
0 when the bucket is mounted (or the command succeeded); non-zero otherwise, with one
line on standard error saying why.
.SH SEE ALSO
.BR fstab (5),
.BR mount (8),
.BR mount.fuse.ossfs (8),
.BR mount.fuse3 (8),
.BR fusermount3 (1),
.BR ossfs\-server (1)
"""

SERVER_PAGE = r""".TH OSSFS\-SERVER 1 "@DATE@" "ossfs @VERSION@" "User Commands"
.SH NAME
ossfs\-server \- a local server speaking the OSS (and S3) protocol, for tests and demos
.SH DESCRIPTION
.B ossfs\-server
keeps buckets and objects in a local directory and answers the OSS protocol (signature
V1 and V4) and the S3 protocol on one port.
It prints the URL it listens on; mount one of its buckets with
.B ossfs
.I BUCKET MOUNTPOINT
.BI \-o\ url= URL ,passwd_file= FILE\fR.
It is meant for tests, benchmarks and trying ossfs out, not for storing data that matters.
.SH USAGE
@USAGE@
.SH SEE ALSO
.BR ossfs (1)
"""

if __name__ == "__main__":
    main()
