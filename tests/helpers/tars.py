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
