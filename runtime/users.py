"""Resolve ``user[:group]`` against the container's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

from .archive import open_in_root
from .errors import InvalidValue


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary gids) for Docker's user forms: name, uid, name:group, uid:gid."""
    name, _, group = (user or "0").partition(":")
    passwd = _entries(rootfs, "etc/passwd")
    entry = _find(passwd, name)
    if entry is None:
        if not name.isdigit():
            raise InvalidValue("user", f"unable to find user {name}: no matching entries in passwd file")
        uid, gid, user_name = int(name), int(name) if not passwd else 0, None
    else:
        uid, gid, user_name = int(entry[2]), int(entry[3]), entry[0]
    groups = _entries(rootfs, "etc/group")
    if group:
        found = _find(groups, group)
        if found is None and not group.isdigit():
            raise InvalidValue("user", f"unable to find group {group}: no matching entries in group file")
        gid = int(found[2]) if found else int(group)
    extra = sorted({int(g[2]) for g in groups if user_name and user_name in g[3].split(",") and int(g[2]) != gid})
    return uid, gid, extra


def _entries(rootfs: Path, name: str) -> list[list[str]]:
    try:
        with open_in_root(rootfs, name) as handle:
            lines = handle.read().decode(errors="replace").splitlines()
    except (OSError, InvalidValue):
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#") and line.count(":") >= 3]


def _find(entries: list[list[str]], key: str) -> list[str] | None:
    for entry in entries:
        if entry[0] == key or (key.isdigit() and entry[2] == key):
            return entry
    return None
