"""An exec through the Docker API socket is in the audit, as the console's shell is: ``container.exec``,
from the socket's peer, with the command it ran; one that could not start is a failed row."""

import json
import os

import pytest

from console import services
from console.dockerapi.api import DockerAPI
from console.dockerapi.events import LocalEvents
from console.models import Operation
from tests.api.conftest import RawClient, ServerThread

V = "/v1.45"


@pytest.fixture
def api_socket(host, tmp_path):
    running = ServerThread(DockerAPI(events=LocalEvents()), str(tmp_path / "docker.sock"))
    yield running.start()
    running.stop()


@pytest.fixture
def sleeper(predefined_networks, busybox):
    container = services.create_container({"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="execd")
    services.start_container(container.id)
    yield container
    services.remove_container(container.id, force=True)


def run_exec(path: str, container_id: str, cmd: list[str]) -> bytes:
    connection = RawClient(path, timeout=30)
    try:
        status, _, created = connection.json("POST", f"{V}/containers/{container_id}/exec",
                                             {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        assert status == 201, created
        body = json.dumps({"Detach": False}).encode()
        connection.request("POST", f"{V}/exec/{created['Id']}/start", body, {"Content-Type": "application/json"})
        status, _, _ = connection.response(head_only=True)
        assert status == 200
        return connection.read_to_close()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_an_exec_through_the_socket_is_audited_with_its_command_and_peer(api_socket, sleeper):
    output = run_exec(api_socket.path, sleeper.id, ["echo", "audited"])
    assert b"audited" in output
    row = Operation.objects.get(action="container.exec")
    assert (row.user, row.source, row.origin, row.target_id, row.state) == (
        None, "api", f"uid {os.getuid()} pid {os.getpid()}", sleeper.id, Operation.STATE_DONE)
    assert row.detail["Cmd"] == ["echo", "audited"]


@pytest.mark.django_db(transaction=True)
def test_an_exec_in_a_container_that_stopped_meanwhile_is_a_failed_row(api_socket, sleeper):
    connection = RawClient(api_socket.path, timeout=30)
    try:
        status, _, created = connection.json("POST", f"{V}/containers/{sleeper.id}/exec", {"Cmd": ["true"]})
        assert status == 201
        services.kill_container(sleeper.id)
        status, _, body = connection.json("POST", f"{V}/exec/{created['Id']}/start", {"Detach": True})
    finally:
        connection.close()
    assert status == 409, body
    row = Operation.objects.get(action="container.exec")
    assert (row.source, row.state) == ("api", Operation.STATE_FAILED)
