"""The run form (``/run/``): an admin runs containers, a viewer only looks, an anonymous visitor logs in first.

Runs go through the real services and runtime (``host``: tasks inline, a
stand-in networking layer); every refusal is read from the page, next to the
field it is about, and leaves no container behind.
"""

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model

from console import roles, services
from console.models import Container, Operation

EMPTY_FORM = {
    "image": "busybox:latest", "name": "", "command": "", "env": "", "restart": "no", "restart_max": "",
    "network": "bridge", "ip": "", "hostname": "", "memory": "", "cpus": "", "volumes": "", "volumes_from": "",
    "links": "",
    "ports-TOTAL_FORMS": "2", "ports-INITIAL_FORMS": "0", "ports-MIN_NUM_FORMS": "0", "ports-MAX_NUM_FORMS": "100",
    "ports-0-host_ip": "", "ports-0-host_port": "", "ports-0-container_port": "", "ports-0-protocol": "tcp",
    "ports-1-host_ip": "", "ports-1-host_port": "", "ports-1-container_port": "", "ports-1-protocol": "tcp",
}


class _FieldErrors(HTMLParser):
    """The texts of ``ul.errorlist li`` inside ``div#field-<name>``, for every field of a page."""

    def __init__(self):
        super().__init__()
        self.errors: dict[str, list[str]] = {}
        self.field_stack: list[str | None] = []   # per open div: its field name, or None
        self.in_errorlist = 0
        self.item: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            ident = attrs.get("id") or ""
            is_field = "field" in (attrs.get("class") or "").split() and ident.startswith("field-")
            self.field_stack.append(ident.removeprefix("field-") if is_field else None)
        elif tag == "ul" and "errorlist" in (attrs.get("class") or "").split():
            self.in_errorlist += 1
        elif tag == "li" and self.in_errorlist:
            self.item = []

    def handle_endtag(self, tag):
        if tag == "div" and self.field_stack:
            self.field_stack.pop()
        elif tag == "ul" and self.in_errorlist:
            self.in_errorlist -= 1
        elif tag == "li" and self.item is not None:
            field = next((name for name in reversed(self.field_stack) if name), "__form__")
            self.errors.setdefault(field, []).append(" ".join("".join(self.item).split()))
            self.item = None

    def handle_data(self, data):
        if self.item is not None:
            self.item.append(data)


def field_errors(response) -> dict[str, list[str]]:
    parser = _FieldErrors()
    parser.feed(response.content.decode())
    return parser.errors


def run(client, **fields):
    return client.post("/run/", {**EMPTY_FORM, **fields})


# --- the page -------------------------------------------------------------------------------------


def test_the_form_offers_the_local_images_and_the_networks(signed_in, busybox):
    response = signed_in.get("/run/")
    page = response.content.decode()
    assert response.status_code == 200 and '<form id="run-form" method="post"' in page
    assert '<option value="busybox:latest"' in page
    for mode in ("bridge", "host", "none"):
        assert f'<option value="{mode}"' in page
    assert '<button type="submit">Run</button>' in page
    for name in ("image", "name", "command", "env", "auto_remove", "restart", "network", "ip", "publish_all",
                 "hostname", "memory", "cpus", "volumes", "volumes_from", "links", "ports-0-host_ip",
                 "ports-0-host_port", "ports-0-container_port", "ports-0-protocol"):
        assert f'id="field-{name}"' in page and f'name="{name}"' in page


def test_other_containers_are_offered_as_network_modes(signed_in, busybox):
    services.create_container({"Image": "busybox", "Cmd": ["true"]}, name="other")
    assert '<option value="container:other"' in signed_in.get("/run/").content.decode()


def test_without_javascript_the_add_port_link_gives_one_more_row(signed_in, busybox):
    page = signed_in.get("/run/?ports=5").content.decode()
    assert 'name="ports-4-container_port"' in page and 'name="ports-5-container_port"' not in page
    assert 'href="/run/?ports=6"' in page


def test_htmx_gets_one_port_row_and_the_new_row_count(signed_in, busybox):
    page = signed_in.get("/run/port-row/?index=3").content.decode()
    assert 'name="ports-3-container_port"' in page and 'id="field-ports-3-host_port"' in page
    assert 'name="ports-TOTAL_FORMS" value="4"' in page and 'hx-swap-oob="true"' in page
    assert "?index=4" in page


# --- a run -----------------------------------------------------------------------------------------


def test_a_run_opens_the_page_of_the_running_container_with_its_settings(signed_in, busybox, host):
    response = run(signed_in, name="web1", command="sh -c 'echo \"$GREETING\"; sleep 300'",
                   env="GREETING=hello world\nEMPTY=", volumes="webdata:/data",
                   **{"ports-0-host_port": "18080", "ports-0-container_port": "80"})
    container = Container.objects.get(name="web1")
    assert response.status_code == 302 and response.url == f"/containers/{container.id}/"
    assert container.state == "running" and container.pid > 0
    assert host.get(container.id).running
    assert not container.auto_remove
    assert container.config["Cmd"] == ["sh", "-c", 'echo "$GREETING"; sleep 300']
    page = signed_in.get(response.url).content.decode()
    assert "running" in page and "GREETING=hello world" in page and "EMPTY=" in page
    assert "0.0.0.0:18080" in page and "80/tcp" in page
    assert "webdata" in page and "/data" in page
    assert Operation.objects.filter(action="container.create", source="web", state="done",
                                    target_id=container.id).exists()


def test_limits_restart_policy_and_hostname_reach_the_container(signed_in, busybox):
    response = run(signed_in, name="limited", command="sleep 300", memory="256m", cpus="0.5", restart="on-failure",
                   restart_max="3", hostname="box")
    assert response.status_code == 302
    container = Container.objects.get(name="limited")
    assert container.host_config["Memory"] == 256 * 1024 * 1024
    assert container.host_config["NanoCpus"] == 500_000_000
    assert container.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert container.config["Hostname"] == "box"


def test_port_rows_take_a_protocol_ranges_and_free_host_ports(signed_in, busybox):
    response = run(signed_in, name="ported", command="sleep 300", **{
        "ports-0-container_port": "53/udp",
        "ports-1-host_ip": "127.0.0.1", "ports-1-host_port": "18000-18001", "ports-1-container_port": "8000-8001"})
    assert response.status_code == 302
    container = Container.objects.get(name="ported")
    mappings = [(m.host_ip, m.requested_port, m.container_port, m.protocol) for m in container.ports.all()]
    assert sorted(mappings, key=str) == sorted([("0.0.0.0", None, 53, "udp"), ("127.0.0.1", 18000, 8000, "tcp"),
                                                ("127.0.0.1", 18001, 8001, "tcp")], key=str)
    assert all(m.host_port for m in container.ports.all())  # a free one where none was asked for


# --- refusals, next to their fields ------------------------------------------------------------------


@pytest.mark.parametrize("fields, field, message", [
    ({"ports-0-host_port": "99999", "ports-0-container_port": "80"}, "ports-0-host_port", "invalid hostPort: 99999"),
    ({"ports-1-container_port": "99999"}, "ports-1-container_port", 'invalid port specification: "99999/tcp"'),
    ({"ports-0-container_port": "90-80"}, "ports-0-container_port", 'invalid port specification: "90-80/tcp"'),
    ({"ports-0-host_port": "8080"}, "ports-0-container_port", "no port specified: 8080:<empty>"),
    ({"ports-0-host_ip": "nope", "ports-0-container_port": "80"}, "ports-0-host_ip", "invalid IP address: nope"),
    ({"memory": "lots"}, "memory", "invalid size: 'lots'"),
    ({"memory": "1k"}, "memory", "Minimum memory limit allowed is 6MB"),
    ({"cpus": "half"}, "cpus", "failed to parse half as a rational number"),
    ({"env": "GOOD=1\n=oops"}, "env", "invalid environment variable: =oops"),
    ({"image": "nope:1"}, "image", "No such image: nope:1"),
    ({"ip": "10.99.0.9"}, "ip", "user specified IP address is supported on user defined networks only"),
    ({"volumes": "data:relative"}, "volumes", "invalid mount path: 'relative' mount path must be absolute"),
    ({"volumes_from": "ghost"}, "volumes_from", "No such container: ghost"),
    ({"links": "ghost:db"}, "links", "No such container: ghost"),
    ({"command": "sh -c 'unclosed"}, "command", "invalid command: No closing quotation"),
    ({"auto_remove": "on", "restart": "always"}, "restart", "can't create 'AutoRemove' container with restart policy"),
    ({"network": "nonet"}, "network", "network nonet not found"),
    ({"name": "bad name!"}, "name", "Invalid container name (bad name!)"),
])
def test_a_refusal_is_shown_next_to_its_field_and_leaves_nothing(signed_in, busybox, host, fields, field, message):
    before = {c.id for c in host.list()}
    response = run(signed_in, **{"command": "sleep 300", "hostname": "kept", **fields})
    assert response.status_code == 200
    errors = field_errors(response)
    assert any(message in error for error in errors.get(field, [])), errors
    assert [name for name in errors if name != field] == []
    assert not Container.objects.exists()
    assert {c.id for c in host.list()} == before
    assert 'value="kept"' in response.content.decode()  # what was typed is kept


def test_a_name_in_use_is_shown_next_to_the_name(signed_in, busybox, host):
    taken = services.create_container({"Image": "busybox", "Cmd": ["true"]}, name="taken")
    before = {c.id for c in host.list()}
    errors = field_errors(run(signed_in, name="taken", command="sleep 300"))
    assert errors["name"] == [f'Conflict. The container name "/taken" is already in use by container "{taken.id}". '
                              "You have to remove (or rename) that container to be able to reuse that name."]
    assert list(Container.objects.values_list("name", flat=True)) == ["taken"]
    assert {c.id for c in host.list()} == before


def test_a_host_port_taken_by_another_container_is_shown_on_its_row(signed_in, busybox):
    ports = {"ports-0-host_port": "18081", "ports-0-container_port": "80"}
    assert run(signed_in, name="first", command="sleep 300", **ports).status_code == 302
    response = run(signed_in, name="second", command="sleep 300", **ports)
    errors = field_errors(response)
    assert any("Bind for 0.0.0.0:18081 failed: port is already allocated" in e
               for e in errors["ports-0-host_port"]), errors
    # As with docker run, the container stays created, and the page says where it is.
    second = Container.objects.get(name="second")
    assert second.state == "created" and f'href="/containers/{second.id}/"' in response.content.decode()


def test_a_command_that_cannot_start_is_shown_next_to_the_command(signed_in, busybox):
    response = run(signed_in, name="broken", command="nosuchcmd")
    assert any("nosuchcmd" in error for error in field_errors(response)["command"])
    assert Container.objects.get(name="broken").exit_code == 127


def test_a_removed_on_exit_container_that_cannot_start_is_gone(signed_in, busybox, host):
    before = {c.id for c in host.list()}
    response = run(signed_in, name="broken", command="nosuchcmd", auto_remove="on")
    assert "command" in field_errors(response)
    assert not Container.objects.exists() and {c.id for c in host.list()} == before


# --- a viewer, an anonymous visitor ----------------------------------------------------------------------


def test_a_viewer_sees_the_form_without_a_run_button(client, viewer, busybox):
    client.force_login(viewer)
    page = client.get("/run/").content.decode()
    assert 'id="run-form"' in page and "<button" not in page.partition('id="run-form"')[2].partition("</form>")[0]


def test_a_viewer_cannot_run_anything(client, viewer, busybox, host):
    client.force_login(viewer)
    before = {c.id for c in host.list()}
    response = run(client, name="sneaky", command="sleep 300")
    assert response.status_code == 403 and b"is a viewer and cannot container.create" in response.content
    assert not Container.objects.exists() and {c.id for c in host.list()} == before
    refusal = Operation.objects.get(action="container.create")
    assert refusal.state == Operation.STATE_FAILED and refusal.user == viewer and refusal.target_name == "sneaky"


def test_an_operator_may_run(client, busybox):
    operator = get_user_model().objects.create_user("olga", password="pw")
    roles.grant(operator, roles.OPERATOR)
    client.force_login(operator)
    assert run(client, name="by-olga", command="true").status_code == 302


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, busybox, method):
    response = getattr(client, method)("/run/", EMPTY_FORM if method == "post" else None)
    assert response.status_code == 302 and response.url.startswith("/login/?next=/run/")
    assert not Container.objects.exists()


# --- networks, volumes-from and links ----------------------------------------------------------------------


def test_a_fixed_address_is_taken_on_a_user_network(signed_in, busybox):
    services.create_network({"Name": "front", "IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}})
    assert '<option value="front"' in signed_in.get("/run/").content.decode()
    response = run(signed_in, name="fixed", command="sleep 300", network="front", ip="10.77.0.9")
    assert response.status_code == 302
    endpoint = Container.objects.get(name="fixed").endpoints.get()
    assert endpoint.network.name == "front" and endpoint.ip_address == "10.77.0.9"


def test_volumes_from_links_and_a_shared_namespace_name_existing_containers(signed_in, busybox):
    assert run(signed_in, name="db", command="sleep 300", volumes="/var/lib/db").status_code == 302
    response = run(signed_in, name="app", command="sleep 300", volumes_from="db:ro", links="db:database")
    assert response.status_code == 302
    app = Container.objects.get(name="app")
    mount = app.mounts.get()
    assert mount.destination == "/var/lib/db" and not mount.read_write and mount.volume.anonymous
    assert app.host_config["Links"] == ["/db:/app/database"]
    response = run(signed_in, name="sidecar", command="sleep 300", network="container:db")
    assert response.status_code == 302
    assert Container.objects.get(name="sidecar").host_config["NetworkMode"] == \
        f"container:{Container.objects.get(name='db').id}"


def test_a_shared_namespace_refuses_published_ports_next_to_the_network(signed_in, busybox):
    run(signed_in, name="db", command="sleep 300")
    response = run(signed_in, name="sidecar", command="sleep 300", network="container:db",
                   **{"ports-0-container_port": "80"})
    assert field_errors(response) == {
        "network": ["conflicting options: port publishing and the container type network mode"]}
    assert not Container.objects.filter(name="sidecar").exists()
