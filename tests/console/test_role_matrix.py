"""Each role against each action: through the services, the pages and the shell's websocket.

A viewer changes nothing; an operator runs, stops and removes containers and
manages named volumes, but not with the host's files or network, not
networks, not images, not users; an admin does everything. An allowed action
does what it says and leaves a done row in the audit log; a refused one
raises PermissionDenied (a 403 on a page), leaves the object as it was and
a failed row saying who was refused.

The actions run against the real runtime (``host``: tasks inline), as the
system sets their objects up (no user: unlimited).
"""

from dataclasses import dataclass
from typing import Any, Callable

import pytest
from django.contrib.auth import get_user_model

from console import roles, services
from console.models import Container, Endpoint, ImageTag, Network, Operation, Volume
from console.pages import users as user_pages

ROLES = [roles.VIEWER, roles.OPERATOR, roles.ADMIN]


@pytest.fixture
def user_with(db, admin):
    def make(role: str):
        if role == roles.ADMIN:
            return admin
        user = get_user_model().objects.create_user({"viewer": "vic", "operator": "olga"}[role], password="pw")
        if role != roles.VIEWER:
            roles.grant(user, role)
        return user
    return make


def created(name="target", **host_config):
    return services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": host_config},
                                     name=name)


def running(name="target"):
    container = created(name)
    services.start_container(container.id)
    return container


def state_of(container):
    row = Container.objects.filter(pk=container.id).first()
    return row.state if row else "gone"


def create(user, name, **host_config):
    return services.create_container({"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config},
                                     name=name, user=user, source="web")


def exists(model, **lookup) -> Callable[[Any], bool]:
    return lambda _: model.objects.filter(**lookup).exists()


@dataclass
class Case:
    action: str                              # the audit row's action
    act: Callable[[Any, Any], Any]           # (what prepare made, user) -> does it
    observe: Callable[[Any], Any]            # (what prepare made) -> what the action changes
    least: str                               # the least role that may
    prepare: Callable[[Any], Any] = lambda tmp: None


CASES = {
    "create with a bind mount": Case(
        "container.create", lambda tmp, user: create(user, "bound", Binds=[f"{tmp}:/data"]),
        exists(Container, name="bound"), roles.ADMIN, prepare=lambda tmp: tmp),
    "create with a bind in Mounts": Case(
        "container.create",
        lambda tmp, user: create(user, "bound", Mounts=[{"Type": "bind", "Source": str(tmp), "Target": "/data"}]),
        exists(Container, name="bound"), roles.ADMIN, prepare=lambda tmp: tmp),
    "create with host networking": Case(
        "container.create", lambda _, user: create(user, "hosted", NetworkMode="host"),
        exists(Container, name="hosted"), roles.ADMIN),
    "create joining a host-mode container": Case(
        "container.create", lambda owner, user: create(user, "joined", NetworkMode=f"container:{owner.name}"),
        exists(Container, name="joined"), roles.ADMIN, prepare=lambda tmp: created("owner", NetworkMode="host")),
    "create with added capabilities": Case(
        "container.create", lambda _, user: create(user, "capable", CapAdd=["NET_ADMIN"]),
        exists(Container, name="capable"), roles.ADMIN),
    "create plain": Case(
        "container.create", lambda _, user: create(user, "plain"), exists(Container, name="plain"), roles.OPERATOR),
    "create with a named volume": Case(
        "container.create", lambda _, user: create(user, "keeper", Binds=["keep:/data"]),
        exists(Container, name="keeper"), roles.OPERATOR),
    "start": Case(
        "container.start", lambda c, user: services.start_container(c.id, user=user, source="web"),
        state_of, roles.OPERATOR, prepare=lambda tmp: created()),
    "stop": Case(
        "container.stop", lambda c, user: services.stop_container(c.id, timeout=0, user=user, source="web"),
        state_of, roles.OPERATOR, prepare=lambda tmp: running()),
    "remove": Case(
        "container.remove", lambda c, user: services.remove_container(c.id, user=user, source="web"),
        state_of, roles.OPERATOR, prepare=lambda tmp: created()),
    "volume create": Case(
        "volume.create", lambda _, user: services.volume_services.create_volume({"Name": "stash"}, user=user,
                                                                                source="web"),
        exists(Volume, name="stash"), roles.OPERATOR),
    "volume remove": Case(
        "volume.remove", lambda _, user: services.volume_services.remove_volume("stash", user=user, source="web"),
        exists(Volume, name="stash"), roles.OPERATOR,
        prepare=lambda tmp: services.volume_services.create_volume({"Name": "stash"})),
    "network create": Case(
        "network.create", lambda _, user: services.network_services.create_network({"Name": "lan"}, user=user,
                                                                                   source="web"),
        exists(Network, name="lan"), roles.ADMIN),
    "network remove": Case(
        "network.remove", lambda _, user: services.network_services.remove_network("lan", user=user, source="web"),
        exists(Network, name="lan"), roles.ADMIN,
        prepare=lambda tmp: services.network_services.create_network({"Name": "lan"})),
    "network connect": Case(
        "network.connect", lambda c, user: services.connect_network("lan", c.id, user=user, source="web"),
        exists(Endpoint, network__name="lan"), roles.ADMIN,
        prepare=lambda tmp: (services.network_services.create_network({"Name": "lan"}), created())[1]),
    "image tag": Case(
        "image.tag", lambda _, user: services.tag_image("busybox", "mine", "v1", user=user, source="web"),
        exists(ImageTag, name="mine:v1"), roles.ADMIN),
    "image remove": Case(
        "image.remove", lambda _, user: services.remove_image("mine:old", user=user, source="web"),
        exists(ImageTag, name="mine:old"), roles.ADMIN, prepare=lambda tmp: services.tag_image("busybox", "mine", "old")),
    "user create": Case(
        "user.create", lambda _, user: user_pages.create_user("newbie", "long-password", "viewer", by=user),
        exists(get_user_model(), username="newbie"), roles.ADMIN),
    "user role": Case(
        "user.role", lambda other, user: user_pages.change_role(other, roles.ADMIN, by=user),
        lambda other: roles.role_of(get_user_model().objects.get(pk=other.pk)), roles.ADMIN,
        prepare=lambda tmp: get_user_model().objects.create_user("pat", password="pw")),
    "user deactivate": Case(
        "user.deactivate", lambda other, user: user_pages.deactivate_user(other, by=user),
        lambda other: get_user_model().objects.get(pk=other.pk).is_active, roles.ADMIN,
        prepare=lambda tmp: get_user_model().objects.create_user("pat", password="pw")),
}


def allows(role: str, least: str) -> bool:
    return ROLES.index(role) >= ROLES.index(least)


def test_the_table_says_what_the_issue_says():
    """Operators: containers and named volumes; every network, image and user action is the admin's."""
    operator = {action for action, role in roles.MINIMUM_ROLE.items() if role == roles.OPERATOR}
    assert {action.split(".")[0] for action in operator} == {"container", "volume"}
    for action in ("network.create", "network.connect", "network.repair", "image.remove", "user.role"):
        assert roles.minimum_role(action) == roles.ADMIN


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_role_against_each_action_through_the_services(busybox, user_with, tmp_path, role, case):
    case = CASES[case]
    made = case.prepare(tmp_path)
    user = user_with(role)
    before = case.observe(made)
    Operation.objects.all().delete()
    if allows(role, case.least):
        case.act(made, user)
        assert case.observe(made) != before
        assert Operation.objects.get(action=case.action).state == Operation.STATE_DONE
    else:
        with pytest.raises(roles.PermissionDenied, match=f"permission denied: {user.username} is an? {role}"):
            case.act(made, user)
        assert case.observe(made) == before
        refusal = Operation.objects.get(action=case.action)
        assert (refusal.state, refusal.user, refusal.source) == (Operation.STATE_FAILED, user, "web")
        assert "permission denied" in refusal.error


def test_an_operator_is_told_what_only_an_admin_can_ask(busybox, user_with, tmp_path):
    with pytest.raises(roles.PermissionDenied) as refused:
        create(user_with(roles.OPERATOR), "both", Binds=[f"{tmp_path}:/data"], NetworkMode="host")
    assert str(refused.value) == ("permission denied: olga is an operator and cannot bind-mount host paths "
                                  "or use the host's network; only an admin can")


def test_volumes_from_a_container_with_a_bind_is_a_bind(busybox, user_with, tmp_path):
    created("holder", Binds=[f"{tmp_path}:/data"])
    with pytest.raises(roles.PermissionDenied, match="cannot bind-mount host paths"):
        services.create_container({"Image": "busybox", "HostConfig": {"VolumesFrom": ["holder"]}}, name="borrower",
                                  user=user_with(roles.OPERATOR), source="web")
    assert not Container.objects.filter(name="borrower").exists()


def test_the_api_socket_and_the_system_are_unlimited(busybox, tmp_path):
    container = create(None, "rooted", Binds=[f"{tmp_path}:/data"], NetworkMode="host")
    assert container.host_config["NetworkMode"] == "host"


# --- the pages --------------------------------------------------------------------------------------------


RUN_FORM = {
    "image": "busybox:latest", "name": "", "command": "sleep 1000", "env": "", "restart": "no", "restart_max": "",
    "network": "bridge", "ip": "", "hostname": "", "memory": "", "cpus": "", "volumes": "", "volumes_from": "",
    "links": "", "ports-TOTAL_FORMS": "0", "ports-INITIAL_FORMS": "0", "ports-MIN_NUM_FORMS": "0",
    "ports-MAX_NUM_FORMS": "100",
}


def run_form(**fields):
    return {**RUN_FORM, **fields}


@dataclass
class PageCase:
    action: str
    url: Callable[[Any], str]
    data: Callable[[Any], dict]
    observe: Callable[[Any], Any]
    least: str
    prepare: Callable[[Any], Any] = lambda tmp: None


PAGE_CASES = {
    "run with a bind mount": PageCase(
        "container.create", lambda _: "/run/", lambda tmp: run_form(name="bound", volumes=f"{tmp}:/data"),
        exists(Container, name="bound"), roles.ADMIN, prepare=lambda tmp: tmp),
    "run on the host's network": PageCase(
        "container.create", lambda _: "/run/", lambda _: run_form(name="hosted", network="host"),
        exists(Container, name="hosted"), roles.ADMIN),
    "run plain": PageCase(
        "container.create", lambda _: "/run/", lambda _: run_form(name="plain"),
        exists(Container, name="plain"), roles.OPERATOR),
    "stop": PageCase(
        "container.stop", lambda c: f"/containers/{c.id}/stop/", lambda _: {}, state_of, roles.OPERATOR,
        prepare=lambda tmp: running()),
    "remove": PageCase(
        "container.remove", lambda c: f"/containers/{c.id}/remove/", lambda _: {}, state_of, roles.OPERATOR,
        prepare=lambda tmp: created()),
    "volume create": PageCase(
        "volume.create", lambda _: "/volumes/create/", lambda _: {"name": "stash", "labels": ""},
        exists(Volume, name="stash"), roles.OPERATOR),
    "network create": PageCase(
        "network.create", lambda _: "/networks/create/",
        lambda _: {"name": "lan", "subnet": "", "gateway": "", "bridge_name": ""},
        exists(Network, name="lan"), roles.ADMIN),
    "network remove": PageCase(
        "network.remove", lambda n: f"/networks/{n.id}/remove/", lambda _: {}, exists(Network, name="lan"),
        roles.ADMIN, prepare=lambda tmp: services.network_services.create_network({"Name": "lan"})),
    "image remove": PageCase(
        "image.remove", lambda image: f"/images/{image.id}/remove/", lambda _: {"reference": "mine:old"},
        exists(ImageTag, name="mine:old"), roles.ADMIN, prepare=lambda tmp: services.tag_image("busybox", "mine", "old")),
    "user create": PageCase(
        "user.create", lambda _: "/users/create/",
        lambda _: {"username": "newbie", "password": "long-password", "role": "operator"},
        exists(get_user_model(), username="newbie"), roles.ADMIN),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", list(PAGE_CASES), ids=list(PAGE_CASES))
def test_each_role_against_each_action_through_the_pages(client, busybox, user_with, tmp_path, role, case):
    case = PAGE_CASES[case]
    made = case.prepare(tmp_path)
    user = user_with(role)
    client.force_login(user)
    before = case.observe(made)
    Operation.objects.all().delete()
    response = client.post(case.url(made), case.data(tmp_path))
    if allows(role, case.least):
        assert response.status_code == 302, response.content.decode()[-2000:]
        assert case.observe(made) != before
    else:
        assert response.status_code == 403
        assert f"{user.username} is a" in response.content.decode()
        assert case.observe(made) == before
        refusal = Operation.objects.get(action=case.action)
        assert (refusal.state, refusal.user, refusal.source) == (Operation.STATE_FAILED, user, "web")


# --- the websocket: the shell ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_the_shell_websocket(client, predefined_networks, busybox, docker_api, user_with, role):
    from asgiref.sync import async_to_sync

    from tests.console.test_shell import connect, read_control, runc_execs, session_cookie

    container = running("shelled")
    user = user_with(role)

    async def scenario(cookie):
        connection, connected = await connect(cookie, container.id)
        try:
            assert connected
            if allows(role, roles.OPERATOR):
                await connection.send_to(bytes_data=b"echo $((6*7))\r")
                seen = b""
                while b"42" not in seen:
                    seen += (await connection.receive_output(timeout=10)).get("bytes") or b""
                return None
            return await read_control(connection), await connection.receive_output(timeout=5)
        finally:
            await connection.disconnect(timeout=10)

    refused = async_to_sync(scenario)(session_cookie(client, user))
    operation = Operation.objects.get(action="container.exec", source="web")  # the API's exec has its own row
    assert (operation.user, operation.target_id) == (user, container.id)
    if allows(role, roles.OPERATOR):
        assert refused is None and operation.state == Operation.STATE_DONE
    else:
        message, closed = refused
        assert message == {"error": f"permission denied: {user.username} is a viewer and cannot container.exec"}
        assert closed["code"] == 4403 and runc_execs(container.id) == []
        assert operation.state == Operation.STATE_FAILED
