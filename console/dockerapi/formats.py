"""Times and texts in the shapes Docker clients parse or print."""

from __future__ import annotations

from datetime import datetime, timezone

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(value: datetime | str | None) -> str:
    """Go's RFC3339Nano in UTC (``2025-05-30T12:07:14.123456Z``); Go's zero time for None."""
    if value is None or value == "":
        return ZERO_TIME
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def unix(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else 0


# Go's os.FileMode bits, which X-Docker-Container-Path-Stat carries.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    import stat

    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFDIR:
        mode |= _GO_DIR
    elif kind == stat.S_IFLNK:
        mode |= _GO_SYMLINK
    elif kind == stat.S_IFIFO:
        mode |= _GO_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= _GO_SOCKET
    elif kind == stat.S_IFBLK:
        mode |= _GO_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= _GO_DEVICE | _GO_CHARDEV
    if st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode
