"""Archives for the image tests, made in memory."""

import io
import tarfile


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    """A tar of these files (name -> content), executable, as `docker import` takes a root file system."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- archives that must be refused (tests/api/test_archive.py) ------------------------------------------


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    """(header, content) of a tar entry of any kind; a device node is 1:3 (/dev/null's numbers)."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), link, 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, data


def tar_of(*entries: tuple, compression: str = "") -> bytes:
    """A tar of these ``entry``s, gzip'd when ``compression`` is "gz"."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def sparse_bomb(real_size: int, compression: str = "") -> bytes:
    """A few KiB of tar whose one file unpacks to ``real_size`` bytes of holes (a PAX GNU sparse member)."""
    info, _ = entry("bomb")
    info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.realsize": str(real_size),
                        "GNU.sparse.size": str(real_size)}
    return tar_of((info, b""), compression=compression)


def image_archive(layer: bytes) -> bytes:
    """A ``docker save`` archive (legacy layout) whose only layer is ``layer``."""
    config = b'{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = b'[{"Config":"config.json","RepoTags":["refused:latest"],"Layers":["l1/layer.tar"]}]'
    return rootfs_tar({"config.json": config, "l1/layer.tar": layer, "manifest.json": manifest})
