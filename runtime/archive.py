"""Safe, one-pass extraction of layer tarballs.

A layer is an untrusted tar stream (plain, gzip, bzip2 or xz: told apart by
its first bytes). It is read once, in tarfile's streaming mode, while the
uncompressed bytes are hashed: that hash is the layer's diff id, the value an
image config lists in ``rootfs.diff_ids``.

How the layer is kept inside ``dest``:

- Names are cleaned as if the layer root were ``/``: a leading ``/`` or
  ``./`` is dropped and ``..`` never climbs above the root, so ``../x`` and
  ``/x`` both land at ``dest/x`` (clamped, as Docker does; never skipped).
- Every directory on the way is opened relative to its parent's fd with
  ``O_NOFOLLOW``. A symlink met on the way (planted by an earlier entry) is
  followed as if ``dest`` were the root (chroot semantics): ``evil -> /tmp``
  makes ``evil/x`` land at ``dest/tmp/x``, never at the host's ``/tmp``.
- The last component is never followed: an existing entry of that name is
  removed first and the new one created with ``O_EXCL|O_NOFOLLOW``.
- Hard link targets are cleaned and resolved the same way, so they can only
  name something inside ``dest``; a target that is missing there (or is a
  directory) is skipped and reported in ``LayerInfo.warnings``.
- Device nodes are skipped with a warning; fifos are created. The only device
  nodes made are overlayfs whiteouts (below).
- Owners (numeric uid/gid), modes including setuid, mtimes, symlinks and
  ``SCHILY.xattr.*`` pax xattrs are kept (we run as root). ``trusted.overlay.*``
  xattrs coming from the tar are dropped: only whiteout entries may make a
  directory opaque.

Every problem that skips one entry is a warning; a stream that is not a
readable tar raises ``InvalidValue``. A full filesystem (ENOSPC, EDQUOT) is
never a warning, even where it strikes a step that is otherwise allowed to
skip an entry: a layer missing what did not fit would be stored as complete.
It raises ``DiskFull``; what was written into ``dest`` is the caller's to remove.

Whiteouts (AUFS-style names in the tar, overlayfs objects on disk) so that
extracted layers stack as overlay lowerdirs::

    dir/.wh.NAME         ->  dir/NAME: character device 0:0
    dir/.wh..wh..opq     ->  dir: xattr trusted.overlay.opaque = "y"
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from .errors import InvalidValue, disk_full_as_error, is_disk_full

Progress = Callable[[int, Optional[int]], None]

PROGRESS_STEP = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


@dataclass
class LayerInfo:
    diff_id: str  # "sha256:" + hex of the uncompressed tar
    size: int  # bytes of regular file content written
    warnings: list[str] = field(default_factory=list)


def extract_layer(source, dest: Path, progress: Progress | None = None, *, whiteouts: bool = True) -> LayerInfo:
    """Extract a (possibly compressed) tar from a path or binary file object into ``dest``.

    ``whiteouts=False`` keeps ``.wh.`` names as plain files (for archives that
    are not layers, such as the outer tar of ``docker save``).
    """
    dest = Path(dest)
    with disk_full_as_error("cannot extract the archive"), _opened(source) as (stream, total):
        dest.mkdir(parents=True, exist_ok=True)
        counting = _CountingReader(stream, progress, total)
        hashing = _HashingReader(_decompressor(counting))
        info = _Extractor(dest, whiteouts).run(hashing)
        hashing.drain()
        counting.finish()
    info.diff_id = "sha256:" + hashing.sha.hexdigest()
    return info


def open_in_root(root: Path, name: str) -> BinaryIO:
    """Open ``root/name`` for reading, following symlinks as if ``root`` were ``/``."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # O_NONBLOCK: a fifo planted under that name must not hang us (no effect on regular files).
        fd = _resolve(root_fd, clean_parts(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(root_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidValue("archive", f"{name} is not a regular file")
    return os.fdopen(fd, "rb")


def open_dir_in_root(root: Path, name: str) -> int:
    """An fd of the directory ``root/name``, following symlinks as if ``root`` were ``/``; the caller closes it."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _resolve(root_fd, clean_parts(name), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(root_fd)


def clean_parts(name: str) -> list[str]:
    """Split a tar name into components, clamping ``..`` at the layer root."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


# --- reading the input -----------------------------------------------------


@contextmanager
def _opened(source):
    """(binary stream, its size or None) for a path or a file object."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
    else:
        yield source, _remaining_size(source)


def _remaining_size(stream) -> int | None:
    try:
        if isinstance(stream, io.BytesIO):
            return stream.getbuffer().nbytes - stream.tell()
        st = os.fstat(stream.fileno())
        if stat.S_ISREG(st.st_mode):
            return st.st_size - stream.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


class _CountingReader(io.RawIOBase):
    """Counts compressed bytes read and reports them at most every PROGRESS_STEP."""

    def __init__(self, stream, progress: Progress | None, total: int | None):
        self.stream, self.progress, self.total = stream, progress, total
        self.done = 0
        self.reported = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = 0
        while n < len(buffer):  # fill the buffer: sniffing the magic needs the first bytes together
            data = self.stream.read(len(buffer) - n)
            if not data:
                break
            buffer[n : n + len(data)] = data
            n += len(data)
        self.done += n
        if self.progress and self.done - self.reported >= PROGRESS_STEP:
            self.reported = self.done
            self.progress(self.done, self.total)
        return n

    def finish(self) -> None:
        if self.progress:
            self.progress(self.done, self.total)


def _decompressor(raw: io.RawIOBase) -> BinaryIO:
    buffered = io.BufferedReader(raw, _CHUNK)
    kind = _sniff(buffered.peek(8)[:8])
    if kind == "gzip":
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(buffered)
    if kind == "xz":
        return lzma.LZMAFile(buffered)
    if kind == "zstd":
        raise InvalidValue("layer", "zstd-compressed layers are not supported")
    return buffered


def _sniff(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "tar"


class _HashingReader(io.RawIOBase):
    """Hashes the uncompressed bytes as tarfile reads them; corrupt input becomes InvalidValue."""

    def __init__(self, stream):
        self.stream = stream
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise InvalidValue("layer", f"corrupt compressed stream: {exc}") from exc
        except OSError as exc:
            if exc.errno is None:  # bz2 reports bad data as a bare OSError
                raise InvalidValue("layer", f"corrupt compressed stream: {exc}") from exc
            raise
        self.sha.update(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        # tarfile stops at the end-of-archive blocks; the diff id covers every byte.
        while self.read(_CHUNK):
            pass


# --- walking inside dest ---------------------------------------------------


def _resolve(root_fd: int, parts: list[str], flags: int, create_dirs: bool = False) -> int:
    """Open root/parts with chroot semantics; returns an fd the caller closes.

    Each component is opened with O_NOFOLLOW relative to its parent, so a
    symlink is only ever followed here, and only inside the root.
    """
    stack = [root_fd]
    todo = list(reversed(parts))
    hops = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            want = flags if not todo else os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            try:
                stack.append(os.open(name, want | os.O_NOFOLLOW, dir_fd=stack[-1]))
                continue
            except FileNotFoundError:
                if not create_dirs:
                    raise
                os.mkdir(name, 0o755, dir_fd=stack[-1])
                todo.append(name)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            target = _readlink(stack[-1], name)
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", name)
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop())
            todo.extend(reversed(target.split("/")))
        return stack.pop() if len(stack) > 1 else os.dup(root_fd)
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _readlink(dir_fd: int, name: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", name) from None
        raise


def _raise_if_full(error: OSError) -> None:
    if is_disk_full(error):
        raise error


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _clear(dir_fd: int, name: str, keep_dir: bool = False) -> None:
    """Remove whatever is at name, so the new entry never writes through it."""
    st = _lstat(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


# --- the extractor ---------------------------------------------------------


class _Extractor:
    def __init__(self, dest: Path, whiteouts: bool):
        self.dest = dest
        self.whiteouts = whiteouts
        self.info = LayerInfo(diff_id="", size=0)
        self.dir_times: list[tuple[list[str], int]] = []

    def run(self, stream) -> LayerInfo:
        self.root_fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in tar:
                        self._entry(tar, member)
            except tarfile.TarError as exc:
                raise InvalidValue("layer", f"not a valid tar archive: {exc}") from exc
            self._restore_dir_times()
        finally:
            os.close(self.root_fd)
        return self.info

    def warn(self, member: tarfile.TarInfo, why: str) -> None:
        self.info.warnings.append(f"{member.name}: {why}")

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = clean_parts(member.name)
        if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(member, parts)
            return
        if not parts:
            self._root_entry(member)
            return
        try:
            parent = _resolve(self.root_fd, parts[:-1], _DIR_FLAGS, create_dirs=True)
        except OSError as exc:
            _raise_if_full(exc)
            self.warn(member, f"cannot reach parent directory: {exc.strerror}")
            return
        try:
            self._create(tar, member, parent, parts)
        finally:
            os.close(parent)

    def _create(self, tar, member, parent: int, parts: list[str]) -> None:
        name = parts[-1]
        if member.isdir():
            _clear(parent, name, keep_dir=True)
            if _lstat(parent, name) is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            self.dir_times.append((parts, int(member.mtime)))
        elif member.isreg():
            _clear(parent, name)
            self._write_file(tar, member, parent, name)
        elif member.issym():
            _clear(parent, name)
            os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            self._hardlink(member, parent, parts)
            return  # a hard link shares its target's metadata
        elif member.isfifo():
            _clear(parent, name)
            os.mkfifo(name, 0o600, dir_fd=parent)
        elif member.ischr() or member.isblk():
            self.warn(member, "device nodes are not extracted")
            return
        else:
            self.warn(member, f"unsupported tar entry type {member.type!r}")
            return
        self._apply_metadata(member, parent, name)

    def _write_file(self, tar, member, parent: int, name: str) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            data = tar.extractfile(member)
            shutil.copyfileobj(data, out, _CHUNK)
        self.info.size += member.size

    def _hardlink(self, member, parent: int, parts: list[str]) -> None:
        target = clean_parts(member.linkname)
        if not target or target == parts:
            self.warn(member, f"hard link to {member.linkname!r} refused")
            return
        try:
            target_parent = _resolve(self.root_fd, target[:-1], _DIR_FLAGS)
        except OSError:
            self.warn(member, f"hard link target {member.linkname!r} is not in the layer")
            return
        try:
            st = _lstat(target_parent, target[-1])
            if st is None or stat.S_ISDIR(st.st_mode):
                self.warn(member, f"hard link target {member.linkname!r} is missing or a directory")
                return
            _clear(parent, parts[-1])
            os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(target_parent)

    def _whiteout(self, member, parts: list[str]) -> None:
        try:
            parent = _resolve(self.root_fd, parts[:-1], _DIR_FLAGS, create_dirs=True)
        except OSError as exc:
            _raise_if_full(exc)
            self.warn(member, f"cannot reach whiteout directory: {exc.strerror}")
            return
        try:
            if parts[-1] == OPAQUE_MARKER:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            elif parts[-1].startswith(WHITEOUT_PREFIX * 2):
                self.warn(member, "AUFS metadata entry ignored")
            else:
                self._whiteout_file(member, parent, parts[-1][len(WHITEOUT_PREFIX):])
        finally:
            os.close(parent)

    def _whiteout_file(self, member, parent: int, name: str) -> None:
        if not name or name in (".", ".."):
            self.warn(member, "whiteout without a name")
            return
        _clear(parent, name)
        # overlayfs reads a 0:0 character device in a lower layer as "deleted here".
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)

    def _root_entry(self, member) -> None:
        if not member.isdir():
            self.warn(member, "only a directory may stand for the layer root")
            return
        os.chown(self.root_fd, member.uid, member.gid)
        os.chmod(self.root_fd, stat.S_IMODE(member.mode))
        self.dir_times.append(([], int(member.mtime)))

    def _apply_metadata(self, member, parent: int, name: str) -> None:
        # Order matters: chown clears setuid bits and file capabilities.
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if not member.issym():
            os.chmod(name, stat.S_IMODE(member.mode), dir_fd=parent)
        self._apply_xattrs(member, parent, name)
        if not member.isdir():
            mtime = int(member.mtime) * 10**9
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _apply_xattrs(self, member, parent: int, name: str) -> None:
        xattrs = {
            key[len("SCHILY.xattr."):]: value
            for key, value in member.pax_headers.items()
            if key.startswith("SCHILY.xattr.")
        }
        if not xattrs:
            return
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            for key, value in xattrs.items():
                self._set_xattr(member, fd, key, value)
        finally:
            os.close(fd)

    def _set_xattr(self, member, fd: int, key: str, value: str) -> None:
        if key.startswith("trusted.overlay."):
            self.warn(member, f"xattr {key} dropped")
            return
        try:
            # An O_PATH fd reaches symlinks and whiteout-like nodes that cannot be opened for I/O.
            os.setxattr(f"/proc/self/fd/{fd}", key, value.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            _raise_if_full(exc)
            self.warn(member, f"xattr {key} not set: {exc.strerror}")

    def _restore_dir_times(self) -> None:
        # Creating entries bumps a directory's mtime, so directories get theirs last.
        for parts, mtime in self.dir_times:
            ns = (mtime * 10**9, mtime * 10**9)
            if not parts:
                os.utime(self.root_fd, ns=ns)
                continue
            try:
                parent = _resolve(self.root_fd, parts[:-1], _DIR_FLAGS)
            except OSError:
                continue
            try:
                st = _lstat(parent, parts[-1])
                if st is not None and stat.S_ISDIR(st.st_mode):
                    os.utime(parts[-1], ns=ns, dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
