"""``POST /containers/{id}/wait``: headers at once, the body when the condition is met."""

import json
import time

import pytest


def _create(services, name="w", **host_config):
    return services.create_container({"Image": "busybox", "HostConfig": host_config}, name=name).id


def _wait(client, cid, condition=None):
    c = client()
    query = f"?condition={condition}" if condition else ""
    c.request("POST", f"/v1.45/containers/{cid}/wait{query}")
    status, headers = _head(c)
    return c, status, headers


def _head(c):
    status = int(c.readline().split()[1])
    headers = {}
    while line := c.readline():
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _body(c):
    size = int(c.readline(), 16)
    data = c.read_exactly(size)
    c.readline()
    assert c.readline() == b"0"
    c.readline()
    return json.loads(data)


def test_not_running_answers_at_once_for_a_created_container(client, services):
    cid = _create(services)
    c, status, headers = _wait(client, cid)
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["transfer-encoding"] == "chunked"
    assert _body(c) == {"StatusCode": 0, "Error": None}


def test_next_exit_flushes_the_headers_first_and_the_code_at_exit(client, services):
    cid = _create(services)
    c, status, _ = _wait(client, cid, "next-exit")  # headers arrived before any start: the CLI's order
    assert status == 200
    services.start_container(cid)
    time.sleep(0.1)
    services.exit(cid, 3)
    assert _body(c) == {"StatusCode": 3, "Error": None}


def test_next_exit_of_an_exited_container_waits_for_the_next_run(client, services):
    cid = _create(services)
    services.start_container(cid)
    services.exit(cid, 1)
    c, _, _ = _wait(client, cid, "next-exit")
    c.sock.settimeout(0.4)
    with pytest.raises(OSError):
        c.readline()  # nothing yet: the old exit does not count
    c.sock.settimeout(10)
    services.start_container(cid)
    services.exit(cid, 5)
    assert _body(c) == {"StatusCode": 5, "Error": None}


def test_removed_answers_when_the_row_is_gone_with_the_last_exit_code(client, services):
    cid = _create(services, AutoRemove=True)
    c, _, _ = _wait(client, cid, "removed")
    services.start_container(cid)
    services.exit(cid, 7)  # AutoRemove: removed right after the exit
    assert _body(c) == {"StatusCode": 7, "Error": None}


def test_removed_is_also_met_after_a_failed_start_of_an_autoremove_container(client, services):
    from runtime.errors import StartFailed

    cid = _create(services, AutoRemove=True)
    c, _, _ = _wait(client, cid, "removed")
    services.start_failure = StartFailed("exec: nosuchcmd: executable file not found", 127)
    assert client().json("POST", f"/containers/{cid}/start")[0] == 400
    assert _body(c)["StatusCode"] == 127


def test_a_change_missed_by_the_events_is_found_by_polling(client, services):
    cid = _create(services)
    services.start_container(cid)
    c, _, _ = _wait(client, cid)
    events, services.events = services.events, None  # the worker's event is lost
    services.exit(cid, 9)
    services.events = events
    assert _body(c) == {"StatusCode": 9, "Error": None}  # the poll every 0.2 s (api fixture) sees it


def test_an_invalid_condition_is_400(client, services):
    cid = _create(services)
    status, _, data = client().json("POST", f"/containers/{cid}/wait?condition=soon")
    assert (status, data) == (400, {"message": 'invalid condition: "soon"'})


def test_waiting_on_a_missing_container_is_a_plain_404(client):
    status, _, data = client().json("POST", "/containers/ghost/wait")
    assert (status, data) == (404, {"message": "No such container: ghost"})


def test_a_client_that_hangs_up_drops_its_waiter(client, services, events):
    cid = _create(services)
    services.start_container(cid)
    c, _, _ = _wait(client, cid, "next-exit")
    assert events._watchers.get(cid)
    c.close()
    deadline = time.monotonic() + 5
    while events._watchers.get(cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not events._watchers.get(cid)


def test_a_removal_seen_first_in_the_database_still_reports_the_exit_code(client, services, events):
    cid = _create(services)
    services.start_container(cid)
    c, _, _ = _wait(client, cid, "removed")
    quiet, services.events = services.events, None
    services.exit(cid, 7)
    services.remove_container(cid, force=True)  # the row is gone; its events are late
    services.events = quiet
    time.sleep(0.5)  # the poll (every 0.2 s here) has seen the row gone by now
    events.publish(cid, "exited", 7, removed=True)
    assert _body(c) == {"StatusCode": 7, "Error": None}
