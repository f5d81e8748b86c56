"""Overlay mounts through mount(2), without spawning mount(8) per container."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)

MNT_DETACH = 2
# The kernel copies mount data into one page.
MAX_MOUNT_DATA = 4095


def mount_overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount ``lower`` (top-most first) read-only under a writable ``upper`` at ``target``."""
    data = f"lowerdir={':'.join(map(str, lower))},upperdir={upper},workdir={work}"
    if len(data) > MAX_MOUNT_DATA:
        raise OSError(f"overlay options too long for {len(lower)} layers ({len(data)} bytes)")
    if _libc.mount(b"overlay", bytes(target), b"overlay", 0, data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Detach ``target`` if it is a mount point; a missing mount is not an error."""
    if _libc.umount2(bytes(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mount_points(under: Path) -> list[Path]:
    """Mount points at or below ``under``, read from the kernel's own table."""
    prefix = str(under).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            point = _unescape(line.split(b" ", 5)[4].decode())
            if point.startswith(prefix) or point == prefix[:-1]:
                found.append(Path(point))
    return found


def is_mounted(target: Path) -> bool:
    return Path(target) in set(mount_points(Path(target).parent))


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
