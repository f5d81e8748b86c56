"""Container endpoints over fake services: shapes, status codes, Docker's messages."""

from datetime import datetime, timedelta, timezone

import pytest

from console.dockerapi.formats import rfc3339
from console.humanize import container_status, human_duration
from console.dockerapi.handlers.containers import check_create_body


def _create(client, name=None, **body):
    body.setdefault("Image", "busybox")
    status, _, data = client().json("POST", "/v1.45/containers/create" + (f"?name={name}" if name else ""), body)
    assert status == 201, data
    return data["Id"]


def test_create_answers_201_with_the_id_and_no_warnings(client, services):
    status, _, data = client().json("POST", "/v1.45/containers/create?name=web", {"Image": "busybox", "Cmd": ["true"]})
    assert status == 201
    assert set(data) == {"Id", "Warnings"} and data["Warnings"] == []
    assert len(data["Id"]) == 64
    assert services.calls[-1][2] == "web"


def test_create_with_a_name_in_use_is_409_in_dockers_words(client):
    first = _create(client, "web")
    status, _, data = client().json("POST", "/containers/create?name=web", {"Image": "busybox"})
    assert status == 409
    assert data["message"] == (f'Conflict. The container name "/web" is already in use by container "{first}". '
                               "You have to remove (or rename) that container to be able to reuse that name.")


def test_create_of_an_unknown_image_is_404_no_such_image(client):
    status, _, data = client().json("POST", "/containers/create", {"Image": "nothere"})
    assert (status, data) == (404, {"message": "No such image: nothere:latest"})


def test_create_with_an_empty_body_is_400(client):
    c = client()
    c.request("POST", "/containers/create", b"")
    assert c.response()[0] == 400


def test_a_console_size_beyond_16_bits_is_400_and_creates_nothing(client, services):
    before = len(services.calls)
    status, _, data = client().json("POST", "/containers/create?name=wide",
                                    {"Image": "busybox", "Tty": True, "HostConfig": {"ConsoleSize": [70000, 80]}})
    assert status == 400 and data["message"] == ("invalid ConsoleSize [70000, 80]: rows and columns are each "
                                                 "at most 65535"), data
    assert len(services.calls) == before
    assert client().json("GET", "/containers/wide/json")[0] == 404
    assert _create(client, "tall", Tty=True, HostConfig={"ConsoleSize": [65535, 80]})


def test_a_plain_string_cmd_becomes_a_one_item_list():
    assert check_create_body({"Image": "x", "Cmd": "echo hi"})["Cmd"] == ["echo hi"]


def test_list_shows_running_containers_newest_first_in_dockers_shape(client, services):
    old = _create(client, "old", Cmd=["sleep", "30"])
    services.start_container(old)
    new = _create(client, "new", Cmd=["sh", "-c", "echo a b"])
    services.start_container(new)
    _create(client, "idle")
    status, _, items = client().json("GET", "/v1.45/containers/json")
    assert status == 200
    assert [i["Names"] for i in items] == [["/new"], ["/old"]]
    item = items[0]
    assert isinstance(item["Created"], int)
    assert item["Id"] == new and item["Image"] == "busybox" and item["ImageID"].startswith("sha256:")
    assert item["Command"] == "sh -c 'echo a b'"
    assert item["State"] == "running" and item["Status"].startswith("Up ")
    assert item["HostConfig"] == {"NetworkMode": "bridge"}
    assert item["Ports"] == [] and item["Mounts"] == [] and item["Labels"] == {}


def test_list_all_and_limit_and_quiet_ids(client, services):
    ids = [_create(client, f"c{i}") for i in range(3)]
    status, _, everything = client().json("GET", "/containers/json?all=1")
    assert [i["Id"] for i in everything] == list(reversed(ids))
    assert everything[0]["Status"] == "Created"
    _, _, last = client().json("GET", "/containers/json?limit=1")
    assert [i["Id"] for i in last] == [ids[-1]]


def test_list_filters_by_status_name_id_label_and_exited(client, services):
    a = _create(client, "alpha", Labels={"tier": "web"})
    b = _create(client, "beta")
    services.start_container(b)
    services.exit(b, 3)
    get = lambda f: [i["Names"][0] for i in client().json("GET", f"/containers/json?filters={f}")[2]]  # noqa: E731
    assert get('{"status":["exited"]}') == ["/beta"]
    assert get('{"status":{"created":true}}') == ["/alpha"]
    assert get('{"name":["alph"]}') == []  # name needs all=1 or a status: alpha is not running
    assert get('{"name":["^/al"],"status":["created"]}') == ["/alpha"]
    assert get(f'{{"id":["{a[:8]}"],"status":["created","exited"]}}') == ["/alpha"]
    assert get('{"label":["tier=web"],"status":["created"]}') == ["/alpha"]
    assert get('{"exited":["3"]}') == ["/beta"]


@pytest.mark.parametrize("filters,message", [
    ('{"colour":["red"]}', "invalid filter 'colour'"),
    ('{"status":["sleeping"]}', "invalid filter 'status=sleeping'"),
    ("{nope", None),
])
def test_list_with_a_bad_filter_is_400(client, filters, message):
    status, _, data = client().json("GET", f"/containers/json?filters={filters}")
    assert status == 400
    if message:
        assert data["message"] == message


def test_inspect_has_every_part_clients_dereference(client, services):
    cid = _create(client, "web", Cmd=["sleep", "300"], Env=["A=1"], HostConfig={"NetworkMode": "default"})
    status, _, data = client().json("GET", "/v1.45/containers/web/json")
    assert status == 200
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "HostConfig", "Config",
                "NetworkSettings", "Mounts", "GraphDriver", "RestartCount"):
        assert key in data
    assert data["Id"] == cid and data["Name"] == "/web"
    assert isinstance(data["Created"], str) and data["Created"].endswith("Z")
    assert data["State"]["Status"] == "created" and data["State"]["Pid"] == 0
    assert data["State"]["StartedAt"] == data["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert data["HostConfig"]["NetworkMode"] == "bridge"
    assert data["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert data["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert data["Config"]["Tty"] is False and data["Config"]["Image"] == "busybox"
    assert data["Config"]["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]
    assert data["Config"]["Hostname"] == cid[:12]
    assert data["NetworkSettings"]["Ports"] == {} and "Networks" in data["NetworkSettings"]
    assert data["Path"] == "sleep" and data["Args"] == ["300"]


def test_inspect_of_a_running_container_shows_its_pid_and_ports(client, services):
    from tests.api.fakes import PortMapping

    cid = _create(client, "web", ExposedPorts={"80/tcp": {}, "443/tcp": {}})
    services.start_container(cid)
    services.get_container(cid).ports.append(PortMapping(80, host_port=8080))
    _, _, data = client().json("GET", f"/containers/{cid[:10]}/json")
    assert data["State"]["Running"] is True and data["State"]["Pid"] == 4242
    assert data["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                                                "443/tcp": None}
    _, _, items = client().json("GET", "/containers/json")
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"} in items[0]["Ports"]
    assert {"PrivatePort": 443, "Type": "tcp"} in items[0]["Ports"]


def test_inspect_of_a_missing_container_is_404_no_such_container(client):
    status, _, data = client().json("GET", "/containers/ghost/json")
    assert (status, data) == (404, {"message": "No such container: ghost"})


def test_start_is_204_then_304(client):
    cid = _create(client)
    assert client().json("POST", f"/v1.45/containers/{cid}/start")[0] == 204
    assert client().json("POST", f"/v1.45/containers/{cid}/start")[0] == 304


def test_a_start_failure_is_400_with_the_runtime_message(client, services):
    from runtime.errors import StartFailed

    cid = _create(client)
    services.start_failure = StartFailed(
        'time="x" level=error msg="runc create failed: exec: \\"nosuch\\": executable file not found in $PATH"', 127)
    status, _, data = client().json("POST", f"/containers/{cid}/start")
    assert status == 400
    assert data["message"] == ('OCI runtime create failed: runc create failed: exec: "nosuch": '
                               "executable file not found in $PATH: unknown")


def test_stop_is_204_then_304_and_passes_t_and_signal(client, services):
    cid = _create(client)
    services.start_container(cid)
    assert client().json("POST", f"/containers/{cid}/stop?t=1&signal=SIGINT")[0] == 204
    assert services.calls[-1] == ("stop", cid, 1, "SIGINT")
    assert client().json("POST", f"/containers/{cid}/stop")[0] == 304


def test_stop_with_a_non_numeric_t_is_400(client):
    cid = _create(client)
    assert client().json("POST", f"/containers/{cid}/stop?t=soon")[0] == 400


def test_kill_takes_names_and_numbers_and_refuses_bad_signals(client, services):
    cid = _create(client)
    services.start_container(cid)
    assert client().json("POST", f"/containers/{cid}/kill?signal=15")[0] == 204
    assert services.calls[-1] == ("kill", cid, "15")
    status, _, data = client().json("POST", f"/containers/{cid}/kill?signal=SIGNOPE")
    assert status == 400 and "SIGNOPE" in data["message"]


def test_kill_of_a_stopped_container_is_409_in_dockers_words(client):
    cid = _create(client, "web")
    status, _, data = client().json("POST", "/containers/web/kill")
    assert status == 409
    assert data["message"] == f"cannot kill container: web: container {cid} is not running"


def test_pause_unpause_rename_and_restart(client, services):
    cid = _create(client, "web")
    services.start_container(cid)
    assert client().json("POST", "/containers/web/pause")[0] == 204
    assert services.get_container(cid).state == "paused"
    assert client().json("POST", "/containers/web/unpause")[0] == 204
    assert client().json("POST", "/containers/web/rename?name=site")[0] == 204
    assert services.get_container(cid).name == "site"
    assert client().json("POST", "/containers/site/rename")[0] == 400
    assert client().json("POST", "/containers/site/restart?t=0")[0] == 204


def test_remove_refuses_a_running_container_unless_forced(client, services):
    cid = _create(client, "web")
    services.start_container(cid)
    status, _, data = client().json("DELETE", "/containers/web")
    assert status == 409
    assert data["message"] == ('cannot remove container "web": container is running: '
                               "stop the container before removing or force remove")
    assert client().json("DELETE", "/containers/web?force=1&v=1")[0] == 204
    assert client().json("DELETE", "/containers/web?force=1")[0] == 404


def test_resize_before_start_is_accepted_and_kept_for_the_start(client, api):
    cid = _create(client, Tty=True)
    c = client()
    c.request("POST", f"/containers/{cid}/resize?h=40&w=100")
    assert c.response()[0] == 200
    assert api.pending_resize[cid] == (40, 100)
    assert client().json("POST", f"/containers/{cid}/resize?h=x&w=1")[0] == 400


def test_human_durations_read_like_dockers():
    assert [human_duration(s) for s in (0.4, 1, 59, 60, 150, 3599, 3600, 7200, 3 * 86400, 30 * 86400,
                                        100 * 86400, 800 * 86400)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "2 minutes", "59 minutes",
        "About an hour", "2 hours", "3 days", "4 weeks", "3 months", "2 years"]


def test_status_texts_follow_the_state():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    started, finished = now - timedelta(seconds=5), now - timedelta(seconds=3)
    assert container_status("running", 0, started, None, now) == "Up 5 seconds"
    assert container_status("paused", 0, started, None, now) == "Up 5 seconds (Paused)"
    assert container_status("exited", 3, started, finished, now) == "Exited (3) 3 seconds ago"
    assert container_status("created", 0, None, None, now) == "Created"
    assert container_status("created", 127, None, None, now) == "Created"
    assert container_status("removing", 0, started, finished, now) == "Removal In Progress"
    assert container_status("dead", 0, started, finished, now) == "Dead"


def test_rfc3339_is_go_style_utc():
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=timezone.utc)) == "2026-01-02T03:04:05.12Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2026-01-02T03:04:05Z"
    assert rfc3339(None) == "0001-01-01T00:00:00Z"
