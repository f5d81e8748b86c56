"""Stand-ins for the services, the runtime and the database, so the protocol and handlers run alone.

``FakeServices`` follows the contract of ``console.services`` (sync
functions, rows with the model's attributes, ``runtime.errors`` for
failures) and keeps everything in memory. ``FakeRuntime`` is a state root
in a temporary folder in the runtime's layout, where tests write records,
logs and exit files by hand, and whose "exec" runs the command on the host.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runtime.containers import ExecSession, set_window_size
from console.errors import Forbidden
from runtime.errors import (
    Conflict,
    ContainerNotRunning,
    ContainerRunning,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    NotFound,
    StartFailed,
)
from runtime.paths import StateRoot


class Related(list):
    """What a related manager offers the API: all() and exists()."""

    def all(self):
        return list(self)

    def exists(self):
        return bool(self)

    def select_related(self, *names):
        return self


def now():
    return datetime.now(timezone.utc)


@dataclass
class Tag:
    name: str


@dataclass
class Image:
    id: str
    created: datetime
    size: int = 1000
    config: dict = field(default_factory=dict)
    tags: Related = field(default_factory=Related)


@dataclass
class Network:
    id: str
    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    bridge_name: str = ""
    internal: bool = False
    predefined: bool = True
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    created: datetime = field(default_factory=now)
    endpoints: Related = field(default_factory=Related)


@dataclass
class Volume:
    name: str
    driver: str = "local"
    mountpoint: str = ""
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    created: datetime = field(default_factory=now)
    mounts: Related = field(default_factory=Related)


@dataclass
class PortMapping:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = "0.0.0.0"
    host_port: int | None = None


@dataclass
class Container:
    id: str
    name: str
    image: Image | None
    image_ref: str
    config: dict
    host_config: dict
    path: str
    args: list
    created: datetime
    networking_config: dict = field(default_factory=dict)
    state: str = "created"
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restart_count: int = 0
    host: str = "test"
    ports: Related = field(default_factory=Related)
    mounts: Related = field(default_factory=Related)
    endpoints: Related = field(default_factory=Related)


BUSYBOX_CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
    "history": [{"created": "2024-01-01T00:00:00Z", "comment": "busybox"}],
}


class FakeVolumeServices:
    """The volume services over the FakeStore's list."""

    store: "FakeStore"

    def create_volume(self, body, user=None, source="api"):
        name = body.get("Name") or "a" * 64
        found = self.store.get_volume(name)
        if found is None:
            found = Volume(name, mountpoint=f"/var/lib/berth/volumes/{name}/_data", labels=body.get("Labels") or {})
            self.store.volumes.append(found)
        self.calls.append(("volume.create", name))
        return found

    def remove_volume(self, name, force=False, user=None, source="api"):
        from runtime.errors import NotFound

        if self.store.get_volume(name) is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        self.store.volumes = [v for v in self.store.volumes if v.name != name]
        self.calls.append(("volume.remove", name, force))

    def prune_volumes(self, filters=None, all=False, user=None, source="api"):
        self.calls.append(("volume.prune", all))
        return [], 0


class FakeServices(FakeVolumeServices):
    """The services contract, in memory. ``events`` (LocalEvents) hears every change."""

    def __init__(self, events=None):
        self.events = events
        self.lock = threading.RLock()
        self.containers: dict[str, Container] = {}
        busybox = Image("sha256:" + "b" * 64, datetime(2024, 1, 1, tzinfo=timezone.utc), 2_000_000,
                        BUSYBOX_CONFIG, Related([Tag("busybox:latest")]))
        self.images: dict[str, Image] = {busybox.id: busybox}
        self.calls: list[tuple] = []
        self.start_failure: StartFailed | None = None

    # helpers

    def _publish(self, row: Container, removed: bool = False) -> None:
        if self.events is not None:
            self.events.publish(row.id, row.state, row.exit_code, removed)

    def _image(self, reference: str) -> Image:
        tagged = ":" in reference.rsplit("/", 1)[-1] or reference.startswith("sha256:")
        full = reference if tagged else f"{reference}:latest"
        for image in self.images.values():
            if full in {t.name for t in image.tags} or image.id == reference or image.id == "sha256:" + reference:
                return image
        raise NoSuchImage(full)

    # containers

    def create_container(self, body: dict, name: str | None = None, user=None, source="api") -> Container:
        self.calls.append(("create", body, name))
        image = self._image(body.get("Image") or "")
        with self.lock:
            name = (name or "").lstrip("/") or f"fake_{secrets.token_hex(3)}"
            for row in self.containers.values():
                if row.name == name:
                    raise NameInUse(name, row.id)
            config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
            argv = (body.get("Entrypoint") or []) + (body.get("Cmd") or image.config["config"]["Cmd"])
            row = Container(secrets.token_hex(32), name, image, body.get("Image"), config,
                            dict(body.get("HostConfig") or {}), argv[0], argv[1:], now(),
                            networking_config=body.get("NetworkingConfig") or {})
            self.containers[row.id] = row
        return row

    def get_container(self, ref: str) -> Container:
        with self.lock:
            key = ref.lstrip("/")
            if key in self.containers:
                return self.containers[key]
            for row in self.containers.values():
                if row.name == key:
                    return row
            matches = [row for cid, row in self.containers.items() if key and cid.startswith(key)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidValue("container", f"multiple containers found with provided prefix: {key}")
        raise NoSuchContainer(ref)

    def list_containers(self, all=False, limit=None, filters=None) -> list[Container]:
        with self.lock:
            rows = sorted(self.containers.values(), key=lambda r: r.created, reverse=True)
        return [r for r in rows if all or r.state == "running"]

    def start_container(self, ref, user=None, source="api"):
        row = self.get_container(ref)
        if row.state == "running":
            return row, False
        if self.start_failure is not None:
            failure = self.start_failure
            row.exit_code, row.error = failure.exit_code, str(failure)
            if row.host_config.get("AutoRemove"):
                self.remove_container(row.id, force=True)
            raise failure
        row.state, row.pid, row.started_at, row.exit_code = "running", 4242, now(), 0
        self._publish(row)
        return row, True

    def exit(self, ref, code: int) -> Container:
        """What the worker does when PID 1 ends (a test helper, not part of the contract)."""
        row = self.get_container(ref)
        row.state, row.pid, row.exit_code, row.finished_at = "exited", 0, code, now()
        self._publish(row)
        if row.host_config.get("AutoRemove"):
            self.remove_container(row.id, force=True)
        return row

    def stop_container(self, ref, timeout=None, signal=None, user=None, source="api"):
        self.calls.append(("stop", ref, timeout, signal))
        row = self.get_container(ref)
        if row.state != "running":
            return row, False
        return self.exit(row.id, 137), True

    def restart_container(self, ref, timeout=None, user=None, source="api"):
        self.stop_container(ref, timeout)
        return self.start_container(ref)[0]

    def kill_container(self, ref, signal="SIGKILL", user=None, source="api"):
        self.calls.append(("kill", ref, signal))
        row = self.get_container(ref)
        if row.state != "running":
            raise ContainerNotRunning(row.id)
        return self.exit(row.id, 137)

    def pause_container(self, ref, user=None, source="api"):
        row = self.get_container(ref)
        row.state = "paused"
        return row

    def unpause_container(self, ref, user=None, source="api"):
        row = self.get_container(ref)
        row.state = "running"
        return row

    def remove_container(self, ref, force=False, volumes=False, user=None, source="api"):
        row = self.get_container(ref)
        if row.state == "running" and not force:
            raise ContainerRunning(ref)
        with self.lock:
            self.containers.pop(row.id, None)
        self._publish(row, removed=True)

    def rename_container(self, ref, new_name, user=None, source="api"):
        row = self.get_container(ref)
        row.name = new_name.lstrip("/")
        return row

    def refresh_container(self, ref):
        return self.get_container(ref)

    # networks (the handlers' side: shapes and statuses; the rules are tested with the real services)

    def create_network(self, body):
        self.calls.append(("network.create", body))
        if body.get("Name") in ("bridge", "host", "none", "taken"):
            raise Conflict(f"network with name {body['Name']} already exists")
        return Network(secrets.token_hex(32), body["Name"], predefined=False)

    def remove_network(self, ref):
        self.calls.append(("network.remove", ref))
        if ref in ("bridge", "host", "none"):
            raise Forbidden(f"{ref} is a pre-defined network and cannot be removed")
        if ref != "mynet":
            raise NotFound(f"network {ref} not found")

    def prune_networks(self, filters=None):
        self.calls.append(("network.prune", filters))
        return ["unused"]

    def connect_network(self, network_ref, container_ref, endpoint_config=None):
        self.calls.append(("network.connect", network_ref, self.get_container(container_ref).id, endpoint_config))

    def disconnect_network(self, network_ref, container_ref, force=False):
        self.calls.append(("network.disconnect", network_ref, self.get_container(container_ref).id, force))

    # images

    def list_images(self):
        return list(self.images.values())

    def get_image(self, ref):
        return self._image(ref)

    def tag_image(self, ref, repo, tag):
        image = self._image(ref)
        image.tags.append(Tag(f"{repo}:{tag}"))

    def remove_image(self, ref, force=False):
        image = self._image(ref)
        del self.images[image.id]
        return [{"Untagged": t.name} for t in image.tags] + [{"Deleted": image.id}]

    def import_image(self, fileobj_or_path, reference=None, changes=()):
        data = Path(fileobj_or_path).read_bytes()
        self.calls.append(("import", len(data), reference, tuple(changes)))
        image = Image("sha256:" + secrets.token_hex(32), now(), len(data), dict(BUSYBOX_CONFIG),
                      Related([Tag(reference)] if reference else []))
        self.images[image.id] = image
        return image

    def load_images(self, fileobj_or_path):
        data = Path(fileobj_or_path).read_bytes()
        self.calls.append(("load", len(data)))
        if not data.startswith(b"LOAD"):
            raise InvalidValue("archive", "not a docker save archive")
        image = Image("sha256:" + secrets.token_hex(32), now(), len(data), dict(BUSYBOX_CONFIG),
                      Related([Tag("loaded:1.0")]))
        self.images[image.id] = image
        return [image]


class FakeStore:
    def __init__(self):
        self.networks = [Network("n" * 64, "bridge", subnet="10.88.0.0/16", gateway="10.88.0.1", bridge_name="berth0"),
                         Network("h" * 64, "host", driver="host"), Network("0" * 64, "none", driver="null")]
        self.volumes = [Volume("data", mountpoint="/var/lib/berth/volumes/data/_data")]

    def network_by_name(self, name):
        return next((n for n in self.networks if n.name == name), None)

    def list_networks(self, filters=None):
        # The filters are the services' rule, tested with them (tests/console/test_network_services.py).
        return sorted(self.networks, key=lambda n: n.name)

    def get_network(self, ref):
        return next((n for n in self.networks if n.id == ref or n.name == ref), None)

    def list_volumes(self):
        return list(self.volumes)

    def get_volume(self, name):
        return next((v for v in self.volumes if v.name == name), None)


class FakeRuntime:
    """A state root in the runtime's layout; exec runs on the host."""

    def __init__(self, root: Path):
        self.state = StateRoot(Path(root), "berth-test-none")
        self.state.ensure()
        self.sockets_dir = self.state.root / "sock"
        self.sockets_dir.mkdir(exist_ok=True)

    def log_path(self, container_id: str) -> Path:
        return self.state.container_dir(container_id) / "ctr.log"

    def write_record(self, container_id: str, status: str, started_at: str = "", error: str = "") -> None:
        directory = self.state.container_dir(container_id)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rootfs").mkdir(exist_ok=True)
        record = {"id": container_id, "state": {"status": status, "started_at": started_at, "error": error,
                                                 "exit_code": 0}}
        temporary = directory / "container.json.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, directory / "container.json")

    def log(self, container_id: str, stream: str, text: bytes, partial: bool = False) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000+00:00")
        line = f"{stamp} {stream} {'P' if partial else 'F'} ".encode() + text + b"\n"
        with open(self.log_path(container_id), "ab") as log:
            log.write(line)

    def exit(self, container_id: str, code: int) -> None:
        (self.state.exits / container_id).write_text(str(code))

    def open_exec(self, reference, cmd, tty=False, env=(), user="", workdir="", stdin=False, size=None):
        if cmd and cmd[0] == "nosuchcmd":
            message = ('time="2026-01-01T00:00:00Z" level=error msg="exec failed: unable to start container '
                       'process: exec: \\"nosuchcmd\\": executable file not found in $PATH"')
            cmd = ["sh", "-c", f"echo '{message}' >&2; exit 255"]
        if not tty:
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return ExecSession(process)
        master, slave = os.openpty()
        if size is not None:
            set_window_size(slave, *size)
        process = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        return ExecSession(process, master=master)
