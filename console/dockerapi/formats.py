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


def human_duration(seconds: float) -> str:
    """The wording of Docker's ``units.HumanDuration``: "Less than a second", "5 seconds", "About an hour"."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def container_status(state: str, exit_code: int, started_at: datetime | None, finished_at: datetime | None,
                     now: datetime | None = None) -> str:
    """The STATUS column of ``docker ps``: "Up 5 seconds", "Exited (0) 3 seconds ago", "Created"."""
    now = now or datetime.now(timezone.utc)
    if state in ("running", "paused"):
        up = "Up " + human_duration((now - started_at).total_seconds() if started_at else 0)
        return up + " (Paused)" if state == "paused" else up
    if state == "restarting":
        since = human_duration((now - finished_at).total_seconds()) if finished_at else "Less than a second"
        return f"Restarting ({exit_code}) {since} ago"
    if state == "removing":
        return "Removal In Progress"
    if state == "dead":
        return "Dead"
    if started_at is None:
        return "Created"
    if finished_at is None:
        return ""
    return f"Exited ({exit_code}) {human_duration((now - finished_at).total_seconds())} ago"


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
