"""The image store: content-addressed layers and configs under ``StateRoot.images``.

On disk::

    images/
      lock                        flock'ed around every change of tags, configs or layers
      repositories.json           {"busybox:latest": "sha256:<id>"}, replaced atomically
      configs/<id hex>.json       the image config exactly as stored; id = sha256 of these bytes
      layers/<diff id hex>/
        diff/                     the extracted layer (an overlay lowerdir)
        size                      bytes of file content in diff/, as text

A layer is named by its diff id (sha256 of its uncompressed tar), so two
images that share a layer share one directory: overlay lowerdirs are
independent of each other, and whiteouts live inside the layer that made them.
An image is nothing but its config: the layers it needs are its
``rootfs.diff_ids``; its tags are the keys of repositories.json that point to it.

Writing an image, in order: every missing layer is extracted into a temp dir
under ``StateRoot.tmp`` (no lock held; the slow part); then, under the lock,
layers are renamed into place (one that appeared meanwhile wins and the copy
is dropped), the config is written, and tags are updated last. A failure rolls
back what this call added and removes its temp dirs, so a config never exists
without its layers and a tag never without its config.

A full filesystem (no blocks, no inodes, a quota) is such a failure: every
write raises ``DiskFull`` (a clear message, the store as it was), and the roll
back itself needs no space, so it cannot fail for the same reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from .archive import Progress, extract_layer, open_in_root
from .errors import Conflict, ImageInUse, ImageReferenced, InvalidValue, NoSuchImage, disk_full_as_error
from .paths import StateRoot
from .signals import parse_signal

DEFAULT_TAG = "latest"
_HEX_ID = re.compile(r"[0-9a-f]{64}")
_HEX_PREFIX = re.compile(r"[0-9a-f]{4,64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class ImageConfig:
    env: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: dict[str, dict] = field(default_factory=dict)
    volumes: dict[str, dict] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None

    @classmethod
    def from_raw(cls, raw: dict) -> "ImageConfig":
        c = raw.get("config") or {}
        return cls(
            env=list(c.get("Env") or []),
            cmd=c.get("Cmd"),
            entrypoint=c.get("Entrypoint"),
            working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            exposed_ports=dict(c.get("ExposedPorts") or {}),
            volumes=dict(c.get("Volumes") or {}),
            labels=dict(c.get("Labels") or {}),
            stop_signal=c.get("StopSignal") or None,
        )


@dataclass
class Image:
    id: str
    config: ImageConfig
    layers: list[str]
    repo_tags: list[str]
    created: str
    size: int
    raw_config: dict


# --- references --------------------------------------------------------------

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_PATH = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_NAME_MAX = 255


def normalize_reference(reference: str) -> str:
    """``name[:tag]`` checked against Docker's grammar, as ``name:tag`` in Docker's short form."""
    if "@" in reference:
        raise InvalidValue("reference", f"{reference!r}: digest references are not supported")
    name, tag = _split_tag(reference)
    if not _TAG.fullmatch(tag):
        raise InvalidValue("reference", f"{reference!r}: invalid tag format")
    _check_name(reference, name)
    return f"{_familiar(name)}:{tag}"


def _split_tag(reference: str) -> tuple[str, str]:
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, DEFAULT_TAG


def _check_name(reference: str, name: str) -> None:
    domain, path = _split_domain(name)
    if path != path.lower():
        raise InvalidValue("reference", f"{reference!r}: repository name must be lowercase")
    if not _PATH.fullmatch(path) or (domain is not None and not _DOMAIN.fullmatch(domain)):
        raise InvalidValue("reference", f"{reference!r}: invalid reference format")
    if len(name) > _NAME_MAX:
        raise InvalidValue("reference", f"{reference!r}: repository name must not be more than {_NAME_MAX} characters")
    if _HEX_ID.fullmatch(name):
        raise InvalidValue("reference", f"{reference!r}: cannot specify 64-byte hexadecimal strings")


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    # Docker's rule: only a first component that looks like a host is a registry.
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        return first, rest
    return None, name


def _familiar(name: str) -> str:
    for hub in ("docker.io/", "index.docker.io/"):
        if name.startswith(hub):
            name = name[len(hub) :]
            return name.removeprefix("library/") if name.count("/") == 1 else name
    return name


# --- Dockerfile-like changes (docker import --change) --------------------------


def parse_changes(lines: Iterable[str], base: dict | None = None) -> dict:
    """Apply ``ENV``/``CMD``/... lines to a config's "config" object (Docker's capitalised keys)."""
    config = dict(base or {})
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        handler = _CHANGES.get(word.upper())
        if handler is None:
            raise InvalidValue("change", f"{word} is not a supported instruction in {line!r}")
        rest = rest.strip()
        if not rest:
            raise InvalidValue("change", f"{word.upper()} requires an argument")
        handler(config, rest)
    return config


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidValue("change", f"{instruction} {rest!r}: {exc}") from None
    if "=" not in words[0]:  # the old "ENV KEY value with spaces" form
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidValue("change", f"{instruction} {key} needs a value")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidValue("change", f"{instruction} {rest!r}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs


def _env(config: dict, rest: str) -> None:
    env = list(config.get("Env") or [])
    for key, value in _pairs("ENV", rest):
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    config["Env"] = env


def _label(config: dict, rest: str) -> None:
    config["Labels"] = {**(config.get("Labels") or {}), **dict(_pairs("LABEL", rest))}


def _command(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None  # Dockerfile semantics: not a JSON array means shell form
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _cmd(config: dict, rest: str) -> None:
    config["Cmd"] = _command(rest)


def _entrypoint(config: dict, rest: str) -> None:
    config["Entrypoint"] = _command(rest)


def _workdir(config: dict, rest: str) -> None:
    config["WorkingDir"] = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", rest))


def _user(config: dict, rest: str) -> None:
    config["User"] = rest


def _expose(config: dict, rest: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for spec in rest.split():
        for port in expand_port_spec(spec):
            ports[port] = {}
    config["ExposedPorts"] = ports


def expand_port_spec(spec: str) -> list[str]:
    """``80``, ``53/udp``, ``8000-8002/tcp`` -> ["80/tcp"], ... as Docker keys them."""
    numbers, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidValue("port", f"{spec!r}: protocol must be tcp, udp or sctp")
    low, _, high = numbers.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise InvalidValue("port", f"{spec!r} is not a port or a port range") from None
    if not 1 <= first <= last <= 65535:
        raise InvalidValue("port", f"{spec!r} is out of range 1-65535")
    return [f"{n}/{proto}" for n in range(first, last + 1)]


def _volume(config: dict, rest: str) -> None:
    paths = None
    if rest.startswith("["):
        try:
            paths = json.loads(rest)
        except ValueError:
            pass
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        paths = rest.split()
    config["Volumes"] = {**(config.get("Volumes") or {}), **{p: {} for p in paths}}


def _stopsignal(config: dict, rest: str) -> None:
    parse_signal(rest)
    config["StopSignal"] = rest


def _onbuild(config: dict, rest: str) -> None:
    config["OnBuild"] = list(config.get("OnBuild") or []) + [rest]


_CHANGES: dict[str, Callable[[dict, str], None]] = {
    "ENV": _env,
    "LABEL": _label,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "WORKDIR": _workdir,
    "USER": _user,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "ONBUILD": _onbuild,
}


def host_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def rootfs_config(diff_ids: list[str], container_config: dict, created: str, comment: str) -> dict:
    """The image config of a rootfs import: what ``docker import`` writes."""
    return {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "comment": comment}],
    }


def encode_config(config: dict) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


# --- the store ---------------------------------------------------------------

Opener = Callable[[], object]  # returns a context manager giving a path or binary stream


@dataclass
class _NewImage:
    config: bytes
    diff_ids: list[str]
    openers: list[Opener | None]  # None: the layer is staged already
    tags: list[str]

    @property
    def hex(self) -> str:
        return hashlib.sha256(self.config).hexdigest()


class ImageStore:
    def __init__(self, state: StateRoot):
        self.state = state
        state.ensure()
        self.root = state.images
        self.configs = self.root / "configs"
        self.layers = self.root / "layers"
        self.configs.mkdir(exist_ok=True)
        self.layers.mkdir(exist_ok=True)
        self.repositories = self.root / "repositories.json"

    # reading

    def get(self, reference: str) -> Image:
        tags = self._read_tags()
        hex_id, _ = self._lookup(reference, tags)
        return self._image(hex_id, tags)

    def list(self) -> list[Image]:
        images = []
        tags = self._read_tags()
        for path in self.configs.glob("*.json"):
            try:
                images.append(self._image(path.stem, tags))
            except NoSuchImage:
                continue  # removed while we listed
        return sorted(images, key=_created_at, reverse=True)

    def layer_dirs(self, image: Image) -> list[Path]:
        """diff/ dirs top-most first, as overlayfs wants its lowerdir list."""
        dirs: list[Path] = []
        for diff_id in reversed(image.layers):
            path = self._layer_dir(diff_id) / "diff"
            # A repeated layer below its first use changes nothing, and overlayfs may refuse duplicates.
            if path not in dirs:
                dirs.append(path)
        return dirs

    # tags

    def tag(self, reference: str, new_reference: str) -> None:
        key = normalize_reference(new_reference)
        with self._locked(), self._no_space("cannot tag the image"):
            tags = self._read_tags()
            hex_id, _ = self._lookup(reference, tags)
            tags[key] = "sha256:" + hex_id
            self._write_tags(tags)

    def untag(self, reference: str) -> None:
        key = normalize_reference(reference)
        with self._locked(), self._no_space("cannot untag the image"):
            tags = self._read_tags()
            if key not in tags:
                raise NoSuchImage(reference)
            del tags[key]
            self._write_tags(tags)

    # removing

    def remove(self, reference: str, in_use_by: Iterable[str] = (), force: bool = False) -> list[str]:
        """``docker rmi``: returns "Untagged: name:tag" and "Deleted: sha256:..." lines.

        When containers use the image and force is set, its tags go but its
        config and layers stay (a dangling image): the containers' overlays
        still read those layers.
        """
        in_use_by = list(in_use_by)
        with self._locked(), self._no_space("cannot remove the image"):
            tags = self._read_tags()
            hex_id, by_tag = self._lookup(reference, tags)
            image_id = "sha256:" + hex_id
            own = sorted(t for t, v in tags.items() if v == image_id)
            if by_tag and len(own) > 1:
                return self._drop_tags(tags, [by_tag])
            if in_use_by and not force:
                raise ImageInUse(reference, in_use_by)
            if not by_tag and len(own) > 1 and not force:
                raise ImageReferenced(image_id)
            done = self._drop_tags(tags, own)
            if not in_use_by:
                done += self._delete_image(hex_id)
            return done

    def _drop_tags(self, tags: dict, names: list[str]) -> list[str]:
        for name in names:
            del tags[name]
        self._write_tags(tags)
        return [f"Untagged: {name}" for name in names]

    def _delete_image(self, hex_id: str) -> list[str]:
        layers = self._image(hex_id).layers
        (self.configs / f"{hex_id}.json").unlink()
        deleted = [f"Deleted: sha256:{hex_id}"]
        return deleted + [f"Deleted: {d}" for d in self._delete_unreferenced(layers)]

    def _delete_unreferenced(self, candidates: Iterable[str]) -> list[str]:
        used = self._referenced_layers()
        deleted = []
        for diff_id in dict.fromkeys(candidates):
            if diff_id not in used and self._layer_dir(diff_id).exists():
                self._discard_dir(self._layer_dir(diff_id))
                deleted.append(diff_id)
        return deleted

    def _referenced_layers(self) -> set[str]:
        used: set[str] = set()
        for path in self.configs.glob("*.json"):
            try:
                used.update(_diff_ids(json.loads(path.read_bytes())))
            except (OSError, ValueError, InvalidValue):
                continue
        return used

    # writing

    def import_rootfs(self, source, reference: str | None = None, changes: Iterable[str] = (), progress: Progress | None = None) -> Image:
        """``docker import``: one layer from a (possibly compressed) rootfs tarball."""
        tags = [normalize_reference(reference)] if reference else []
        container_config = parse_changes(changes)
        staged: dict[str, Path] = {}
        try:
            with self._no_space("cannot import the image"):
                diff_id = self._stage(staged, lambda: nullcontext(source), None, progress)
                created = now_rfc3339()
                config = rootfs_config([diff_id], container_config, created, "Imported from -")
                return self._store([_NewImage(encode_config(config), [diff_id], [None], tags)], staged)[0]
        finally:
            self._discard_staged(staged)

    def create(self, config: dict | bytes, layers: list, reference: str | None = None, progress: Progress | None = None) -> Image:
        """Store an image from its config and one source (path or binary stream) per diff id.

        Layers the store has already are not read at all, which makes
        rebuilding an unchanged image nearly free.
        """
        config_bytes = config if isinstance(config, bytes) else encode_config(config)
        diff_ids = _diff_ids(_json(config_bytes, "config"))
        if len(layers) != len(diff_ids):
            raise InvalidValue("layers", f"{len(layers)} layer sources for {len(diff_ids)} diff ids")
        tags = [normalize_reference(reference)] if reference else []
        new = _NewImage(config_bytes, diff_ids, [_rereadable(s) for s in layers], tags)
        staged: dict[str, Path] = {}
        try:
            with self._no_space("cannot store the image"):
                return self._store([new], staged, progress)[0]
        finally:
            self._discard_staged(staged)

    def load(self, source, progress: Progress | None = None) -> list[Image]:
        """``docker load``: a docker-save tar and/or an OCI image layout, maybe compressed."""
        with self._no_space("cannot load the images"):
            work = Path(tempfile.mkdtemp(prefix="load-", dir=self.state.tmp))
        staged: dict[str, Path] = {}
        try:
            with self._no_space("cannot load the images"):
                # The outer tar is untrusted too: same safe extraction, but no whiteout semantics.
                extract_layer(source, work, progress, whiteouts=False)
                new = _read_archive(work)
                return self._store(new, staged)
        finally:
            self._discard_staged(staged)
            self._discard_dir(work)

    def _store(self, new: list[_NewImage], staged: dict[str, Path], progress: Progress | None = None) -> list[Image]:
        for image in new:
            for diff_id, opener in zip(image.diff_ids, image.openers):
                if diff_id not in staged and not self._has_layer(diff_id):
                    self._stage(staged, opener, diff_id, progress)
        with self._locked():
            self._commit(new, staged)
        return [self._image(image.hex) for image in new]

    def _stage(self, staged: dict[str, Path], opener: Opener, expected: str | None, progress) -> str:
        """Extract one layer into a temp dir; returns its diff id (checked against expected)."""
        tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=self.state.tmp))
        try:
            # The layer root becomes the container's "/": readable by all, whatever our umask.
            (tmp / "diff").mkdir()
            os.chmod(tmp / "diff", 0o755)
            with opener() as source:
                info = extract_layer(source, tmp / "diff", progress)
            if expected and info.diff_id != expected:
                raise InvalidValue("layer", f"content has diff id {info.diff_id} but the config says {expected}")
            (tmp / "size").write_text(str(info.size))
        except BaseException:
            self._discard_dir(tmp)
            raise
        if info.diff_id in staged:
            self._discard_dir(tmp)
        else:
            staged[info.diff_id] = tmp
        return info.diff_id

    def _commit(self, new: list[_NewImage], staged: dict[str, Path]) -> None:
        added_layers: list[str] = []
        added_configs: list[Path] = []
        try:
            for image in new:
                for diff_id, opener in zip(image.diff_ids, image.openers):
                    if self._place_layer(diff_id, opener, staged):
                        added_layers.append(diff_id)
                if self._write_config(image):
                    added_configs.append(self.configs / f"{image.hex}.json")
            tags = self._read_tags()
            for image in new:
                tags.update({tag: "sha256:" + image.hex for tag in image.tags})
            self._write_tags(tags)
        except BaseException:
            for path in added_configs:
                path.unlink(missing_ok=True)
            self._delete_unreferenced(added_layers)
            raise

    def _place_layer(self, diff_id: str, opener: Opener | None, staged: dict[str, Path]) -> bool:
        if self._has_layer(diff_id):
            return False
        if diff_id not in staged:
            # It existed when we looked without the lock and was removed since: read it again.
            if opener is None:
                raise Conflict(f"layer {diff_id} vanished while the image was stored; try again")
            self._stage(staged, opener, diff_id, None)
        self._discard_dir(self._layer_dir(diff_id))  # a dir without diff/ is debris, not a layer
        os.rename(staged.pop(diff_id), self._layer_dir(diff_id))
        return True

    def _write_config(self, image: _NewImage) -> bool:
        path = self.configs / f"{image.hex}.json"
        if path.exists():
            return False
        _write_atomic(path, image.config)
        return True

    # files

    def _image(self, hex_id: str, tags: dict[str, str] | None = None) -> Image:
        try:
            raw_bytes = (self.configs / f"{hex_id}.json").read_bytes()
        except FileNotFoundError:
            raise NoSuchImage("sha256:" + hex_id) from None
        raw = json.loads(raw_bytes)
        image_id = "sha256:" + hex_id
        layers = _diff_ids(raw)
        return Image(
            id=image_id,
            config=ImageConfig.from_raw(raw),
            layers=layers,
            repo_tags=sorted(t for t, v in (tags if tags is not None else self._read_tags()).items() if v == image_id),
            created=raw.get("created") or "",
            size=sum(self._layer_size(d) for d in dict.fromkeys(layers)),
            raw_config=raw,
        )

    def _lookup(self, reference: str, tags: dict) -> tuple[str, str | None]:
        """(id hex, the tag it was found by or None) in Docker's order: tag first, then id."""
        if reference.startswith("sha256:"):
            return self._by_prefix(reference[len("sha256:") :], reference), None
        try:
            key = normalize_reference(reference)
        except InvalidValue:
            if _HEX_PREFIX.fullmatch(reference):
                return self._by_prefix(reference, reference), None
            raise
        if key in tags:
            return tags[key].removeprefix("sha256:"), key
        if _HEX_PREFIX.fullmatch(reference):
            return self._by_prefix(reference, reference), None
        raise NoSuchImage(reference)

    def _by_prefix(self, prefix: str, reference: str) -> str:
        if not _HEX_PREFIX.fullmatch(prefix):
            raise NoSuchImage(reference)
        matches = [p.stem for p in self.configs.glob(f"{prefix}*.json") if _HEX_ID.fullmatch(p.stem)]
        if len(matches) != 1:  # none, or an ambiguous prefix
            raise NoSuchImage(reference)
        return matches[0]

    def _layer_dir(self, diff_id: str) -> Path:
        return self.layers / diff_id.removeprefix("sha256:")

    def _has_layer(self, diff_id: str) -> bool:
        return (self._layer_dir(diff_id) / "diff").is_dir()

    def _layer_size(self, diff_id: str) -> int:
        try:
            return int((self._layer_dir(diff_id) / "size").read_text())
        except (OSError, ValueError):
            return 0

    def _read_tags(self) -> dict[str, str]:
        try:
            return json.loads(self.repositories.read_bytes())
        except FileNotFoundError:
            return {}

    def _write_tags(self, tags: dict[str, str]) -> None:
        _write_atomic(self.repositories, json.dumps(tags, indent=2, sort_keys=True).encode())

    @contextmanager
    def _locked(self):
        # flock, not fcntl record locks: it excludes threads of one process too (one open file each).
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _no_space(self, action: str):
        return disk_full_as_error(action, self.state.root)

    def _discard_dir(self, path: Path) -> None:
        """Make path vanish at once (rename), then delete it at leisure."""
        if not path.exists():
            return
        try:
            grave = Path(tempfile.mkdtemp(prefix="rm-", dir=self.state.tmp))
        except OSError:
            # No inode left for the grave (a full disk): delete in place, it frees what it can.
            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            os.rename(path, grave / "x")
        finally:
            shutil.rmtree(grave, ignore_errors=True)

    def _discard_staged(self, staged: dict[str, Path]) -> None:
        for path in staged.values():
            shutil.rmtree(path, ignore_errors=True)
        staged.clear()


def _created_at(image: Image) -> datetime:
    try:
        created = datetime.fromisoformat(image.created)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rereadable(source) -> Opener:
    """An opener that yields source from where it starts now, even on a second call."""
    if isinstance(source, (str, os.PathLike)):
        return lambda: nullcontext(source)
    start = source.tell() if getattr(source, "seekable", lambda: False)() else None

    def again():
        if start is not None:
            source.seek(start)
        return nullcontext(source)

    return again


def _json(data: bytes, what: str):
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidValue(what, f"not valid JSON: {exc}") from None


def _diff_ids(config) -> list[str]:
    try:
        diff_ids = config["rootfs"]["diff_ids"] or []
    except (KeyError, TypeError):
        raise InvalidValue("config", "rootfs.diff_ids is missing") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids):
        raise InvalidValue("config", "rootfs.diff_ids must be a list of sha256 digests")
    return diff_ids


# --- reading docker-save and OCI layout archives -----------------------------

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_MAX_INDEX_DEPTH = 8


def _read_archive(work: Path) -> list[_NewImage]:
    if (work / "manifest.json").exists():
        new = _read_docker_save(work)
    elif (work / "index.json").exists():
        new = _read_oci_layout(work)
    else:
        raise InvalidValue("archive", "neither manifest.json (docker save) nor index.json (OCI layout) found")
    if not new:
        raise InvalidValue("archive", "the archive holds no image")
    return new


def _read_file(work: Path, name: str) -> bytes:
    with _open_member(work, name) as f:
        return f.read()


def _open_member(work: Path, name: str):
    try:
        return open_in_root(work, name)
    except OSError as exc:
        raise InvalidValue("archive", f"{name}: {exc.strerror or exc}") from None


def _read_docker_save(work: Path) -> list[_NewImage]:
    manifest = _json(_read_file(work, "manifest.json"), "manifest.json")
    if not isinstance(manifest, list):
        raise InvalidValue("manifest.json", "expected a list of images")
    return [_docker_save_image(work, entry) for entry in manifest]


def _docker_save_image(work: Path, entry) -> _NewImage:
    try:
        config_name, layer_names = entry["Config"], entry["Layers"]
        repo_tags = entry.get("RepoTags") or []
    except (KeyError, TypeError, AttributeError):
        raise InvalidValue("manifest.json", "each entry needs Config and Layers") from None
    config = _read_file(work, config_name)
    return _new_image(work, config, list(layer_names), [normalize_reference(t) for t in repo_tags])


def _new_image(work: Path, config: bytes, layer_names: list[str], tags: list[str]) -> _NewImage:
    diff_ids = _diff_ids(_json(config, "config"))
    if len(diff_ids) != len(layer_names):
        raise InvalidValue("archive", f"{len(layer_names)} layers for {len(diff_ids)} diff ids in the config")
    openers = [partial(_open_member, work, name) for name in layer_names]
    return _NewImage(config, diff_ids, openers, tags)


def _read_oci_layout(work: Path) -> list[_NewImage]:
    index = _json(_read_file(work, "index.json"), "index.json")
    new = []
    for descriptor in _descriptors(index, "index.json"):
        tags = _oci_tags(descriptor.get("annotations") or {})
        manifest = _oci_manifest(work, descriptor, 0)
        if manifest is not None:
            new.append(_oci_image(work, manifest, tags))
    return new


def _descriptors(index, what: str) -> list[dict]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
        raise InvalidValue(what, "manifests must be a list of descriptors")
    return manifests


def _oci_tags(annotations: dict) -> list[str]:
    for key in _NAME_ANNOTATIONS:
        name = annotations.get(key)
        # A bare ref.name ("latest") is only a tag, with no repository to put it on.
        if name and (":" in name or "/" in name):
            return [normalize_reference(name)]
    return []


def _blob(work: Path, descriptor: dict) -> bytes:
    digest = descriptor.get("digest", "")
    if not _DIGEST.fullmatch(digest):
        raise InvalidValue("archive", f"unsupported digest {digest!r}")
    data = _read_file(work, "blobs/sha256/" + digest[len("sha256:") :])
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise InvalidValue("archive", f"blob {digest} does not match its digest")
    return data


def _oci_manifest(work: Path, descriptor: dict, depth: int) -> dict | None:
    """Follow nested indexes down to the linux/<host arch> image manifest."""
    if depth > _MAX_INDEX_DEPTH:
        raise InvalidValue("archive", "indexes nested too deeply")
    document = _json(_blob(work, descriptor), "manifest")
    media_type = descriptor.get("mediaType") or document.get("mediaType")
    if media_type not in _INDEX_TYPES and "manifests" not in document:
        return document
    for child in _descriptors(document, "index"):
        if _runs_here(child.get("platform")):
            found = _oci_manifest(work, child, depth + 1)
            if found is not None:
                return found
    return None


def _runs_here(platform_: dict | None) -> bool:
    if not platform_:
        return True
    return platform_.get("os") == "linux" and platform_.get("architecture") == host_architecture()


def _oci_image(work: Path, manifest: dict, tags: list[str]) -> _NewImage:
    try:
        config_descriptor, layers = manifest["config"], manifest["layers"]
    except (KeyError, TypeError):
        raise InvalidValue("manifest", "needs config and layers") from None
    config = _blob(work, config_descriptor)
    names = []
    for layer in layers:
        digest = layer.get("digest", "") if isinstance(layer, dict) else ""
        if not _DIGEST.fullmatch(digest):
            raise InvalidValue("manifest", f"unsupported layer digest {digest!r}")
        names.append("blobs/sha256/" + digest[len("sha256:") :])
    return _new_image(work, config, names, tags)
