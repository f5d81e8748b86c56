"""A fuzz run of the Docker API, driven by its own OpenAPI description (console/dockerapi/openapi.yaml).

For each described operation, hypothesis draws path and query parameters and a
body: one that follows the schema, any JSON at all, or raw bytes. Every answer
must be below 500 (a 501 only where the description says "not implemented"),
carry no traceback, and a 4xx must be JSON with a message. After the run,
everything a successful request made is removed and nothing else may be left:
no row the answers did not report, no container, namespace, bridge, endpoint or
published port without its row.

Bounded: a fixed seed (BERTH_FUZZ_SEED, printed), at most MAX_EXAMPLES requests
and FUZZ_SECONDS of sending; no shrinking (the failing request is printed as drawn).
Operations that take the connection over (attach, exec start) are left to
test_streams.py and test_execs.py; a few parameters that would make an answer
wait for an event that never comes (stats stream, logs follow, wait next-exit,
stop after an hour) are held to values that answer at once.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from console.dockerapi.api import DockerAPI
from console.dockerapi.events import LocalEvents
from console.dockerapi.handlers.description import DESCRIPTION
from console.models import Container, Endpoint, Image, Network, Volume
from tests.api.conftest import RawClient, ServerThread

SEED = int(os.environ.get("BERTH_FUZZ_SEED", "20261130"))
MAX_EXAMPLES = 2500
FUZZ_SECONDS = 35.0
ANSWER_TIMEOUT = 20.0
SPEC = yaml.safe_load(DESCRIPTION.read_text())
METHODS = ("get", "head", "post", "put", "delete")
HIJACKING = {"ContainerAttach", "ExecStart"}

# Strings worth trying anywhere: names of what the world holds, and the shapes fields take.
POOL = ("victim", "lan", "data", "bridge", "none", "host", "busybox", "busybox:latest", "fuzz-image:1",
        "nosuch", "", ".", "..", "../..", "10.231.0.0/24", "10.231.0.7", "10.99.0.0/16", "80/tcp", "8080",
        "0", "-1", "1", "true", "ctrl-p,ctrl-q", "SIGKILL", "data:/data", "/data", "a" * 300)
# Image references a request may change: never the session's busybox (its tags are the suite's).
SAFE_IMAGES = ("fuzz-image:1", "nosuchimage", "fuzz/none:tag", "UPPER", "bad name", "fuzz-image@sha256:00")
SAFE_REPOS = ("fuzz-made", "fuzz/made:2", "", "UPPER", "bad repo", "fuzz-made:bad:tag")
WORLD = ("victim", "runner", "lan", "data", "busybox", "fuzz-image:1")
SPARED = ("nosuch", "fuzz-made", "fuzzvol", "fuzznet")  # what removals aim at: the world stays for the rest
QUICK_WAIT = ("victim", "nosuch", "")  # wait answers at once for a container that is not running
HELD = {  # (operation, parameter) -> strategy
    ("ContainerStats", "stream"): st.just("0"),
    ("ContainerLogs", "follow"): st.just("0"),
    ("ContainerWait", "condition"): st.sampled_from(["not-running", "", "bogus"]),
    ("ContainerWait", "id"): st.sampled_from(QUICK_WAIT),
    ("ContainerStop", "t"): st.sampled_from(["0", "1", "x", ""]),
    ("ContainerRestart", "t"): st.sampled_from(["0", "1", "x", ""]),
    ("ContainerDelete", "id"): st.sampled_from(SPARED) | st.text(min_size=1, max_size=20),
    ("NetworkDelete", "id"): st.sampled_from(SPARED) | st.text(min_size=1, max_size=20),
    ("VolumeDelete", "name"): st.sampled_from(SPARED) | st.text(min_size=1, max_size=20),
    ("ImageDelete", "name"): st.sampled_from(SAFE_IMAGES),
    ("ImageTag", "name"): st.sampled_from(SAFE_IMAGES),
    ("ImageTag", "repo"): st.sampled_from(SAFE_REPOS),
    ("ImageCreate", "repo"): st.sampled_from(SAFE_REPOS),
}


# --- strategies from the description --------------------------------------------------------------------


# Values a field takes when it is right: with them the draws reach past the first check.
FIELD_HINTS = {
    "Image": st.sampled_from(["busybox", "fuzz-image:1"]),
    "Cmd": st.sampled_from([["true"], ["sh", "-c", "exit 3"], ["nosuchcommand"]]),
    "NetworkMode": st.sampled_from(["bridge", "lan", "none", "host", "container:runner", "default"]),
    "Binds": st.lists(st.sampled_from(["data:/data", "fuzzvol:/v", "/w", "data:/ro:ro"]), max_size=2),
    "PortBindings": st.dictionaries(st.sampled_from(["80/tcp", "53/udp", "8080"]), st.lists(st.fixed_dictionaries(
        {}, optional={"HostPort": st.sampled_from(["", "0", "18080", "70000"]),
                      "HostIp": st.sampled_from(["", "127.0.0.1", "::1", "x"])}), max_size=2), max_size=2),
    "Container": st.sampled_from(["victim", "runner", "nosuch"]),
    "Name": st.sampled_from(["fuzznet", "fuzzvol", "fuzz-made", "lan", "data"]),
    "Subnet": st.sampled_from(["10.231.0.0/24", "10.240.7.0/24", "10.240.8.0/30", "bogus"]),
    "IPv4Address": st.sampled_from(["10.231.0.9", "10.231.0.1", "10.99.0.1"]),
}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def strings(schema: dict) -> st.SearchStrategy:
    mixed = st.one_of(st.sampled_from(POOL), st.text(max_size=40))
    if "pattern" in schema:
        mixed = st.one_of(mixed, st.from_regex(schema["pattern"], fullmatch=True))
    return mixed


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10)


def from_schema(schema: dict, depth: int = 0) -> st.SearchStrategy:
    schema = resolve(schema)
    if depth > 4:
        return ANY_JSON
    if "enum" in schema:
        drawn = st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=12))
    else:
        drawn = _typed(schema, depth)
    return st.one_of(st.none(), drawn) if schema.get("nullable") else drawn


def _typed(schema: dict, depth: int) -> st.SearchStrategy:
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties and "additionalProperties" in schema:
            return st.dictionaries(st.sampled_from(POOL) | st.text(max_size=12),
                                   from_schema(schema["additionalProperties"], depth + 1), max_size=3)
        required = set(schema.get("required", ()))
        fields = {name: _field(name, sub, depth) for name, sub in properties.items()}
        return st.fixed_dictionaries({name: fields[name] for name in fields if name in required},
                                     optional={name: fields[name] for name in fields if name not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 3))
    if kind == "integer":
        return st.integers(min_value=-(1 << 40), max_value=1 << 40)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return strings(schema)
    return ANY_JSON


def _field(name: str, schema: dict, depth: int) -> st.SearchStrategy:
    drawn = from_schema(schema, depth + 1)
    return st.one_of(FIELD_HINTS[name], FIELD_HINTS[name], drawn) if name in FIELD_HINTS else drawn


def as_query_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def parameter_values(operation_id: str, parameter: dict) -> st.SearchStrategy:
    held = HELD.get((operation_id, parameter["name"]))
    if held is not None:
        return held
    if parameter["in"] == "path":
        return st.one_of(st.sampled_from(WORLD), st.sampled_from(WORLD), st.text(min_size=1, max_size=30))
    return st.one_of(from_schema(parameter.get("schema", {})).map(as_query_value), st.text(max_size=30))


def operations() -> list[tuple[str, str, dict]]:
    found = []
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation and operation["operationId"] not in HIJACKING:
                found.append((method.upper(), path, operation))
    return found


def json_body(operation: dict) -> st.SearchStrategy | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        shaped = from_schema(content["application/json"]["schema"]).map(lambda v: json.dumps(v).encode())
        return st.one_of(shaped, shaped, ANY_JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))
    if content:
        return st.binary(max_size=2048)  # an archive that is not one
    return None


@st.composite
def requests(draw):
    method, path, operation = draw(st.sampled_from(OPERATIONS))
    target = path
    query = []
    for parameter in (resolve(p) for p in operation.get("parameters", ())):
        if parameter["in"] == "path":
            value = draw(parameter_values(operation["operationId"], parameter))
            safe = "/" if parameter["name"] == "name" else ""  # an image name may hold slashes
            target = target.replace("{%s}" % parameter["name"], quote(value, safe=safe) or "x")
        elif draw(st.booleans()) or parameter.get("required") or (operation["operationId"], parameter["name"]) in HELD:
            query.append((parameter["name"], draw(parameter_values(operation["operationId"], parameter))))
    if query:
        target += "?" + "&".join(f"{quote(name)}={quote(value, safe='')}" for name, value in query)
    bodies = json_body(operation)
    body = draw(bodies) if bodies is not None else None
    return method, "/v1.45" + target, body, operation


OPERATIONS = operations()


# --- the world, and what must be as it was -----------------------------------------------------------------


@pytest.fixture
def world(predefined_networks, busybox, tmp_path):
    from console import network_services, services, volume_services

    network_services.create_network({"Name": "lan", "IPAM": {"Config": [{"Subnet": "10.231.0.0/24"}]}})
    volume_services.create_volume({"Name": "data"})
    services.create_container({"Image": "busybox", "Cmd": ["true"]}, name="victim")
    runner = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"],
                                        "HostConfig": {"NetworkMode": "lan", "Binds": ["data:/data"]}}, name="runner")
    services.start_container(runner.id)
    services.tag_image("busybox", "fuzz-image", "1")
    running = ServerThread(DockerAPI(events=LocalEvents()), str(tmp_path / "docker.sock")).start()
    yield running
    running.stop()


def rows() -> dict[str, set[str]]:
    return {"containers": set(Container.objects.values_list("id", flat=True)),
            "networks": set(Network.objects.values_list("id", flat=True)),
            "volumes": set(Volume.objects.values_list("name", flat=True)),
            "images": set(Image.objects.values_list("id", flat=True))}


def orphans(host, networking) -> list[str]:
    """Kernel objects (runtime containers, namespaces, bridges, endpoints, ports) no row owns."""
    containers = set(Container.objects.values_list("id", flat=True))
    seen = networking.observe()
    found = [f"runtime container {c.id[:12]}" for c in host.list() if c.id not in containers]
    found += [f"netns of {owner[:12]}" for owner in seen["netns"] if owner not in containers]
    found += [f"ports of {owner[:12]}" for owner in seen["published"] if owner not in containers]
    bridges = set(Network.objects.values_list("bridge_name", flat=True))
    found += [f"bridge {device}" for device in seen["bridges"] if device not in bridges]
    endpoints = set(Endpoint.objects.values_list("endpoint_id", flat=True))
    found += [f"endpoint {e[:12]}" for e in seen["endpoints"] if e not in endpoints]
    return found


class Made:
    """What answers said they made: the only new rows allowed."""

    def __init__(self):
        self.containers: set[str] = set()
        self.networks: set[str] = set()
        self.volumes: set[str] = set()
        self.images_made = 0

    def note(self, operation_id: str, status: int, body: bytes) -> None:
        if status == 201 and operation_id in ("ContainerCreate", "NetworkCreate"):
            target = self.containers if operation_id == "ContainerCreate" else self.networks
            target.add(json.loads(body)["Id"])
        elif status == 201 and operation_id == "VolumeCreate":
            self.volumes.add(json.loads(body)["Name"])
        elif status == 200 and operation_id in ("ImageCreate", "ImageLoad"):
            self.images_made += 1


def clean_up(before: dict[str, set[str]]) -> None:
    from console import network_services, services, volume_services

    now = rows()
    for container_id in now["containers"] - before["containers"]:
        services.remove_container(container_id, force=True, volumes=True)
    for network_id in now["networks"] - before["networks"]:
        network_services.remove_network(network_id)
    for name in rows()["volumes"] - before["volumes"]:
        volume_services.remove_volume(name, force=True)
    for image_id in now["images"] - before["images"]:
        services.remove_image(image_id, force=True)


# --- the run ----------------------------------------------------------------------------------------------


def send(path: str, method: str, target: str, body: bytes | None) -> tuple[int, dict, bytes]:
    """The whole answer, or a failure if it is not complete within ANSWER_TIMEOUT (a stream that never ends)."""
    connection = RawClient(path, timeout=ANSWER_TIMEOUT)
    cut = threading.Timer(ANSWER_TIMEOUT, connection.sock.shutdown, (socket.SHUT_RDWR,))
    cut.start()
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            connection.request(method, target, body, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early and closed: the answer is in the socket
        try:
            return connection.response(head_only=method == "HEAD")
        except (ConnectionError, OSError) as error:
            pytest.fail(f"no complete answer to {method} {target} within {ANSWER_TIMEOUT} s: {error}")
    finally:
        cut.cancel()
        connection.close()


def check_answer(operation: dict, method: str, status: int, headers: dict, body: bytes) -> None:
    documented = set(operation["responses"])
    assert status < 500 or (status == 501 and "501" in documented), (status, body[:300])
    assert b"Traceback" not in body, body[:300]
    if 400 <= status < 600 and method != "HEAD":
        assert "json" in headers.get("content-type", ""), (status, headers, body[:300])
        message = json.loads(body)["message"]
        assert isinstance(message, str) and message and "internal error" not in message, message


@pytest.mark.django_db(transaction=True)
def test_random_requests_from_the_description_never_break_the_api_and_leave_nothing_behind(
        world, host, networking):
    print(f"fuzz seed {SEED} (BERTH_FUZZ_SEED), at most {MAX_EXAMPLES} requests in {FUZZ_SECONDS:.0f} s")
    before = rows()
    made = Made()
    tally = {"sent": 0, "2xx": 0, "4xx": 0, "501": 0}
    by_operation: dict[str, dict[int, int]] = {}
    stop_at = time.monotonic() + FUZZ_SECONDS

    @seed(SEED)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
              suppress_health_check=list(HealthCheck))
    @given(request=requests())
    def one_request(request):
        if time.monotonic() > stop_at:
            return
        method, target, body, operation = request
        status, headers, answer = send(world.path, method, target, body)
        tally["sent"] += 1
        key = "501" if status == 501 else f"{status // 100}xx"
        tally[key] = tally.get(key, 0) + 1
        by_operation.setdefault(operation["operationId"], {}).setdefault(status, 0)
        by_operation[operation["operationId"]][status] += 1
        check_answer(operation, method, status, headers, answer)
        made.note(operation["operationId"], status, answer)

    one_request()
    print(f"fuzz answers: {tally}")
    for operation_id, statuses in sorted(by_operation.items()):
        print(f"  {operation_id}: {dict(sorted(statuses.items()))}")
    assert tally["sent"] >= 100, tally  # the run did reach the server
    grown = {kind: rows()[kind] - before[kind] for kind in before}
    assert grown["containers"] <= made.containers
    assert grown["networks"] <= made.networks
    assert grown["volumes"] <= made.volumes
    assert len(grown["images"]) <= made.images_made
    clean_up(before)
    after = rows()
    assert all(after[kind] <= before[kind] for kind in before), (before, after)
    assert orphans(host, networking) == []
