"""Archives a client uploads (cp, import, load), read once before anything is unpacked.

The runtime's extraction already keeps every entry inside its directory (it
clamps ``..`` and follows symlinks as if the directory were ``/``). This pass
refuses, with a 400 and nothing written, archives that only a mistake or an
attack makes, as moby refuses them (``breakoutError``)::

    ../x, a/../../x           a name that climbs out of the directory it is unpacked in
    x -> ../../etc            a symlink whose target climbs out (an absolute one too, for cp)
    x hard link to ../y       a hard link to something outside
    dev/sda (char, block)     a device node: Berth makes none
    huge (declared size)      more than the state root has free: a sparse or compressed bomb (413)

A ``docker load`` archive holds layers as tars inside the tar; those are read too.
Sizes are the unpacked ones (a sparse member's real size), so a small upload that
unpacks to terabytes is refused before a byte of it is written.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import HTTPError, bad_request

RESERVE = 10  # per cent of the free space an upload must leave free
_PEEK = 512
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


@dataclass(frozen=True)
class Rules:
    what: str
    absolute_symlinks: bool  # a root file system has them (/bin/sh -> /bin/busybox); a copy into a container not
    nested_layers: bool = False


COPY = Rules("archive", absolute_symlinks=False)
LAYER = Rules("layer", absolute_symlinks=True)
IMAGE_ARCHIVE = Rules("image archive", absolute_symlinks=True, nested_layers=True)


def climbs_out(name: str) -> bool:
    """Whether a relative path, read from the top of the archive, goes above it."""
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _member_problem(member: tarfile.TarInfo, rules: Rules) -> str | None:
    name = member.name
    if climbs_out(name.lstrip("/")):
        return f"{name} climbs out of the directory it is unpacked in"
    if member.ischr() or member.isblk():
        return f"{name} is a device node: Berth does not create device nodes"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            return None if rules.absolute_symlinks else f"symlink {name} -> {target} is absolute"
        if climbs_out(posixpath.join(posixpath.dirname(name.lstrip("/")), target)):
            return f"symlink {name} -> {target} points out of the archive"
    if member.islnk() and climbs_out(member.linkname.lstrip("/")):
        return f"hard link {name} -> {member.linkname} points out of the archive"
    return None


def _looks_like_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar" or head.startswith(_COMPRESSED)


def _scan(stream, rules: Rules, budget: int, depth: int = 0) -> int:
    """The bytes ``stream``'s tar unpacks to; raises a 400 or 413 for what it must not unpack."""
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                problem = _member_problem(member, rules)
                if problem:
                    raise bad_request(f"refused {rules.what}: {problem}")
                total += member.size if member.isreg() else 0
                if total > budget:
                    raise too_large(total, budget)
                if rules.nested_layers and depth == 0 and member.isreg() and member.size:
                    total += _scan_nested(archive, member, budget - total)
    except (tarfile.TarError, EOFError, OSError):
        # What tarfile cannot read is never unpacked either: the unpacking stops there and says why.
        pass
    return total


def _scan_nested(archive: tarfile.TarFile, member: tarfile.TarInfo, budget: int) -> int:
    """A layer inside a ``docker save`` archive, read as it passes by (the outer stream cannot seek)."""
    inner = io.BufferedReader(archive.extractfile(member), _PEEK * 128)
    if not _looks_like_tar(inner.peek(_PEEK)[:_PEEK]):
        return 0
    return _scan(inner, LAYER, budget, depth=1)


def too_large(total: int, budget: int) -> HTTPError:
    return HTTPError(413, f"the archive unpacks to more than {total} bytes, and Berth's state root can take "
                          f"{budget} (free space less {RESERVE} %)")


def budget_of(directory: Path) -> int:
    """What an upload may unpack to in ``directory``'s filesystem: its free space less the reserve."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    return free - free * RESERVE // 100


def check(path: Path, rules: Rules, budget: int) -> None:
    """Raise a 400 (or 413) if the archive at ``path`` must not be unpacked; what is not a tar is left to the caller."""
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as stream:
        _scan(stream, rules, budget)


async def checked(api, path: Path, rules: Rules) -> Path:
    """``path`` once it passed ``check``; otherwise it is removed and the refusal raised."""
    try:
        await api.sync(check, path, rules, budget_of(api.tmp))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
