"""Image endpoints over fake services: list, inspect, tag, rmi, load, import, the offline pull."""

import json


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_images_list_in_dockers_shape(client):
    status, _, items = client().json("GET", "/v1.45/images/json")
    assert status == 200
    (item,) = items
    assert item["RepoTags"] == ["busybox:latest"] and item["RepoDigests"] == []
    assert isinstance(item["Created"], int) and isinstance(item["Size"], int)
    assert item["Id"].startswith("sha256:") and item["SharedSize"] == -1 and item["Containers"] == -1
    assert "VirtualSize" not in item


def test_images_list_filters_by_reference_and_dangling(client, services):
    services.tag_image("busybox", "mine/tool", "2.0")
    get = lambda f: client().json("GET", f"/images/json?filters={f}")[2]  # noqa: E731
    assert len(get('{"reference":["mine/*"]}')) == 1
    assert get('{"reference":["nothing"]}') == []
    assert get('{"dangling":["true"]}') == []
    assert client().json("GET", "/images/json?filters={\"bogus\":[\"x\"]}")[0] == 400


def test_image_inspect_has_config_rootfs_and_no_container_config(client):
    status, _, data = client().json("GET", "/v1.45/images/busybox/json")
    assert status == 200
    assert data["RepoTags"] == ["busybox:latest"] and data["RepoDigests"] == []
    assert data["Created"].endswith("Z") and data["Os"] == "linux" and data["Architecture"] == "amd64"
    assert data["Config"]["Cmd"] == ["sh"] and data["RootFS"]["Type"] == "layers"
    assert "ContainerConfig" not in data and "Container" not in data


def test_image_names_with_slashes_reach_inspect_and_tag(client, services):
    services.tag_image("busybox", "registry.local:5000/team/tool", "1")
    assert client().json("GET", "/images/registry.local:5000/team/tool:1/json")[0] == 200


def test_inspect_of_a_missing_image_is_404(client):
    status, _, data = client().json("GET", "/images/nothere/json")
    assert (status, data) == (404, {"message": "No such image: nothere:latest"})


def test_tag_is_201_and_needs_a_repo(client, services):
    c = client()
    c.request("POST", "/v1.45/images/busybox/tag?repo=copy&tag=v1")
    assert c.response()[0] == 201
    assert "copy:v1" in [t.name for t in services.get_image("busybox").tags]
    assert client().json("POST", "/images/busybox/tag")[0] == 400


def test_rmi_answers_the_list_of_what_went(client, services):
    status, _, data = client().json("DELETE", "/v1.45/images/busybox?force=1")
    assert status == 200
    assert data[0] == {"Untagged": "busybox:latest"} and "Deleted" in data[-1]


def test_load_streams_the_chunked_upload_and_reports_in_the_stream(client, services):
    payload = b"LOAD" + b"x" * 300_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 65536]), payload[i:i + 65536])
                       for i in range(0, len(payload), 65536)) + b"0\r\n\r\n"
    c = client()
    c.request("POST", "/v1.45/images/load?quiet=1", chunked,
              {"Content-Type": "application/x-tar", "Transfer-Encoding": "chunked"})
    status, headers, body = c.response()
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert _lines(body) == [{"stream": "Loaded image: loaded:1.0\n"}]
    assert ("load", len(payload)) in services.calls


def test_a_bad_load_is_an_error_in_the_stream_not_an_http_error(client, api):
    c = client()
    c.request("POST", "/images/load", b"not a tar", {"Content-Type": "application/x-tar"})
    status, _, body = c.response()
    assert status == 200
    (line,) = _lines(body)
    assert line["error"] == line["errorDetail"]["message"] == "invalid archive: not a docker save archive"
    assert list(api.tmp.iterdir()) == []  # the upload is gone


def test_import_reads_the_body_and_answers_the_image_id(client, services):
    c = client()
    c.request("POST", "/v1.45/images/create?fromSrc=-&repo=imported%3A1.0"
              "&changes=CMD%20%5B%22sh%22%5D&changes=EXPOSE%2080",
              b"tarball-bytes", {"Content-Type": "application/x-tar"})
    status, _, body = c.response()
    assert status == 200
    (line,) = _lines(body)
    assert line["status"].startswith("sha256:")
    assert services.calls[-1] == ("import", 13, "imported:1.0", ('CMD ["sh"]', "EXPOSE 80"))


def test_import_from_a_url_is_not_implemented(client):
    status, _, data = client().json("POST", "/images/create?fromSrc=http://example.invalid/x.tar")
    assert status == 501 and data["message"].startswith("not implemented yet:")


def test_a_pull_of_a_local_tag_is_up_to_date(client):
    c = client()
    c.request("POST", "/v1.45/images/create?fromImage=docker.io%2Flibrary%2Fbusybox&tag=latest",
              headers={"X-Registry-Auth": "e30="})
    status, _, body = c.response()
    assert status == 200
    assert _lines(body)[-1] == {"status": "Status: Image is up to date for busybox:latest"}


def test_a_pull_of_anything_else_is_404_before_streaming(client):
    status, _, data = client().json("POST", "/images/create?fromImage=docker.io%2Flibrary%2Falpine&tag=3.10")
    assert status == 404
    assert data["message"] == ("pull access denied for alpine, repository does not exist or may require "
                               "'docker login': denied: requested access to the resource is denied")
    status, _, data = client().json("POST", "/images/create?fromImage=busybox&tag=9.9")
    assert status == 404
    assert data == {"message": "manifest for busybox:9.9 not found: manifest unknown: manifest unknown"}


def test_image_history_lists_the_layers_newest_first(client):
    status, _, data = client().json("GET", "/images/busybox/history")
    assert status == 200 and data[0]["Tags"] == ["busybox:latest"] and isinstance(data[0]["Created"], int)
