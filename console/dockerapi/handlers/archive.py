"""``docker cp`` both ways: ``GET|HEAD|PUT /containers/{id}/archive?path=...``.

The container's files are seen through ``/proc/<pid 1>/root`` while it runs
(its own mount namespace: /etc/hosts, hostname and volumes included), else
through its overlay at ``<root>/containers/<id>/rootfs``; either way from
this host while the container's own processes may be changing them. So
every path is walked one component at a time from a directory fd, each
opened with O_NOFOLLOW; a symlink met on the way is followed as if that root
were ``/`` (``evil -> /etc`` lands on the container's /etc, never the
host's). Nothing below the root is ever opened by a full host path.

    path ──split──> [a, b, c] ──openat(rootfs_fd, a, O_NOFOLLOW)──> ... ──> (fd of b, "c")

GET answers a tar of that entry (directories recursively, symlinks as
symlinks) and the ``X-Docker-Container-Path-Stat`` header; PUT extracts a
tar into a directory with runtime/archive's safe extractor.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import stat
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from runtime.archive import clean_parts, extract_layer
from runtime.errors import InvalidValue

from .. import local
from ..errors import bad_request, not_found
from ..fdio import produce_in_thread
from ..formats import go_file_mode, rfc3339
from ..params import boolean
from ..server import Response
from ..tarcheck import COPY, checked
from ..uploads import receive_to_file

MAX_SYMLINKS = 40
NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits; past them every lookup fails with ENAMETOOLONG
CHUNK = 1 << 16
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(root_fd: int, path: str, follow_last: bool) -> tuple[int, str]:
    """(fd of the parent directory, name of the entry) for ``path`` inside the root; the caller closes the fd.

    The entry itself need not exist. ``follow_last`` also resolves a symlink
    in the last place. The root itself comes back as (root dup, ".").
    """
    stack = [os.dup(root_fd)]
    todo = list(reversed(clean_parts(path)))
    hops = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not todo
            try:
                info = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    return stack.pop(), name
                raise
            if stat.S_ISLNK(info.st_mode) and (follow_last or not last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise bad_request(f"{path}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if last:
                return stack.pop(), name
            stack.append(os.open(name, _DIR, dir_fd=stack[-1]))
        return stack.pop(), "."
    finally:
        for fd in stack:
            os.close(fd)


def _open_root(api, container_id: str) -> int:
    return local.open_root(api.runtime, container_id)


def _follows(path: str) -> bool:
    """A trailing "/" or "/." means the directory the path names, through a last symlink too."""
    return path.endswith("/") or path.endswith("/.") or path in ("", ".")


def _display_name(path: str) -> str:
    trimmed = path.rstrip("/")
    if not trimmed:
        return "/"
    return posixpath.basename(trimmed)


def _link_target(parent_fd: int, name: str, path: str) -> str:
    target = os.readlink(name, dir_fd=parent_fd)
    if not target.startswith("/"):
        target = posixpath.join(posixpath.dirname("/" + "/".join(clean_parts(path))), target)
    return posixpath.normpath(target)


def _stat(api, row_id: str, path: str, reference: str) -> tuple[dict, int, str]:
    """The Docker path stat of ``path``, and (parent fd, name) to read it (the caller closes the fd)."""
    missing = not_found(f"Could not find the file {path} in container {reference}")
    try:
        root = _open_root(api, row_id)
    except FileNotFoundError:
        raise missing from None
    try:
        parent, name = walk(root, path, _follows(path))
    except (FileNotFoundError, NotADirectoryError):
        raise missing from None
    finally:
        os.close(root)
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        link = _link_target(parent, name, path) if stat.S_ISLNK(info.st_mode) else ""
    except BaseException as error:
        os.close(parent)
        if isinstance(error, (FileNotFoundError, NotADirectoryError)):
            raise missing from None
        raise
    described = {
        "name": _display_name(path),
        "size": info.st_size,
        "mode": go_file_mode(info.st_mode),
        "mtime": rfc3339(datetime.fromtimestamp(info.st_mtime, timezone.utc)),
        "linkTarget": link,
    }
    return described, parent, name


def _stat_header(described: dict) -> tuple[str, str]:
    return "X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(described).encode()).decode()


def _locate(api, reference: str, path: str):
    row = api.services.get_container(reference)
    return _stat(api, row.id, path, reference)


async def head(api, request) -> Response:
    path = _path(request)
    described, parent, _ = await api.sync(_locate, api, request.params["id"], path)
    os.close(parent)
    return Response(200, b"", None, [_stat_header(described)])


def _path(request) -> str:
    path = request.arg("path")
    if not path:
        raise bad_request("bad parameter: 'path' cannot be empty")
    if "\x00" in path:
        raise bad_request("bad parameter: 'path' holds a NUL byte, which no file name can")
    if len(path.encode()) > PATH_MAX or any(len(part.encode()) > NAME_MAX for part in path.split("/")):
        raise bad_request(f"bad parameter: 'path' {path[:64]}... is too long: at most {NAME_MAX} bytes a name, "
                          f"{PATH_MAX} in all")
    return path


# --- GET: the tar, built from fds -------------------------------------------------------------


class _Pipe:
    """A file-like sink for tarfile that hands each write to the consumer."""

    def __init__(self, put):
        self.put = put
        self.buffer = bytearray()

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            if not self.put(bytes(self.buffer)):
                raise _Stopped()
            self.buffer.clear()


class _Stopped(Exception):
    pass


def _tar_entry(tar: tarfile.TarFile, parent: int, name: str, arcname: str, links: dict) -> None:
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    entry = tarfile.TarInfo(arcname)
    entry.mode = stat.S_IMODE(info.st_mode)
    entry.uid, entry.gid = info.st_uid, info.st_gid
    entry.mtime = int(info.st_mtime)
    kind = stat.S_IFMT(info.st_mode)
    if kind == stat.S_IFDIR:
        entry.type = tarfile.DIRTYPE
        tar.addfile(entry)
        fd = os.open(name, _DIR, dir_fd=parent)
        try:
            for child in sorted(os.listdir(fd)):
                _tar_entry(tar, fd, child, f"{arcname}/{child}", links)
        finally:
            os.close(fd)
    elif kind == stat.S_IFREG:
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1 and key in links:
            entry.type = tarfile.LNKTYPE
            entry.linkname = links[key]
            tar.addfile(entry)
            return
        links[key] = arcname
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as content:
            entry.size = os.fstat(content.fileno()).st_size
            tar.addfile(entry, content)
    elif kind == stat.S_IFLNK:
        entry.type = tarfile.SYMTYPE
        entry.linkname = os.readlink(name, dir_fd=parent)
        tar.addfile(entry)
    elif kind == stat.S_IFIFO:
        entry.type = tarfile.FIFOTYPE
        tar.addfile(entry)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        entry.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        entry.devmajor, entry.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
        tar.addfile(entry)
    # sockets have no tar form: left out, as Docker does


def _tar_work(parent: int, name: str, arcname: str):
    def work(put, stop):
        sink = _Pipe(put)
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _tar_entry(tar, parent, name, arcname, {})
            sink.flush()
        except _Stopped:
            pass
        finally:
            os.close(parent)

    return work


async def get(api, request):
    path = _path(request)
    described, parent, name = await api.sync(_locate, api, request.params["id"], path)
    arcname = described["name"] if described["name"] != "/" else "."
    stream = await request.stream("application/x-tar", headers=[_stat_header(described)])
    async for batch in produce_in_thread(_tar_work(parent, name, arcname), backlog=64):
        await stream.write(b"".join(batch))
    await stream.end()
    return None


# --- PUT: extract into a directory -----------------------------------------------------------------


def _extract(api, reference: str, path: str, archive: Path) -> None:
    row = api.services.get_container(reference)
    root = _open_root(api, row.id)
    try:
        try:
            parent, name = walk(root, path, follow_last=True)
        except (FileNotFoundError, NotADirectoryError):
            raise not_found(f"Could not find the file {path} in container {reference}") from None
    finally:
        os.close(root)
    try:
        try:
            target = os.open(name, _DIR, dir_fd=parent)
        except FileNotFoundError:
            raise not_found(f"Could not find the file {path} in container {reference}") from None
        except (NotADirectoryError, OSError) as error:
            if isinstance(error, NotADirectoryError) or error.errno in (errno.ENOTDIR, errno.ELOOP):
                raise bad_request("extraction point is not a directory") from None
            raise
    finally:
        os.close(parent)
    try:
        # The directory through its fd: extraction is confined to it whatever happens to the path meanwhile.
        extract_layer(archive, Path(f"/proc/self/fd/{target}"), whiteouts=False)
    except InvalidValue as error:
        raise bad_request(str(error)) from None
    finally:
        os.close(target)


async def put(api, request) -> Response:
    path = _path(request)
    boolean(request.arg("noOverwriteDirNonDir"))  # accepted; see the report: not enforced yet
    archive = await checked(api, await receive_to_file(api, request, "cp-"), COPY)
    try:
        await api.sync(_extract, api, request.params["id"], path, archive)
    finally:
        archive.unlink(missing_ok=True)
    return Response(200, b"", None)


ROUTES = [
    ("HEAD", "/containers/{id}/archive", head),
    ("GET", "/containers/{id}/archive", get),
    ("PUT", "/containers/{id}/archive", put),
]
