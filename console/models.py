"""What the hosts run, as data: images, containers, networks, endpoints, ports, volumes, mounts.

The kernel is the truth about what runs; these rows are the truth about what
was asked for and what was last observed. Uniqueness that matters (a
container name, an address on a network, a published host port) is a
database constraint, so two concurrent requests can never both win.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Image(models.Model):
    """An image in a host's store; ``id`` is the store's ``sha256:<hex>``."""

    id = models.CharField(primary_key=True, max_length=71)
    host = models.CharField(max_length=255, db_index=True)
    created = models.DateTimeField()
    size = models.BigIntegerField(default=0)
    config = models.JSONField(default=dict)  # the image config JSON, as stored

    def __str__(self):
        return self.id[7:19]


class ImageTag(models.Model):
    image = models.ForeignKey(Image, related_name="tags", on_delete=models.CASCADE)
    name = models.CharField(max_length=255, unique=True)  # "busybox:latest"

    def __str__(self):
        return self.name


class Network(models.Model):
    """A network: for the bridge driver, a Linux bridge and an address pool::

        [ctr eth0] --veth-- [bridge_name: gateway/prefix] --masquerade--> [host]

    The default network ``bridge`` gets its subnet on first use; a
    user-defined one when it is created (the user's, or one picked from the
    pools). Subnets of two networks never overlap: equal ones are refused by
    the database, overlapping ones by the service that writes them.
    """

    DRIVER_BRIDGE = "bridge"
    DRIVER_HOST = "host"
    DRIVER_NULL = "null"
    DRIVERS = [(DRIVER_BRIDGE, "bridge"), (DRIVER_HOST, "host"), (DRIVER_NULL, "null")]

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=255, unique=True)
    driver = models.CharField(max_length=16, choices=DRIVERS, default=DRIVER_BRIDGE)
    subnet = models.CharField(max_length=64, blank=True)
    gateway = models.CharField(max_length=64, blank=True)
    # Addresses are handed out from here (inside the subnet); the whole subnet when empty.
    ip_range = models.CharField(max_length=64, blank=True)
    # The subnet came from the user (--subnet): only then may a container ask for a fixed --ip.
    user_subnet = models.BooleanField(default=False)
    bridge_name = models.CharField(max_length=15, blank=True)
    internal = models.BooleanField(default=False)
    # The three networks every host has from the start: bridge, host, none.
    predefined = models.BooleanField(default=False)
    options = models.JSONField(default=dict)
    labels = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subnet"], condition=~Q(subnet=""), name="one_network_per_subnet"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_bridge(self) -> bool:
        return self.driver == self.DRIVER_BRIDGE

    @property
    def user_defined(self) -> bool:
        return not self.predefined


class Container(models.Model):
    STATE_CREATED = "created"
    STATE_RUNNING = "running"
    STATE_PAUSED = "paused"
    STATE_RESTARTING = "restarting"
    STATE_REMOVING = "removing"
    STATE_EXITED = "exited"
    STATE_DEAD = "dead"
    STATES = [(s, s) for s in (STATE_CREATED, STATE_RUNNING, STATE_PAUSED, STATE_RESTARTING,
                               STATE_REMOVING, STATE_EXITED, STATE_DEAD)]

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255, db_index=True)
    image = models.ForeignKey(Image, null=True, on_delete=models.SET_NULL, related_name="containers")
    image_ref = models.CharField(max_length=255)  # as the user gave it (Config.Image)
    # Docker's create body, normalised: the API's inspect echoes these back.
    config = models.JSONField(default=dict)
    host_config = models.JSONField(default=dict)
    networking_config = models.JSONField(default=dict)
    path = models.CharField(max_length=4096, blank=True)
    args = models.JSONField(default=list)

    state = models.CharField(max_length=16, choices=STATES, default=STATE_CREATED, db_index=True)
    pid = models.IntegerField(default=0)
    exit_code = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    created = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    restart_count = models.IntegerField(default=0)
    # Stopped or killed by a user: the restart policy leaves it alone (``console.restart``) until
    # the user starts it again; ``unless-stopped`` also stays stopped when the worker starts.
    manually_stopped = models.BooleanField(default=False)
    # The network namespace its networking layer made (inspect's SandboxKey); empty without one.
    sandbox_key = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.name

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state in (self.STATE_RUNNING, self.STATE_PAUSED, self.STATE_RESTARTING)

    @property
    def auto_remove(self) -> bool:
        return bool(self.host_config.get("AutoRemove"))

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))


class Endpoint(models.Model):
    """A container's attachment to a network, with its address there.

    The address is the container's from create to remove (stopped or not);
    ``veth_host`` and ``veth_container`` (eth0, eth1...) are what the
    networking layer made at the last start or connect.
    """

    container = models.ForeignKey(Container, related_name="endpoints", on_delete=models.CASCADE)
    network = models.ForeignKey(Network, related_name="endpoints", on_delete=models.PROTECT)
    endpoint_id = models.CharField(max_length=64, unique=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True, protocol="IPv4")
    prefix_length = models.IntegerField(default=0)
    mac_address = models.CharField(max_length=17, blank=True)
    veth_host = models.CharField(max_length=15, blank=True)
    veth_container = models.CharField(max_length=15, blank=True)
    aliases = models.JSONField(default=list)
    ipam_config = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["container", "network"], name="one_endpoint_per_network"),
            models.UniqueConstraint(fields=["network", "ip_address"], condition=Q(ip_address__isnull=False),
                                    name="one_address_per_network"),
        ]
        ordering = ["id"]  # the order of eth0, eth1...


class PortMapping(models.Model):
    """``host_ip:host_port -> container_port/protocol``; a host port is taken once.

    ``requested_port`` is what the user asked for (``-p 8080:80``; null for
    ``-p 80`` and ``-P``: any free port). ``host_port`` is the port held while
    the container runs, claimed at start (the unique constraint is the
    arbiter between two containers asking for the same one) and released
    when it stops, as Docker frees its ports.
    """

    PROTOCOLS = [("tcp", "tcp"), ("udp", "udp"), ("sctp", "sctp")]

    container = models.ForeignKey(Container, related_name="ports", on_delete=models.CASCADE)
    host = models.CharField(max_length=255)
    host_ip = models.CharField(max_length=64, default="0.0.0.0")
    requested_port = models.IntegerField(null=True, blank=True)
    host_port = models.IntegerField(null=True, blank=True)  # null: not published now
    container_port = models.IntegerField()
    protocol = models.CharField(max_length=4, choices=PROTOCOLS, default="tcp")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "host_ip", "host_port", "protocol"],
                                    condition=Q(host_port__isnull=False), name="one_mapping_per_host_port"),
        ]
        ordering = ["id"]


class Volume(models.Model):
    name = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255)
    driver = models.CharField(max_length=32, default="local")
    mountpoint = models.CharField(max_length=4096)
    anonymous = models.BooleanField(default=False)
    labels = models.JSONField(default=dict)
    options = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Mount(models.Model):
    TYPE_BIND = "bind"
    TYPE_VOLUME = "volume"
    TYPE_TMPFS = "tmpfs"
    TYPES = [(TYPE_BIND, "bind"), (TYPE_VOLUME, "volume"), (TYPE_TMPFS, "tmpfs")]

    container = models.ForeignKey(Container, related_name="mounts", on_delete=models.CASCADE)
    type = models.CharField(max_length=8, choices=TYPES)
    volume = models.ForeignKey(Volume, null=True, blank=True, related_name="mounts", on_delete=models.PROTECT)
    source = models.CharField(max_length=4096, blank=True)
    destination = models.CharField(max_length=4096)
    mode = models.CharField(max_length=32, blank=True)
    read_write = models.BooleanField(default=True)
    propagation = models.CharField(max_length=16, default="rprivate")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["container", "destination"], name="one_mount_per_path")]


class Operation(models.Model):
    """Every action, who asked, through what, and how it ended: the audit log and the task's row."""

    STATE_PENDING = "pending"
    STATE_RUNNING = "running"
    STATE_DONE = "done"
    STATE_FAILED = "failed"
    STATES = [(s, s) for s in (STATE_PENDING, STATE_RUNNING, STATE_DONE, STATE_FAILED)]

    SOURCE_WEB = "web"
    SOURCE_API = "api"
    SOURCE_SYSTEM = "system"
    SOURCES = [(s, s) for s in (SOURCE_WEB, SOURCE_API, SOURCE_SYSTEM)]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=8, choices=SOURCES, default=SOURCE_SYSTEM)
    # Where from: the client's address (web), the socket peer's "uid U pid P" (api), "" for the system.
    origin = models.CharField(max_length=255, blank=True, db_index=True)
    action = models.CharField(max_length=32)  # "container.start"
    target_id = models.CharField(max_length=71, blank=True, db_index=True)
    target_name = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=8, choices=STATES, default=STATE_PENDING, db_index=True)
    error = models.TextField(blank=True)
    detail = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.action} {self.target_name or self.target_id} ({self.state})"
