"""Malformed posts to the console's forms: run, network create, volume create, image tag, user create.

Each is answered with the page and its form again (200 or a 4xx, never a 500),
the error next to the field it is about, and nothing made: the rows of
containers, networks, endpoints, ports, volumes, mounts, images, tags and users
are counted before and after, and so are the runtime's containers and the
networking layer's bridges, namespaces, endpoints and published ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model

from console import network_services, services, volume_services
from console.models import Container, Endpoint, Image, ImageTag, Mount, Network, PortMapping, Volume
from tests.console.test_run_form import EMPTY_FORM, field_errors

COUNTED = (Container, Network, Endpoint, PortMapping, Volume, Mount, Image, ImageTag)
LAN_SUBNET = "10.231.0.0/24"
HUGE = "9" * 40


@dataclass(frozen=True)
class BadPost:
    """One malformed post, the field its error must be shown at, and words the error must hold."""

    kind: str
    url: str
    data: dict
    field: str
    words: tuple[str, ...] = ()
    statuses: tuple[int, ...] = (200, 400)
    extra: dict = field(default_factory=dict)


# --- the corpus ------------------------------------------------------------------------------------------

def run(field_name: str, value: str, words=(), at: str = "", **more) -> BadPost:
    return BadPost("run", "/run/", {**EMPTY_FORM, "command": "sleep 300", field_name: value, **more},
                   at or field_name, words)


def port(host_ip="", host_port="", container_port="80", at="container_port", words=()) -> BadPost:
    row = {"ports-0-host_ip": host_ip, "ports-0-host_port": host_port, "ports-0-container_port": container_port}
    return BadPost("run: port", "/run/", {**EMPTY_FORM, "command": "sleep 300", **row}, f"ports-0-{at}", words)


RUN_POSTS = [
    run("name", "bad name", ("invalid container name",)),
    run("name", "-leading", ("invalid container name",)),
    run("name", "a/b", ("invalid container name",)),
    run("name", "n" * 300, ("longer than 255",)),
    run("name", "café", ("invalid container name",)),
    run("image", "nosuchimage:never", ("nosuchimage",)),
    run("image", "", ("required",)),
    run("image", "UPPER/Case", ("lowercase",)),
    run("command", "sh -c 'unterminated", ("invalid command",)),
    run("memory", "lots", ("lots",)),
    run("memory", HUGE + "g", ("out of range",)),
    run("cpus", "-1", ("out of range",)),
    run("cpus", "two", ("rational number",)),
    run("cpus", "1e999", ("cpu",)),
    run("cpus", "0.0000000001", ("too precise",)),
    run("restart_max", "many", ("whole number",), restart="on-failure"),
    run("restart_max", HUGE, ("less than or equal",), restart="on-failure"),
    run("restart_max", "-3", ("greater than or equal",), restart="on-failure"),
    run("network", "nosuchnet", ("nosuchnet",)),
    run("network", "container:nosuch", ("nosuch",)),
    run("volumes", "../x:/data", ("../x",)),
    run("volumes", "data:../etc", ("must be absolute",)),
    run("volumes", "data:/data/../..", ("can't be '/'",)),
    run("volumes", ":/data", ("invalid volume specification",)),
    run("volumes", "data:/data:badmode", ("invalid mode",)),
    run("volumes", "a:b:c:d", ("invalid volume specification",)),
    run("volumes", "..:/data", ('".."',)),
    run("volumes", "/proc:/host-proc", ("refused",)),
    run("volumes_from", "nosuch", ("nosuch",)),
    run("links", "nosuch:alias", ("nosuch",)),
    run("ip", "172.17.0.50", ("user defined networks",)),
    run("ip", "10.231.0.9", ("user defined networks",), network="bridge"),
    run("ip", "10.99.0.5", ("10.99.0.5",), network="lan"),
    run("ip", "abc", ("abc",), network="lan"),
    run("ip", "10.231.0.300", ("10.231.0.300",), network="lan"),
    run("ip", LAN_SUBNET, (LAN_SUBNET,), network="lan"),
    port(host_port="70000", at="host_port", words=("70000",)),
    port(host_port="-1", at="host_port", words=("-1",)),
    port(host_port="abc", at="host_port", words=("abc",)),
    port(host_port="9000-8000", container_port="80-82", at="host_port", words=("invalid ranges",)),
    port(container_port="0", words=("port",)),
    port(container_port="70000", words=("port",)),
    port(container_port="8080-8000", words=("port",)),
    port(container_port="abc", words=("port",)),
    port(container_port="80/sctpx", words=("port",)),
    port(host_ip="999.1.1.1", host_port="8080", at="host_ip", words=("999.1.1.1",)),
    port(host_ip="nonsense", host_port="8080", at="host_ip", words=("nonsense",)),
    port(host_port="8080", container_port="", words=("no port specified",)),
]


def network(at: str, words=(), **fields) -> BadPost:
    data = {"name": "clash", "subnet": "", "gateway": "", "bridge_name": "", **fields}
    return BadPost("network create", "/networks/create/", data, at, words)


NETWORK_POSTS = [
    network("name", ("name",), name=""),
    network("name", ("network name",), name="bad name"),
    network("name", ("network name",), name="-x"),
    network("name", ("network name",), name="a/b"),
    network("name", ("network name",), name=".."),
    network("name", ("network name",), name="café"),
    network("name", ("network name",), name="x" * 300),
    network("name", ("already exists",), name="lan"),
    network("subnet", ("overlap",), subnet=LAN_SUBNET),
    network("subnet", ("overlap",), subnet="10.231.0.0/16"),
    network("subnet", ("overlap",), subnet="10.231.0.128/25"),
    network("subnet", ("subnet",), subnet="10.232.0.1/24"),
    network("subnet", ("subnet",), subnet="300.1.1.0/24"),
    network("subnet", ("subnet",), subnet="10.232.0.0/33"),
    network("subnet", ("subnet",), subnet="abc"),
    network("gateway", ("gateway",), subnet="10.232.0.0/24", gateway="10.233.0.1"),
    network("gateway", ("gateway",), subnet="10.232.0.0/24", gateway="nope"),
    network("gateway", ("corresponding subnet",), gateway="10.232.0.1"),
    network("bridge_name", ("bridge name",), bridge_name="far-too-long-bridge"),
    network("bridge_name", ("bridge name",), bridge_name="bad/name"),
]


def volume(name: str, at: str = "name", words=("name",), labels: str = "") -> BadPost:
    return BadPost("volume create", "/volumes/create/", {"name": name, "labels": labels}, at, words)


VOLUME_POSTS = [
    volume("a/b"), volume(".."), volume("../escape"), volume("-v"), volume("bad name"), volume("café"),
    volume("x" * 300), volume("."), volume("nul\x00byte", words=("null characters",)),
    volume("fine", at="labels", words=("key is empty",), labels="=value"),
]

TAG_REFERENCES = ("UPPER:case", "bad name", "a:b:c", ":tag", "x" * 300, "repo@sha256:bad", "-leading", "..")


def tag_posts() -> list[BadPost]:
    return [BadPost("image tag", "tag", {"reference": reference}, "tag", ("reference",))
            for reference in TAG_REFERENCES] + [BadPost("image tag", "tag", {"reference": ""}, "tag", ("required",))]


def user(at: str, words=(), statuses=(400,), **fields) -> BadPost:
    data = {"username": "newbie", "password": "long-enough-pw", "role": "viewer", **fields}
    return BadPost("user create", "/users/create/", data, at, words, statuses)


USER_POSTS = [
    user("username", ("required",), username=""),
    user("username", ("valid username",), username="bad name!"),
    user("username", ("at most 150",), username="u" * 200),
    user("password", ("at least 8",), password="short"),
    user("role", ("valid choice",), role="superking"),
    user("username", ("exists already",), statuses=(409,), username="alice"),
]

CORPUS = RUN_POSTS + NETWORK_POSTS + VOLUME_POSTS + tag_posts() + USER_POSTS


def case_id(number: int, case: BadPost) -> str:
    shown = {k: (v[:24] + "..." if len(v) > 24 else v) for k, v in case.data.items()
             if v and v != EMPTY_FORM.get(k) and k != "command"}
    return f"{number:02d} {case.kind}: {shown}"


# --- the test --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    """Hashing the admin's password the slow way would be most of each case's time; no case is about it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(busybox, signed_in):
    """A user-defined network "lan" and a volume "data" next to the defaults; the admin signed in."""
    network_services.create_network({"Name": "lan", "IPAM": {"Config": [{"Subnet": LAN_SUBNET}]}})
    volume_services.create_volume({"Name": "data"})
    return signed_in


def counts(host, networking) -> dict:
    rows = {model.__name__: model.objects.count() for model in COUNTED}
    rows["users"] = get_user_model().objects.count()
    return {"rows": rows, "runtime": sorted(c.id for c in host.list()), "networking": networking.observe()}


def post(client, case: BadPost):
    url = case.url
    if url == "tag":
        image = services.get_image("busybox")
        url = f"/images/{image.id}/tag/"
        field_name = f"tag-{image.id.removeprefix('sha256:')[:12]}"
    else:
        field_name = case.field
    return client.post(url, case.data), field_name


def test_the_forms_corpus_is_large_and_has_no_twins():
    assert len(CORPUS) >= 40
    posts = {(case.url, tuple(sorted(case.data.items()))) for case in CORPUS}
    assert len(posts) == len(CORPUS), "two cases are the same post"


@pytest.mark.parametrize("case", [pytest.param(case, id=case_id(n, case)) for n, case in enumerate(CORPUS)])
def test_a_malformed_form_is_shown_again_with_the_error_at_its_field_and_makes_nothing(world, host, networking,
                                                                                       case):
    before = counts(host, networking)
    response, field_name = post(world, case)
    assert response.status_code in case.statuses, (response.status_code, response.content[:500])
    errors = field_errors(response).get(field_name)
    assert errors, f"no error at {field_name}: {field_errors(response)}"
    for word in case.words:
        assert any(word.lower() in error.lower() for error in errors), errors
    assert counts(host, networking) == before
