"""The same flows through docker-py 7.2 (``docker.DockerClient``) against a real Berth."""

import pytest
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound

pytestmark = pytest.mark.live


def test_the_client_negotiates_and_pings(docker_client):
    assert docker_client.ping() is True
    assert docker_client.version()["ApiVersion"] == "1.45"
    assert docker_client.api.api_version == "1.45"
    info = docker_client.info()
    assert info["Images"] == len({image.id for image in docker_client.images.list()})


def test_run_with_remove_returns_the_output(docker_client):
    assert docker_client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    assert docker_client.containers.list(all=True) == []


def test_run_of_a_failing_command_raises_container_error_with_its_stderr(docker_client):
    with pytest.raises(ContainerError) as failure:
        docker_client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert failure.value.exit_status == 3 and b"bad" in failure.value.stderr


def test_detached_run_logs_stream_and_wait(docker_client):
    container = docker_client.containers.run("busybox", ["sh", "-c", "echo a; sleep 0.5; echo b; exit 2"],
                                             detach=True)
    assert b"".join(container.logs(stream=True)) == b"a\nb\n"
    assert container.wait() == {"StatusCode": 2, "Error": None}
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] == 2
    container.remove()
    with pytest.raises(NotFound):
        docker_client.containers.get(container.id)


def test_exec_run_gives_output_and_exit_code(docker_client):
    container = docker_client.containers.run("busybox", ["sleep", "1000"], detach=True, name="pyexec")
    try:
        result = container.exec_run(["sh", "-c", "echo x; exit 3"])
        assert (result.exit_code, result.output) == (3, b"x\n")
        out, err = container.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True).output
        assert (out, err) == (b"o\n", b"e\n")
        assert container.top()["Processes"]
        assert docker_client.containers.get("pyexec").status == "running"
    finally:
        container.remove(force=True)


def test_wait_with_conditions(docker_client):
    container = docker_client.containers.create("busybox", ["sh", "-c", "exit 5"])
    assert container.wait(condition="not-running")["StatusCode"] == 0  # created: not running now
    container.start()
    assert container.wait(condition="not-running")["StatusCode"] == 5
    container.remove()


def test_attach_streams_the_output_of_a_run(docker_client):
    container = docker_client.containers.create("busybox", ["sh", "-c", "echo attached"])
    stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)
    container.start()
    assert b"".join(stream) == b"attached\n"
    container.remove()


def test_errors_map_to_docker_pys_exceptions(docker_client):
    with pytest.raises(ImageNotFound):
        docker_client.images.pull("nothing-here-berth", tag="latest")
    with pytest.raises(NotFound):
        docker_client.containers.get("nothing-here")
    first = docker_client.containers.create("busybox", name="taken")
    try:
        with pytest.raises(APIError) as conflict:
            docker_client.containers.create("busybox", name="taken")
        assert conflict.value.status_code == 409
    finally:
        first.remove()


def test_images_list_and_get(docker_client):
    image = docker_client.images.get("busybox")
    assert "busybox:latest" in image.tags
    assert image.id in {i.id for i in docker_client.images.list()}
