"""``info``, the network handlers, volumes, ``top`` and ``stats`` over fakes."""

import json
import os


def test_info_counts_containers_and_distinct_images(client, services, api):
    running = services.create_container({"Image": "busybox"}, name="r")
    services.start_container(running.id)
    services.create_container({"Image": "busybox"}, name="c")
    services.tag_image("busybox", "again", "latest")  # two tags, one image
    status, _, info = client().json("GET", "/v1.45/info")
    assert status == 200
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (2, 1, 1)
    assert info["Images"] == 1
    assert info["Driver"] == "overlay" and info["OSType"] == "linux"
    assert info["DockerRootDir"] == str(api.root)
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["NCPU"] == os.cpu_count() and info["MemTotal"] > 0
    assert info["ServerVersion"] == "berth-0.1" and info["Name"]


def test_networks_list_the_predefined_three(client):
    status, _, items = client().json("GET", "/v1.45/networks")
    assert status == 200
    assert [n["Name"] for n in items] == ["bridge", "host", "none"]
    bridge = items[0]
    assert bridge["Driver"] == "bridge" and bridge["Scope"] == "local" and bridge["Created"].endswith("Z")
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert bridge["Containers"] == {}


def test_network_inspect_and_its_404(client):
    assert client().json("GET", "/networks/host")[2]["Driver"] == "host"
    status, _, data = client().json("GET", "/networks/nope")
    assert (status, data) == (404, {"message": "network nope not found"})


def test_network_create_answers_201_with_the_id_and_an_empty_warning(client, services):
    status, _, data = client().json("POST", "/v1.45/networks/create", {"Name": "mynet", "Driver": "bridge"})
    assert status == 201 and set(data) == {"Id", "Warning"}
    assert len(data["Id"]) == 64 and data["Warning"] == ""
    assert services.calls[-1] == ("network.create", {"Name": "mynet", "Driver": "bridge"})


def test_network_errors_keep_their_status_and_message(client):
    assert client().json("POST", "/networks/create", {"Name": "taken"})[::2] == (
        409, {"message": "network with name taken already exists"})
    assert client().json("DELETE", "/networks/bridge")[::2] == (
        403, {"message": "bridge is a pre-defined network and cannot be removed"})
    assert client().json("DELETE", "/networks/nope")[::2] == (404, {"message": "network nope not found"})
    assert client().json("POST", "/networks/mynet/connect", {"Container": "nope"})[::2] == (
        404, {"message": "No such container: nope"})
    assert client().json("POST", "/networks/mynet/connect", {})[0] == 400


def test_network_remove_prune_connect_and_disconnect(client, services):
    row = services.create_container({"Image": "busybox"}, name="web")
    assert client().json("DELETE", "/networks/mynet")[0] == 204
    assert client().json("POST", "/networks/prune")[::2] == (200, {"NetworksDeleted": ["unused"]})
    body = {"Container": "web", "EndpointConfig": {"Aliases": ["www"]}}
    assert client().json("POST", "/networks/mynet/connect", body)[0] == 200
    assert services.calls[-1] == ("network.connect", "mynet", row.id, {"Aliases": ["www"]})
    assert client().json("POST", "/networks/mynet/disconnect", {"Container": "web", "Force": True})[0] == 200
    assert services.calls[-1] == ("network.disconnect", "mynet", row.id, True)


def test_volumes_list_and_inspect(client):
    status, _, data = client().json("GET", "/v1.45/volumes")
    assert status == 200 and data["Warnings"] is None
    assert [v["Name"] for v in data["Volumes"]] == ["data"]
    assert client().json("GET", "/volumes/data")[2]["Driver"] == "local"
    assert client().json("GET", "/volumes/nope")[2] == {"message": "get nope: no such volume"}


def test_volumes_are_created_removed_and_pruned_through_the_services(client, services):
    status, _, data = client().json("POST", "/v1.45/volumes/create", {"Name": "x", "Driver": "local"})
    assert status == 201 and data["Name"] == "x" and data["Mountpoint"].endswith("/volumes/x/_data")
    assert client().json("DELETE", "/volumes/x?force=1")[0] == 204
    assert services.calls[-1] == ("volume.remove", "x", True)
    assert client().json("DELETE", "/volumes/x")[::2] == (404, {"message": "get x: no such volume"})
    assert client().json("POST", "/volumes/prune")[::2] == (200, {"VolumesDeleted": None, "SpaceReclaimed": 0})


def test_stats_of_a_stopped_container_are_zeros_in_dockers_shape(client, services):
    row = services.create_container({"Image": "busybox"}, name="idle")
    status, _, data = client().json("GET", f"/v1.45/containers/{row.id}/stats?stream=0")
    assert status == 200
    assert data["name"] == "/idle" and data["id"] == row.id
    assert data["read"] == "0001-01-01T00:00:00Z"
    assert data["cpu_stats"]["cpu_usage"]["total_usage"] == 0 and data["memory_stats"] == {}


def test_streamed_stats_come_one_json_per_interval(client, services):
    row = services.create_container({"Image": "busybox"}, name="idle")
    c = client()
    c.request("GET", f"/containers/{row.id}/stats")
    status = int(c.readline().split()[1])
    while c.readline():
        pass
    lines = []
    for _ in range(2):
        size = int(c.readline(), 16)
        lines.append(json.loads(c.read_exactly(size)))
        c.readline()
    assert status == 200 and [line["id"] for line in lines] == [row.id, row.id]


def test_top_of_a_stopped_container_is_409(client, services):
    row = services.create_container({"Image": "busybox"}, name="idle")
    status, _, data = client().json("GET", "/containers/idle/top")
    assert (status, data) == (409, {"message": f"container {row.id} is not running"})


def test_top_keeps_the_ps_rows_of_the_containers_pids():
    from console.dockerapi.handlers.stats import _ps_rows

    output = ("UID PID PPID C STIME TTY TIME CMD\n"
              "root 10 1 0 10:00 ? 00:00:00 sleep 1000\n"
              "root 11 10 0 10:00 ? 00:00:00 sh -c echo hi\n"
              "root 99 1 0 10:00 ? 00:00:00 other\n")
    top = _ps_rows(output, {10, 11})
    assert top["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert top["Processes"] == [["root", "10", "1", "0", "10:00", "?", "00:00:00", "sleep 1000"],
                                ["root", "11", "10", "0", "10:00", "?", "00:00:00", "sh -c echo hi"]]
