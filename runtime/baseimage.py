"""busybox:latest, built from the host's Debian busybox-static.

The rootfs tar is made in memory with fixed owners and mtimes and a fixed
"created" date, so one busybox binary always gives one image id; rebuilding
an image the store has costs a tar in memory and a hash (the layer is not
extracted again).

Name resolution: Debian 12's busybox-static is linked statically against
glibc 2.36, where the "files" and "dns" NSS services are built into libc
itself. Lookups through /etc/hosts and through the nameservers of
/etc/resolv.conf therefore work in a rootfs that holds no shared library at
all (checked with strace: no libnss_* is opened). Any other service named in
nsswitch.conf (myhostname, mdns, systemd, ...) would be dlopen()ed and is
silently skipped when missing, so the image's nsswitch.conf names only files
and dns. No library is copied into the image. tests/runtime/test_baseimage.py
proves both kinds of lookup with wget inside a chroot of the built rootfs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import tarfile

from .images import Image, ImageStore, rootfs_config
from .paths import StateRoot

REFERENCE = "busybox:latest"
CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200  # CREATED as a timestamp
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_APPLET_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")

_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}

_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "etc/group": "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\nnobody:x:65534:\n",
    # The runtime bind-mounts its own over these three.
    "etc/hosts": "",
    "etc/resolv.conf": "",
    "etc/hostname": "",
    # Only services static glibc has built in; others would need dlopen().
    "etc/nsswitch.conf": (
        "passwd: files\ngroup: files\nshadow: files\n"
        "hosts: files dns\nnetworks: files\n"
        "protocols: files\nservices: files\nethers: files\nrpc: files\n"
    ),
}


def busybox_layer(busybox_path: str = "/bin/busybox") -> bytes:
    """The image's one layer: the same bytes for the same binary."""
    with open(busybox_path, "rb") as f:
        binary = f.read()
    return rootfs_tar(binary, _applets(busybox_path))


def build_busybox(store: ImageStore, busybox_path: str = "/bin/busybox") -> Image:
    layer = busybox_layer(busybox_path)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = rootfs_config(
        [diff_id], {"Env": [f"PATH={PATH}"], "Cmd": ["sh"]}, CREATED, _version(busybox_path)
    )
    return store.create(config, [io.BytesIO(layer)], reference=REFERENCE)


def _applets(busybox_path: str) -> list[str]:
    out = subprocess.run([busybox_path, "--list-full"], capture_output=True, text=True, check=True).stdout
    paths = {line.strip() for line in out.splitlines()}
    return sorted(p for p in paths if p.rpartition("/")[0] in _APPLET_DIRS and p != "bin/busybox")


def _version(busybox_path: str) -> str:
    # The banner names the build (e.g. "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)").
    out = subprocess.run([busybox_path], capture_output=True, text=True).stdout
    banner = out.splitlines()[0] if out else "BusyBox"
    return banner.removesuffix(" multi-call binary.")


def rootfs_tar(binary: bytes, applets: list[str]) -> bytes:
    """The layer as tar bytes: same inputs, same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode in sorted(_DIRS.items()):
            tar.addfile(_info(name, tarfile.DIRTYPE, mode))
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary))
        for name in applets:
            tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, linkname="/bin/busybox"))
        for name, text in sorted(_FILES.items()):
            data = text.encode()
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, type_: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = type_, mode, size, linkname
    info.mtime, info.uid, info.gid, info.uname, info.gname = _MTIME, 0, 0, "root", "root"
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Build {REFERENCE} from the host's busybox-static.")
    parser.add_argument("--busybox", default="/bin/busybox", help="path of a static busybox binary")
    args = parser.parse_args(argv)
    image = build_busybox(ImageStore(StateRoot.from_env()), args.busybox)
    print(image.id)


if __name__ == "__main__":
    main()
