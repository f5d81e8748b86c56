"""The run form: ``docker run``'s options as a web form, and the create body they make.

The form checks only what the body cannot carry (shell words, sizes, CPU
counts, port rows); every rule of the body itself is the API's, so a refusal
reads as the API words it. ``create_body`` is what the CLI would send::

    image, command, env, hostname, volumes (/dst)  ->  Config
    --rm, restart, network, ports, -P, volumes (src:dst), volumes-from,
    links, memory, cpus                             ->  HostConfig
    ip                                              ->  NetworkingConfig.EndpointsConfig[network]

``place_error`` puts an error of the services next to the field it is about,
by its class, its field and its words; what it cannot place is the form's.
"""

from __future__ import annotations

import re
import shlex
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError

from runtime.errors import (
    BerthError,
    Conflict,
    InvalidValue,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    NotFound,
    PortAllocated,
    StartFailed,
)
from runtime.images import expand_port_spec

from . import links
from .docker_config import container_network_target, read_create_body
from .errors import NetworkingFailed
from .specs import parse_size
from .volume_services import VolumeNotFound

RESTART_CHOICES = [("no", "no"), ("on-failure", "on-failure"), ("always", "always"),
                   ("unless-stopped", "unless-stopped")]
PROTOCOL_CHOICES = [("tcp", "tcp"), ("udp", "udp")]
BUILTIN_NETWORKS = ("bridge", "host", "none")
MAX_PORT_ROWS = 100
NANOS = Decimal(1_000_000_000)
INT64_MAX = (1 << 63) - 1  # Docker's numbers are Go int64s
_LIST_SEPARATORS = re.compile(r"[\s,]+")

# InvalidValue.field (as the services name it) -> the form field it is about.
FIELD_OF_INVALID = {
    "name": "name", "image": "image", "reference": "image", "hostname": "hostname", "env": "env",
    "cmd": "command", "restart policy": "restart", "network mode": "network", "endpoint settings": "ip",
    "memory": "memory", "memory swap": "memory", "cpus": "cpus", "binds": "volumes", "mounts": "volumes",
    "volume": "volumes", "volume name": "volumes", "tmpfs": "volumes", "volumes from": "volumes_from",
    "links": "links",
}
_BIND_FAILED = re.compile(r"Bind for ([0-9.]+):(\d+) failed")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _check_with_the_api(fragment: dict) -> None:
    """The API's own reading of a part of a body (its InvalidValue, with its message)."""
    read_create_body({"Image": "-", **fragment})


# --- the form -------------------------------------------------------------------------------


class RunForm(forms.Form):
    image = forms.CharField(widget=forms.Select)
    name = forms.CharField(required=False, help_text="Empty: a generated name.")
    command = forms.CharField(required=False, help_text="Shell words, as after the image on docker run. "
                                                        "Empty: the image's command.")
    env = forms.CharField(label="Environment", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                          help_text="One VAR=value a line.")
    auto_remove = forms.BooleanField(label="Remove it when it exits (--rm)", required=False)
    restart = forms.ChoiceField(label="Restart policy", choices=RESTART_CHOICES, initial="no")
    restart_max = forms.IntegerField(label="Maximum retries", required=False, min_value=0, max_value=INT64_MAX,
                                     help_text="on-failure only; empty: no limit.")
    network = forms.CharField(widget=forms.Select, initial="bridge")
    ip = forms.CharField(label="IPv4 address", required=False,
                         help_text="A fixed address; user-defined networks only.")
    publish_all = forms.BooleanField(label="Publish every exposed port (-P)", required=False)
    hostname = forms.CharField(required=False)
    memory = forms.CharField(label="Memory limit", required=False, help_text='"256m", "1g"; empty: none.')
    cpus = forms.CharField(label="CPUs", required=False, help_text='"0.5", "2"; empty: no limit.')
    volumes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                              help_text="One -v a line: /host/dir:/dst[:ro], name:/dst, or /dst (anonymous).")
    volumes_from = forms.CharField(label="Volumes from", required=False,
                                   help_text="Containers, each CONTAINER[:ro|rw], separated by spaces or commas.")
    links = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                            help_text="One NAME[:ALIAS] a line.")

    def __init__(self, *args, images=(), networks=(), containers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].widget.choices = self._with_submitted("image", image_choices(images))
        self.fields["network"].widget.choices = self._with_submitted("network",
                                                                     network_choices(networks, containers))

    def _with_submitted(self, field: str, choices: list) -> list:
        """The choices, plus what was posted if it is not one of them, so a refused value still shows."""
        submitted = self.data.get(field) if self.is_bound else None
        offered = {value for group in choices for value in
                   ([v for v, _ in group[1]] if isinstance(group[1], list) else [group[0]])}
        if submitted and submitted not in offered:
            return [(submitted, submitted), *choices]
        return choices

    def clean_command(self) -> list[str] | None:
        text = self.cleaned_data["command"]
        try:
            return shlex.split(text) or None
        except ValueError as error:
            raise ValidationError(f"invalid command: {error}") from None

    def clean_env(self) -> list[str]:
        return _lines(self.cleaned_data["env"])

    def clean_memory(self) -> int:
        text = self.cleaned_data["memory"].strip()
        if not text:
            return 0
        try:
            size = parse_size(text)
        except InvalidValue as error:
            raise ValidationError(error.reason) from None
        if size > INT64_MAX:  # the kernel's limit is an int64: runc would refuse it only at start
            raise ValidationError(f"invalid memory limit {text}: value out of range")
        return size

    def clean_cpus(self) -> int:
        """Docker's NanoCPUs: a decimal number of CPUs, in billionths."""
        text = self.cleaned_data["cpus"].strip()
        if not text:
            return 0
        try:
            nanos = Decimal(text) * NANOS
        except InvalidOperation:
            raise ValidationError(f"failed to parse {text} as a rational number") from None
        if not nanos.is_finite():
            raise ValidationError(f"failed to parse {text} as a rational number")
        if nanos != nanos.to_integral_value():
            raise ValidationError("value is too precise")
        if not 0 <= nanos <= INT64_MAX:
            raise ValidationError(f"invalid value {text} for CPUs: value out of range")
        return int(nanos)

    def clean_volumes(self) -> list[str]:
        return _lines(self.cleaned_data["volumes"])

    def clean_volumes_from(self) -> list[str]:
        return [part for part in _LIST_SEPARATORS.split(self.cleaned_data["volumes_from"]) if part]

    def clean_links(self) -> list[str]:
        return _lines(self.cleaned_data["links"])

    def clean_network(self) -> str:
        return self.cleaned_data["network"].strip() or "bridge"


def image_choices(images) -> list[tuple[str, str]]:
    """Every tag of the local images (``services.list_images()``), sorted."""
    tags = sorted(tag.name for image in images for tag in image.tags.all())
    return [(tag, tag) for tag in tags]


def network_choices(networks, containers) -> list:
    """The built-in modes, user networks (``list_networks()``), and ``container:NAME`` for each container."""
    user_networks = [(n.name, n.name) for n in networks if n.name not in BUILTIN_NETWORKS]
    choices = [("Networks", [(name, name) for name in BUILTIN_NETWORKS] + user_networks)]
    joined = [(f"container:{c.name}", f"container:{c.name}") for c in containers]
    if joined:
        choices.append(("Another container's network", joined))
    return choices


class PortForm(forms.Form):
    """One ``-p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]``; a range of container ports maps onto
    a host range of the same length, or onto free host ports."""

    host_ip = forms.CharField(label="Host IP", required=False)
    host_port = forms.CharField(label="Host port", required=False, help_text="Empty: any free port.")
    container_port = forms.CharField(label="Container port", required=False)
    protocol = forms.ChoiceField(choices=PROTOCOL_CHOICES, initial="tcp")

    def clean(self):
        data = super().clean()
        data["bindings"] = {}
        host_ip = data.get("host_ip", "").strip()
        host_port = data.get("host_port", "").strip()
        container_port = data.get("container_port", "").strip()
        if not container_port:
            if host_ip or host_port:
                given = ":".join(part for part in (host_ip, host_port) if part)
                self.add_error("container_port", f"no port specified: {given}:<empty>")
            return data
        container_port, slash, typed_protocol = container_port.partition("/")  # "53/udp", as after -p
        keys = _container_port_keys(container_port, typed_protocol if slash else data.get("protocol") or "tcp")
        host_ports = _host_ports(host_port, len(keys))
        if host_ports is None:
            self.add_error("host_port", f"invalid ranges specified for container and host Ports: "
                                        f"{container_port} and {host_port}")
            return data
        bindings = {key: [{"HostIp": host_ip, "HostPort": port}] for key, port in zip(keys, host_ports)}
        try:
            _check_with_the_api({"HostConfig": {"PortBindings": bindings}})
        except InvalidValue as error:
            self.add_error(_port_field(str(error)), str(error))
            return data
        data["bindings"] = bindings
        return data


def _container_port_keys(text: str, protocol: str) -> list[str]:
    """``80`` -> ["80/tcp"]; ``80-82`` -> three keys; anything else as given, for the API to refuse."""
    try:
        return expand_port_spec(f"{text}/{protocol}")
    except InvalidValue:
        return [f"{text}/{protocol}"]


def _host_ports(text: str, count: int) -> list[str] | None:
    """One host port per container port; None when a host range does not match the container range."""
    if not text or count == 1:
        return [text] * count
    low, dash, high = text.partition("-")
    if not (dash and low.isdigit() and high.isdigit() and int(high) - int(low) + 1 == count):
        return None
    return [str(port) for port in range(int(low), int(high) + 1)]


def _port_field(message: str) -> str:
    if "IP address" in message:
        return "host_ip"
    if "hostPort" in message:
        return "host_port"
    return "container_port"


class BasePortFormSet(forms.BaseFormSet):
    def port_bindings(self) -> dict:
        """Every row's bindings, merged (two rows may publish one container port twice)."""
        merged: dict[str, list] = {}
        for form in self.forms:
            for key, bindings in (form.cleaned_data or {}).get("bindings", {}).items():
                merged.setdefault(key, []).extend(bindings)
        return merged


def port_formset(extra: int = 3):
    return forms.formset_factory(PortForm, formset=BasePortFormSet, extra=max(0, min(extra, MAX_PORT_ROWS)),
                                 max_num=MAX_PORT_ROWS, validate_max=True)


# --- the body -------------------------------------------------------------------------------


def create_body(data: dict, port_bindings: dict) -> dict:
    """Docker's create body for a valid form's ``cleaned_data``, as ``docker run -d`` sends it."""
    binds = [spec for spec in data["volumes"] if ":" in spec]
    anonymous = [spec for spec in data["volumes"] if ":" not in spec]
    network = data["network"]
    body = {
        "Image": data["image"],
        "Cmd": data["command"],
        "Env": data["env"],
        "Hostname": data["hostname"].strip(),
        "ExposedPorts": {key: {} for key in port_bindings} or None,
        "Volumes": {path: {} for path in anonymous} or None,
        "HostConfig": {
            "AutoRemove": data["auto_remove"],
            "RestartPolicy": {"Name": data["restart"], "MaximumRetryCount": data["restart_max"] or 0},
            "NetworkMode": network,
            "PortBindings": port_bindings or None,
            "PublishAllPorts": data["publish_all"],
            "Binds": binds or None,
            "VolumesFrom": data["volumes_from"] or None,
            "Links": data["links"] or None,
            "Memory": data["memory"],
            "NanoCpus": data["cpus"],
        },
    }
    if data["ip"].strip():
        body["NetworkingConfig"] = {"EndpointsConfig": {network: {"IPAMConfig": {"IPv4Address": data["ip"].strip()}}}}
    return body


# --- errors of the services, next to their fields ----------------------------------------


def place_error(form: RunForm, ports, error: BerthError) -> None:
    """Add ``error`` to the field it is about (or to a port row, or to the form)."""
    message = str(error)
    if _port_row_error(ports, error, message):
        return
    form.add_error(_field_of(form.cleaned_data, error, message), message)


def _field_of(data: dict, error: BerthError, message: str) -> str | None:
    if isinstance(error, InvalidValue):
        field = FIELD_OF_INVALID.get(error.field)
        if field == "ip" and not data.get("ip"):
            return "network"
        return field
    if isinstance(error, NameInUse):
        return "name"
    if isinstance(error, NoSuchImage):
        return "image"
    if isinstance(error, NoSuchContainer):
        return _field_naming_container(data, error.reference)
    if isinstance(error, VolumeNotFound):
        return "volumes"
    if isinstance(error, NotFound) and message.startswith("network "):
        return "network"
    if isinstance(error, Conflict) and message.startswith("Address already in use"):
        return "ip"
    if isinstance(error, Conflict) and "no available IPv4 addresses" in message:
        return "network"
    if isinstance(error, NetworkingFailed) and "Cannot link to" in message:
        return "links"
    if isinstance(error, StartFailed) and ("exec" in message or error.exit_code in (126, 127)):
        return "command"
    return None


def _field_naming_container(data: dict, reference: str) -> str | None:
    """Which of the fields that name containers named this one (in the order create looks them up)."""
    reference = (reference or "").lstrip("/")
    if container_network_target(data.get("network") or "") == reference:
        return "network"
    if reference in (spec.partition(":")[0].lstrip("/") for spec in data.get("volumes_from") or []):
        return "volumes_from"
    for link in data.get("links") or []:
        try:
            if links.parse(link)[0] == reference:
                return "links"
        except InvalidValue:
            continue
    return None


def _port_row_error(ports, error: BerthError, message: str) -> bool:
    """A host port taken (at create or start): on the row asking for it, else on the ports."""
    if isinstance(error, PortAllocated):
        taken = str(error.host_port)
    elif isinstance(error, (Conflict, NetworkingFailed)) and (found := _BIND_FAILED.search(message)):
        taken = found.group(2)
    elif isinstance(error, InvalidValue) and error.field == "port":
        taken = None
    else:
        return False
    for form in ports.forms:
        if taken is not None and taken in _row_host_ports(form):
            form.add_error("host_port", message)
            return True
    ports.non_form_errors().append(message)
    return True


def _row_host_ports(form) -> list[str]:
    return [binding["HostPort"] for bindings in (form.cleaned_data or {}).get("bindings", {}).values()
            for binding in bindings]
