"""Malformed requests against the Docker API socket, over the real services and database.

Every request in the corpus must be refused with a 4xx and a JSON
``{"message": ...}`` that names what was wrong, never a 500 or a traceback,
and must leave the database as it found it: the rows of containers,
networks, endpoints, ports, volumes, mounts and images are counted before and
after (operations may grow: refusals are audited). Tar archives (cp, import,
load) that climb out, link out, hold device nodes or unpack to more than the
state root can take are among them; tests/api/test_archive.py checks that no
file of theirs is written. The forms have their own corpus
(tests/console/test_form_bad_input.py), and tests/api/in_process/test_fuzz.py sends
random requests drawn from the API's OpenAPI description.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field

import pytest

from console.dockerapi.api import DockerAPI
from console.dockerapi.events import LocalEvents
from console.models import Container, Endpoint, Image, Mount, Network, PortMapping, Volume
from tests.api.conftest import RawClient, ServerThread
from tests.helpers.tars import entry, image_archive, sparse_bomb, tar_of

V = "/v1.45"
COUNTED = (Container, Network, Endpoint, PortMapping, Volume, Mount, Image)
LAN_SUBNET = "10.231.0.0/24"


@dataclass(frozen=True)
class Bad:
    """One malformed request and what its refusal must say."""

    kind: str
    method: str
    path: str
    body: object = None  # bytes as they are; anything else is sent as JSON
    headers: dict = field(default_factory=dict)
    status: range = range(400, 500)
    words: tuple[str, ...] = ()
    xfail: str = ""

    def payload(self) -> bytes | None:
        if self.body is None or isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def create(body: dict, name: str = "") -> tuple[str, dict]:
    suffix = f"?name={name}" if name else ""
    return f"{V}/containers/create{suffix}", {"Image": "busybox", "Cmd": ["true"], **body}


def with_host_config(**host_config) -> dict:
    return create({"HostConfig": host_config})[1]


# --- the corpus -------------------------------------------------------------------------------------------

JSON_ENDPOINTS = (
    ("POST", f"{V}/containers/create"),
    ("POST", f"{V}/networks/create"),
    ("POST", f"{V}/volumes/create"),
    ("POST", f"{V}/networks/lan/connect"),
    ("POST", f"{V}/networks/lan/disconnect"),
    ("POST", f"{V}/containers/victim/exec"),
)
BROKEN_JSON = (b"{", b'{"Image": "busybox"', b"not json", b'{"Image":}', b"\xff\xfe{}", b"{'Image': 'busybox'}")
NOT_AN_OBJECT = (b"[]", b"42", b'"busybox"', b"[1, 2]", b"true")
# What each endpoint says when the body is JSON but not an object: Go's words, or the field it missed.
NOT_AN_OBJECT_WORDS = {"create": "cannot unmarshal", "connect": "no container specified",
                       "disconnect": "no container specified", "exec": "exec config cannot be empty"}


def bad_json() -> list[Bad]:
    cases = [Bad("bad JSON", method, path, text, words=("invalid json",))
             for method, path in JSON_ENDPOINTS for text in BROKEN_JSON]
    cases += [Bad("bad JSON", method, path, text, words=(NOT_AN_OBJECT_WORDS[path.rsplit("/", 1)[-1]],))
              for method, path in JSON_ENDPOINTS for text in NOT_AN_OBJECT]
    return cases


WRONG_CREATE_FIELDS = (
    ("Image", 5), ("Image", ["busybox"]), ("Cmd", 5), ("Cmd", {"a": 1}), ("Entrypoint", 7), ("Env", "A=1"),
    ("Env", [1, 2]), ("Env", {"A": "1"}), ("Labels", ["a=b"]), ("Labels", {"a": 1}), ("ExposedPorts", ["80/tcp"]),
    ("Tty", "yes"), ("OpenStdin", 3), ("User", 0), ("WorkingDir", ["/"]), ("Hostname", 42),
    ("HostConfig", []), ("HostConfig", "host"), ("NetworkingConfig", 3), ("NetworkingConfig", {"EndpointsConfig": []}),
    ("StopSignal", 9), ("StopTimeout", "ten"),
)
WRONG_HOST_CONFIG = (
    ("PortBindings", []), ("PortBindings", {"80/tcp": "8080"}), ("PortBindings", {"80/tcp": [{"HostPort": 8080.5}]}),
    ("Binds", "/a:/b"), ("Binds", [5]), ("Memory", "lots"), ("Memory", -1), ("NanoCpus", "two"),
    ("RestartPolicy", "always"), ("RestartPolicy", {"Name": "sometimes"}),
    ("RestartPolicy", {"Name": "on-failure", "MaximumRetryCount": "x"}), ("AutoRemove", "yes"),
    ("Mounts", {"Type": "volume"}), ("Mounts", ["data:/data"]), ("NetworkMode", 5), ("Privileged", "no"),
    ("PublishAllPorts", "all"), ("CapAdd", 5), ("CapDrop", {"ALL": True}),
)
WRONG_NETWORK_FIELDS = (
    ("Name", 5), ("Name", ["x"]), ("Driver", 5), ("Driver", "overlay-magic"), ("Internal", "yes"),
    ("Attachable", "no"), ("EnableIPv6", "no"), ("Labels", ["a"]), ("Labels", {"a": 2}), ("Options", "x"),
    ("IPAM", []), ("IPAM", {"Config": {}}), ("IPAM", {"Config": ["10.0.0.0/24"]}),
    ("IPAM", {"Config": [{"Subnet": 10}]}),
)
WRONG_VOLUME_FIELDS = (
    ("Name", 5), ("Name", {"n": 1}), ("Driver", 3), ("Driver", "nfs-magic"), ("Labels", ["a=b"]), ("Labels", {"a": 1}),
    ("DriverOpts", "x"), ("DriverOpts", {"o": 1}),
)


# A right type with a wrong value is named by its value, not its field.
SAID_INSTEAD = {'{"Name": "sometimes"}': "unknown policy", '"overlay-magic"': "overlay-magic",
                '"nfs-magic"': "nfs-magic"}


def said(key: str, value) -> tuple[str]:
    return (SAID_INSTEAD.get(json.dumps(value), key),)


def wrong_types() -> list[Bad]:
    cases = [Bad("wrong JSON type", "POST", *create({key: value}), words=said(key, value))
             for key, value in WRONG_CREATE_FIELDS]
    cases += [Bad("wrong JSON type", "POST", f"{V}/containers/create", with_host_config(**{key: value}),
                  words=said(key, value)) for key, value in WRONG_HOST_CONFIG]
    cases += [Bad("wrong JSON type", "POST", f"{V}/networks/create", {"Name": "typo", key: value},
                  words=said(key, value)) for key, value in WRONG_NETWORK_FIELDS if key != "Name"]
    cases += [Bad("wrong JSON type", "POST", f"{V}/networks/create", {key: value},
                  words=said(key, value)) for key, value in WRONG_NETWORK_FIELDS if key == "Name"]
    cases += [Bad("wrong JSON type", "POST", f"{V}/volumes/create", {"Name": "typo", key: value},
                  words=said(key, value)) for key, value in WRONG_VOLUME_FIELDS if key != "Name"]
    cases += [Bad("wrong JSON type", "POST", f"{V}/volumes/create", {key: value},
                  words=said(key, value)) for key, value in WRONG_VOLUME_FIELDS if key == "Name"]
    cases += [
        Bad("wrong JSON type", "POST", f"{V}/networks/lan/connect", {"Container": 5}),
        Bad("wrong JSON type", "POST", f"{V}/networks/lan/connect", {"Container": "victim", "EndpointConfig": []}),
        Bad("wrong JSON type", "POST", f"{V}/containers/victim/exec", {"Cmd": "ls"}),
        Bad("wrong JSON type", "POST", f"{V}/containers/victim/exec", {"Cmd": [1]}),
        Bad("wrong JSON type", "POST", f"{V}/containers/victim/update", {"Memory": "lots"}),
    ]
    # Go reads these into int64s and refuses a bigger number (else runc would fail at start).
    cases += [Bad("wrong JSON type", "POST", f"{V}/containers/create", with_host_config(**{key: value}),
                  words=("of type int",))
              for key, value in (("Memory", 10**30),
                                 ("RestartPolicy", {"Name": "on-failure", "MaximumRetryCount": 10**30}))]
    return cases


def missing_fields() -> list[Bad]:
    return [
        Bad("missing field", "POST", f"{V}/containers/create", {}, words=("image",)),
        Bad("missing field", "POST", f"{V}/containers/create", {"Cmd": ["true"]}, words=("image",)),
        Bad("missing field", "POST", f"{V}/containers/create", {"Image": ""}, words=("image",)),
        Bad("missing field", "POST", f"{V}/networks/create", {}, words=("name",)),
        Bad("missing field", "POST", f"{V}/networks/create", {"Name": ""}, words=("name",)),
        Bad("missing field", "POST", f"{V}/networks/lan/connect", {}, words=("container",)),
        Bad("missing field", "POST", f"{V}/containers/victim/exec", {}, words=("no exec command",)),
        Bad("missing field", "POST", f"{V}/containers/victim/exec", {"Cmd": []}, words=("no exec command",)),
    ]


MEGABYTE = 1 << 20


def huge() -> list[Bad]:
    padding = "x" * (17 * MEGABYTE)
    return [
        Bad("huge", "POST", f"{V}/containers/create", {"Image": "busybox", "Labels": {"pad": padding}},
            status=range(413, 414), words=("too large",)),
        Bad("huge", "POST", f"{V}/networks/create", {"Name": "big", "Labels": {"pad": padding}},
            status=range(413, 414), words=("too large",)),
        Bad("huge", "POST", f"{V}/volumes/create", {"Name": "big", "Labels": {"pad": padding}},
            status=range(413, 414), words=("too large",)),
        Bad("huge", "GET", f"{V}/containers/json", headers={"X-Pad": "y" * (2 * MEGABYTE)}, words=("header",)),
        Bad("huge", "GET", f"{V}/version", headers={f"X-Pad-{i}": "y" * 100 for i in range(12000)}, words=("header",)),
        Bad("huge", "POST", f"{V}/containers/create", {"Image": "busybox", "Env": ["A=" + "z" * 1000] * 20000},
            status=range(413, 414), words=("too large",)),
        Bad("huge", "POST", *create({}, "n" * 4096), words=("name", "longer than 255")),
        Bad("huge", "GET", f"{V}/containers/{'c' * 70000}/json", status=range(404, 405)),
    ]


BAD_CONTAINER_NAMES = ("bad%20name", "-leading", "a/b", "..", "caf%C3%A9", "a:b", "%2Fslash%2Fslash", "%21bang", ".x")
BAD_NETWORK_NAMES = ("bad name", "a/b", "..", "-x", "café", "a:b", "x" * 300, "lan\n", "_x", "a\x00b")
BAD_VOLUME_NAMES = ("a/b", "..", "../escape", "-v", "bad name", "café", "x" * 300, ".")


def invalid_names() -> list[Bad]:
    cases = [Bad("invalid name", "POST", *create({}, name), words=("invalid container name",))
             for name in BAD_CONTAINER_NAMES]
    cases += [Bad("invalid name", "POST", f"{V}/networks/create", {"Name": name}, words=("network name",))
              for name in BAD_NETWORK_NAMES]
    cases += [Bad("invalid name", "POST", f"{V}/volumes/create", {"Name": name}, words=("name",))
              for name in BAD_VOLUME_NAMES]
    # Python's "$" also matches before a final newline: the name checks must use fullmatch or \\Z.
    cases += [Bad("invalid name", "POST", *create({}, "trailing%0A"), words=("invalid container name",)),
              Bad("invalid name", "POST", f"{V}/volumes/create", {"Name": "trailing\n"}, words=("name",))]
    cases += [Bad("invalid name", "POST", f"{V}/containers/victim/rename?name={name}", words=("name",))
              for name in ("bad%20name", "a/b", "-x")]
    cases += [Bad("invalid name", "POST", f"{V}/containers/victim/rename", words=("name",))]
    return cases


def unknown_references() -> list[Bad]:
    gone = "nosuchthing"
    cases = [Bad("unknown reference", method, f"{V}/containers/{gone}{tail}", status=range(404, 405),
                 words=("no such container", gone))
             for method, tail in (("GET", "/json"), ("POST", "/start"), ("POST", "/stop"), ("POST", "/kill"),
                                  ("POST", "/restart"), ("POST", "/pause"), ("POST", "/unpause"), ("DELETE", ""),
                                  ("GET", "/logs?stdout=1"), ("GET", "/top"), ("POST", "/rename?name=x"),
                                  ("POST", "/wait"), ("GET", "/stats?stream=0"))]
    cases += [
        Bad("unknown reference", "POST", *create({"Image": "nosuchimage:never"}), status=range(404, 405),
            words=("no such image", "nosuchimage")),
        Bad("unknown reference", "GET", f"{V}/images/nosuchimage:never/json", status=range(404, 405),
            words=("no such image",)),
        Bad("unknown reference", "DELETE", f"{V}/images/nosuchimage:never", status=range(404, 405),
            words=("no such image",)),
        Bad("unknown reference", "POST", f"{V}/images/nosuchimage/tag?repo=x&tag=y", status=range(404, 405),
            words=("no such image",)),
        Bad("unknown reference", "GET", f"{V}/networks/{gone}", status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "DELETE", f"{V}/networks/{gone}", status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/networks/{gone}/connect", {"Container": "victim"},
            status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/networks/lan/connect", {"Container": gone}, status=range(404, 405),
            words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/networks/lan/disconnect", {"Container": gone},
            status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "GET", f"{V}/volumes/{gone}", status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "DELETE", f"{V}/volumes/{gone}", status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "GET", f"{V}/exec/{gone}/json", status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/exec/{gone}/start", {"Detach": True}, status=range(404, 405),
            words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/containers/create",
            with_host_config(NetworkMode=gone), status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/containers/create",
            create({"NetworkingConfig": {"EndpointsConfig": {gone: {}}}})[1], status=range(404, 405), words=(gone,)),
        Bad("unknown reference", "POST", f"{V}/containers/create", with_host_config(NetworkMode="container:" + gone),
            status=range(404, 405), words=(gone,)),
    ]
    return cases


def ports(bindings: dict, exposed: dict | None = None) -> dict:
    body = with_host_config(PortBindings=bindings)
    if exposed is not None:
        body["ExposedPorts"] = exposed
    return body


BAD_HOST_PORTS = ("70000", "65536", "-1", "abc", "80-", "9000-8000", "1-2-3", "0x50")
BAD_CONTAINER_PORTS = ("0/tcp", "70000/tcp", "-5/tcp", "abc/tcp", "80/sctpx", "8080-8000/tcp", "/tcp", "80/tcp/x")


def port_specs() -> list[Bad]:
    cases = [Bad("port spec", "POST", f"{V}/containers/create", ports({"80/tcp": [{"HostPort": p}]}),
                 words=(p,)) for p in BAD_HOST_PORTS]
    cases += [Bad("port spec", "POST", f"{V}/containers/create", ports({p: [{"HostPort": "8080"}]}),
                  words=("port",)) for p in BAD_CONTAINER_PORTS]
    cases += [Bad("port spec", "POST", f"{V}/containers/create", ports({}, {p: {}}), words=("port",))
              for p in BAD_CONTAINER_PORTS]
    cases += [
        Bad("port spec", "POST", f"{V}/containers/create",
            ports({"80/tcp": [{"HostIp": "999.1.1.1", "HostPort": "80"}]}), words=("999.1.1.1",)),
        Bad("port spec", "POST", f"{V}/containers/create",
            ports({"80/tcp": [{"HostIp": "nonsense", "HostPort": "80"}]}), words=("nonsense",)),
    ]
    return cases


def network_body(subnet: str, **ipam) -> dict:
    return {"Name": "clash", "IPAM": {"Config": [{"Subnet": subnet, **ipam}]}}


def subnets() -> list[Bad]:
    overlapping = (LAN_SUBNET, "10.231.0.0/16", "10.231.0.128/25", "10.0.0.0/8")
    not_networks = ("10.232.0.1/24", "300.1.1.0/24", "abc", "10.232.0.0/33", "10.232.0.0", "10.232.0.0/-1", "/24")
    cases = [Bad("subnet", "POST", f"{V}/networks/create", network_body(s), status=range(400, 410),
                 words=("overlap",)) for s in overlapping]
    cases += [Bad("subnet", "POST", f"{V}/networks/create", network_body(s), words=("subnet",)) for s in not_networks]
    cases += [
        Bad("subnet", "POST", f"{V}/networks/create", network_body("10.232.0.0/24", Gateway="10.233.0.1"),
            words=("gateway",)),
        Bad("subnet", "POST", f"{V}/networks/create", network_body("10.232.0.0/24", Gateway="nope"),
            words=("gateway",)),
        Bad("subnet", "POST", f"{V}/networks/create", network_body("10.232.0.0/24", IPRange="10.233.0.0/25"),
            words=("range",)),
        Bad("subnet", "POST", f"{V}/networks/create",
            {"Name": "twice", "IPAM": {"Config": [{"Subnet": "10.232.0.0/24"}, {"Subnet": "10.232.0.0/25"}]}},
            status=range(400, 410), words=("subnet",)),
    ]
    return cases


def endpoint(network: str, address: str) -> dict:
    return {"EndpointsConfig": {network: {"IPAMConfig": {"IPv4Address": address}}}}


def addresses() -> list[Bad]:
    cases = [Bad("--ip", "POST", *create({"HostConfig": {"NetworkMode": "lan"},
                                          "NetworkingConfig": endpoint("lan", ip)}), words=(word,))
             for ip, word in (("10.99.0.5", "10.99.0.5"), ("192.168.77.7", "192.168.77.7"), ("abc", "abc"),
                              ("10.231.0.300", "10.231.0.300"), ("10.231.0.0/24", "10.231.0.0/24"))]
    cases += [Bad("--ip", "POST", *create({"NetworkingConfig": endpoint("bridge", ip)}), words=("user",))
              for ip in ("172.17.0.50", "10.88.0.50")]
    cases += [Bad("--ip", "POST", f"{V}/networks/lan/connect",
                  {"Container": "victim", "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip}}}, words=(ip,))
              for ip in ("10.99.0.5", "not-an-ip")]
    cases += [Bad("--ip", "POST", f"{V}/networks/bridge/connect",
                  {"Container": "victim", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.88.0.50"}}},
                  words=("user",))]
    return cases


def volume_specs() -> list[Bad]:
    binds = (("../x:/data", "../x"), ("data:../etc", "must be absolute"), ("data:/data/../..", "can't be '/'"),
             (":/data", "invalid volume specification"), ("data:", "invalid volume specification"),
             ("/a:relative", "must be absolute"), ("data:/data:badmode", "invalid mode"),
             ("a:b:c:d", "invalid volume specification"), ("data/../x:/data", "data/../x"), ("..:/data", '".."'),
             ("data:/data:rw,ro", "invalid mode"))
    cases = [Bad("volume spec", "POST", f"{V}/containers/create", with_host_config(Binds=[spec]), words=(word,))
             for spec, word in binds]
    mounts = (
        ({"Type": "volume", "Source": "data", "Target": "relative"}, "must be absolute"),
        ({"Type": "volume", "Source": "..", "Target": "/data"}, '".."'),
        ({"Type": "volume", "Source": "../x", "Target": "/data"}, "../x"),
        ({"Type": "bind", "Source": "relative/path", "Target": "/data"}, "must be absolute"),
        ({"Type": "bind", "Source": "/nonexistent-berth-source", "Target": "/data"}, "does not exist"),
        ({"Type": "nonsense", "Source": "data", "Target": "/data"}, "nonsense"),
        ({"Type": "volume", "Source": "data"}, "target"),
    )
    cases += [Bad("volume spec", "POST", f"{V}/containers/create", with_host_config(Mounts=[mount]), words=(word,))
              for mount, word in mounts]
    return cases


# ctrl- needs one of a-z @ [ \\ ] ^ _; any other key is a single character (moby/term's ToBytes).
BAD_DETACH_KEYS = ("ctrl-", "ctrl-1", "ctrl-ab", "ab", "ctrl-p,,ctrl-q", "alt-x", "%C3%A9")


def query_parameters() -> list[Bad]:
    pairs = (
        ("GET", "/containers/victim/logs?stdout=1&since=x", "since"),
        ("GET", "/containers/victim/logs?stdout=1&until=yesterday", "until"),
        ("POST", "/containers/victim/kill?signal=NOPE", "signal"),
        ("POST", "/containers/victim/kill?signal=999", "signal"),
        ("POST", "/containers/victim/kill?signal=SIG", "signal"),
        ("POST", "/containers/victim/stop?t=abc", "t"),
        ("POST", "/containers/victim/stop?signal=NOPE", "signal"),
        ("POST", "/containers/victim/restart?t=soon", "t"),
        ("GET", "/containers/json?limit=abc", "limit"),
        ("GET", "/containers/json?filters=notjson", "filter"),
        ("GET", "/containers/json?filters=%7B%22nosuchfilter%22%3A%5B%22x%22%5D%7D", "nosuchfilter"),
        ("GET", "/containers/json?filters=%5B1%5D", "filter"),
        ("POST", "/containers/victim/wait?condition=bogus", "condition"),
        ("POST", "/containers/victim/resize?h=abc&w=80", "h"),
        ("POST", "/containers/victim/resize?h=-1&w=80", "h"),
        ("GET", "/images/json?filters=notjson", "filter"),
        ("GET", "/networks?filters=notjson", "filter"),
        ("GET", "/volumes?filters=notjson", "filter"),
        ("POST", "/networks/prune?filters=notjson", "filter"),
        ("POST", "/volumes/prune?filters=notjson", "filter"),
        ("GET", "/containers/victim/top?ps_args=-o%20pid%3B%20rm", "not running"),
        ("GET", "/images/json?filters=%7B%22nosuchfilter%22%3A%5B%22x%22%5D%7D", "nosuchfilter"),
        ("GET", "/networks?filters=%7B%22nosuchfilter%22%3A%5B%22x%22%5D%7D", "nosuchfilter"),
        ("GET", "/volumes?filters=%7B%22nosuchfilter%22%3A%5B%22x%22%5D%7D", "nosuchfilter"),
    )
    cases = [Bad("query parameter", method, f"{V}{path}", words=(word,)) for method, path, word in pairs]
    cases += [Bad("detach keys", "POST", f"{V}/containers/victim/attach?stream=1&detachKeys={keys}",
                  words=("invalid detach keys",)) for keys in BAD_DETACH_KEYS]
    cases += [Bad("detach keys", "POST", f"{V}/containers/victim/exec", {"Cmd": ["true"], "DetachKeys": keys},
                  words=("invalid escape keys",)) for keys in ("ctrl-", "ctrl-1", "ab", "shift-a")]
    return cases


TAR = {"Content-Type": "application/x-tar"}
ARCHIVE_TARGETS = (("PUT", f"{V}/containers/victim/archive?path=/"),
                   ("POST", f"{V}/images/create?fromSrc=-&repo=refused"))


def bad_tars() -> list[tuple[bytes, str]]:
    return [
        (tar_of(entry("../escape", data=b"x")), "climbs out"),
        (tar_of(entry("a/../../escape", data=b"x"), compression="gz"), "climbs out"),
        (tar_of(entry("link", tarfile.SYMTYPE, link="../../../../etc")), "points out"),
        (tar_of(entry("hard", tarfile.LNKTYPE, link="../../etc/passwd")), "points out"),
        (tar_of(entry("dev/null", tarfile.CHRTYPE)), "device node"),
        (tar_of(entry("dev/sda", tarfile.BLKTYPE)), "device node"),
        (sparse_bomb(1 << 50, compression="gz"), "unpacks to"),
    ]


def archives() -> list[Bad]:
    cases = [Bad("tar archive", method, path, archive, TAR, words=(word,))
             for method, path in ARCHIVE_TARGETS for archive, word in bad_tars()]
    cases += [Bad("tar archive", "PUT", f"{V}/containers/victim/archive?path=/", tar_of(
                  entry("abs", tarfile.SYMTYPE, link="/etc")), TAR, words=("absolute",))]
    cases += [Bad("tar archive", "POST", f"{V}/images/load", image_archive(archive), TAR, words=(word,))
              for archive, word in bad_tars()]
    return cases


def unknown_endpoints() -> list[Bad]:
    missing = range(404, 406)
    cases = [Bad("unknown endpoint", method, path, status=missing, words=("page not found",))
             for method, path in (("GET", "/nope"), ("GET", f"{V}/nope"), ("GET", f"{V}/containers"),
                                  ("POST", f"{V}/containers/victim/teleport"), ("PUT", f"{V}/containers/create"),
                                  ("PATCH", f"{V}/containers/victim/json"), ("DELETE", f"{V}/_ping"),
                                  ("BREW", f"{V}/version"), ("POST", f"{V}/swarm/init"), ("GET", f"{V}/services"),
                                  ("GET", f"{V}/plugins/x/json"), ("GET", f"{V}/containers/victim/json/extra"),
                                  ("POST", f"{V}/info"), ("DELETE", f"{V}/networks"))]
    cases += [Bad("unknown endpoint", "GET", path, words=(word,))
              for path, word in (("/v9.99/version", "too new"), ("/v0.1/version", "too old"),
                                 ("/v1.99/containers/json", "too new"))]
    return cases


CORPUS = (bad_json() + wrong_types() + missing_fields() + huge() + invalid_names() + unknown_references()
          + port_specs() + subnets() + addresses() + volume_specs() + query_parameters() + archives()
          + unknown_endpoints())


def case_id(number: int, case: Bad) -> str:
    body = case.payload() or b""
    return f"{number:03d} {case.kind}: {case.method} {case.path[:60]} {body[:60]!r}"


def marked(number: int, case: Bad):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case_id(number, case), marks=marks)


# --- the test -----------------------------------------------------------------------------------------------


@pytest.fixture
def world(predefined_networks, busybox, tmp_path):
    """A container "victim", a network "lan" and a volume "data", and the API on a socket of this test."""
    from console import network_services, services, volume_services

    network_services.create_network({"Name": "lan", "IPAM": {"Config": [{"Subnet": LAN_SUBNET}]}})
    volume_services.create_volume({"Name": "data"})
    services.create_container({"Image": "busybox", "Cmd": ["true"]}, name="victim")
    running = ServerThread(DockerAPI(events=LocalEvents()), str(tmp_path / "docker.sock")).start()
    yield running
    running.stop()


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def send(path: str, case: Bad) -> tuple[int, dict, bytes]:
    connection = RawClient(path, timeout=30)
    try:
        headers = dict(case.headers)
        if case.body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            connection.request(case.method, case.path, case.payload(), headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed; its answer is waiting in the socket
        return connection.response()
    finally:
        connection.close()


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 200
    requests = {(case.method, case.path, case.payload(), tuple(case.headers.items())) for case in CORPUS}
    assert len(requests) == len(CORPUS), "two cases are the same request"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", [marked(number, case) for number, case in enumerate(CORPUS)])
def test_a_malformed_request_is_refused_with_a_message_and_changes_nothing(world, case):
    before = counts()
    status, headers, body = send(world.path, case)
    assert status in case.status, (status, body[:500])
    assert "json" in headers.get("content-type", ""), body[:500]
    message = json.loads(body)["message"]
    assert "Traceback" not in message and "internal error" not in message
    for word in case.words:
        assert word.lower() in message.lower(), message
    assert counts() == before


def test_the_detach_keys_docker_takes_are_read_as_a_terminal_sends_them():
    from console.dockerapi.params import key_sequence

    assert key_sequence("ctrl-p,ctrl-q") == b"\x10\x11"
    assert key_sequence("ctrl-P,q") == b"\x10q"
    assert key_sequence("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == bytes([0, 27, 28, 29, 30, 31])
    for bad in BAD_DETACH_KEYS:
        with pytest.raises(ValueError):
            key_sequence(bad.replace("%C3%A9", "é"))
