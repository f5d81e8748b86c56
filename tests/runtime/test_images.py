"""The image store (runtime/images.py). Each test has its own state root."""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.baseimage import build_busybox
from runtime.errors import ImageInUse, ImageReferenced, InvalidValue, NoSuchImage
from runtime.images import ImageStore, normalize_reference
from runtime.paths import StateRoot


def make_tar(files: dict[str, bytes | None]) -> bytes:
    """name -> content; None makes an empty file (whiteouts), a name ending in / a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = data or b""
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_config(layers: list[bytes], cmd=("sh",)) -> bytes:
    return json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T10:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer) for layer in layers]},
    }).encode()


LOWER = make_tar({"etc/": None, "etc/motd": b"hello", "etc/gone": b"bye", "data/": None, "data/old": b"old"})
UPPER = make_tar({"etc/.wh.gone": None, "data/": None, "data/.wh..wh..opq": None, "data/new": b"new"})


def docker_save_tar(config: bytes, layers: list[bytes], tags: list[str]) -> bytes:
    """The legacy docker save layout: <id>.json, <layer id>/layer.tar, manifest.json."""
    files = {f"{sha(config)}.json": config}
    names = []
    for layer in layers:
        names.append(f"{sha(layer)}/layer.tar")
        files[names[-1]] = layer
    files["manifest.json"] = json.dumps([{"Config": f"{sha(config)}.json", "RepoTags": tags, "Layers": names}]).encode()
    return make_tar(files)


def oci_layout_tar(config: bytes, layers: list[bytes], name: str, nested: bool = False) -> bytes:
    blobs = {}

    def add(data: bytes, media_type: str) -> dict:
        blobs[f"blobs/sha256/{sha(data)}"] = data
        return {"mediaType": media_type, "digest": "sha256:" + sha(data), "size": len(data)}

    gz = [gzip.compress(layer) for layer in layers]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": add(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [add(layer, "application/vnd.oci.image.layer.v1.tar+gzip") for layer in gz],
    }).encode()
    top = add(manifest, "application/vnd.oci.image.manifest.v1+json")
    if nested:
        top["platform"] = {"os": "linux", "architecture": "amd64"}
        other = {**top, "digest": "sha256:" + "0" * 64, "platform": {"os": "linux", "architecture": "s390x"}}
        inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [other, top]}).encode()
        top = add(inner, "application/vnd.oci.image.index.v1+json")
    top["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
    index = {"schemaVersion": 2, "manifests": [top]}
    return make_tar({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode(), **blobs})


@pytest.fixture
def state(tmp_path):
    return StateRoot(tmp_path / "root")


@pytest.fixture
def store(state):
    return ImageStore(state)


def rootfs(files=None) -> io.BytesIO:
    return io.BytesIO(make_tar(files or {"bin/": None, "bin/hello": b"hi"}))


def leftovers(state: StateRoot) -> list[str]:
    return os.listdir(state.tmp)


def test_it_imports_a_rootfs_with_changes(store):
    image = store.import_rootfs(rootfs(), "app:1", changes=[
        "ENV A=1 B='two words'",
        "ENV C three words",
        'CMD ["/bin/hello", "--loud"]',
        "ENTRYPOINT /bin/run me",
        "WORKDIR /srv",
        "WORKDIR app",
        "USER nobody",
        "EXPOSE 80 53/udp 8000-8001",
        'VOLUME ["/data"]',
        "VOLUME /cache /logs",
        "LABEL maintainer=me version=1",
        "STOPSIGNAL SIGQUIT",
    ])
    c = image.config
    assert c.env == ["A=1", "B=two words", "C=three words"]
    assert c.cmd == ["/bin/hello", "--loud"]
    assert c.entrypoint == ["/bin/sh", "-c", "/bin/run me"]
    assert c.working_dir == "/srv/app"
    assert c.user == "nobody"
    assert c.exposed_ports == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c.volumes == {"/data": {}, "/cache": {}, "/logs": {}}
    assert c.labels == {"maintainer": "me", "version": "1"}
    assert c.stop_signal == "SIGQUIT"
    assert image.repo_tags == ["app:1"]
    assert image.raw_config["os"] == "linux" and image.raw_config["architecture"] == "amd64"
    assert image.raw_config["rootfs"] == {"type": "layers", "diff_ids": image.layers}
    assert image.raw_config["history"][0]["created"] == image.created


def test_its_image_id_is_the_sha256_of_the_stored_config(store, state):
    image = store.import_rootfs(rootfs(), "app")
    stored = (state.images / "configs" / (image.id.removeprefix("sha256:") + ".json")).read_bytes()
    assert image.id == "sha256:" + sha(stored)
    assert json.loads(stored) == image.raw_config


def test_it_puts_the_extracted_layer_where_layer_dirs_says(store):
    image = store.import_rootfs(rootfs(), "app")
    [diff] = store.layer_dirs(image)
    assert (diff / "bin" / "hello").read_bytes() == b"hi"
    assert image.size == 2
    assert image.layers == ["sha256:" + sha(make_tar({"bin/": None, "bin/hello": b"hi"}))]


def test_it_imports_compressed_files_by_path(store, tmp_path):
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(rootfs().getvalue()))
    calls = []
    image = store.import_rootfs(path, "app", progress=lambda done, total: calls.append((done, total)))
    assert (store.layer_dirs(image)[0] / "bin" / "hello").exists()
    assert calls[-1] == (path.stat().st_size, path.stat().st_size)


def test_it_dedupes_a_layer_imported_twice(store, state):
    first = store.import_rootfs(rootfs(), "one")
    second = store.import_rootfs(rootfs(), "two", changes=["CMD echo"])
    assert first.id != second.id
    assert first.layers == second.layers
    assert len(os.listdir(state.images / "layers")) == 1
    assert leftovers(state) == []


@pytest.mark.parametrize("change", ["RUN echo", "FROM busybox", "ENV", "EXPOSE 70000", "EXPOSE 80/foo", "STOPSIGNAL SIGNOPE", "ENV A"])
def test_it_rejects_bad_changes_before_storing_anything(store, state, change):
    with pytest.raises(InvalidValue):
        store.import_rootfs(rootfs(), "app", changes=[change])
    assert store.list() == []
    assert leftovers(state) == []


def test_it_finds_images_by_name_tag_id_and_prefix(store):
    image = store.import_rootfs(rootfs(), "app")
    hex_id = image.id.removeprefix("sha256:")
    for reference in ("app", "app:latest", image.id, hex_id, hex_id[:12], hex_id[:4], "sha256:" + hex_id[:8]):
        assert store.get(reference).id == image.id, reference
    for reference in ("app:2", "nothing", hex_id[:3], "ffff" if not hex_id.startswith("ffff") else "0000"):
        with pytest.raises(NoSuchImage):
            store.get(reference)


def test_it_tags_and_untags(store):
    image = store.import_rootfs(rootfs(), "app")
    store.tag("app", "registry.local:5000/team/app:v1.0")
    store.tag(image.id, "docker.io/library/other")
    assert store.get("app").repo_tags == ["app:latest", "other:latest", "registry.local:5000/team/app:v1.0"]
    store.untag("other")
    assert store.get(image.id).repo_tags == ["app:latest", "registry.local:5000/team/app:v1.0"]
    with pytest.raises(NoSuchImage):
        store.untag("other")
    with pytest.raises(NoSuchImage):
        store.tag("missing", "x")


@pytest.mark.parametrize("bad", [
    "App", "app:", "app:-x", "app:" + "x" * 129, "-app", "app//x", "a" * 64, "app@sha256:" + "0" * 64, "",
    "app:tag with space", "team/App",
])
def test_it_rejects_bad_references(store, bad):
    store.import_rootfs(rootfs(), "app")
    with pytest.raises(InvalidValue):
        store.tag("app", bad)
    assert store.get("app").repo_tags == ["app:latest"]


def test_it_normalizes_references_as_docker_shows_them():
    assert normalize_reference("busybox") == "busybox:latest"
    assert normalize_reference("docker.io/library/busybox:1.36") == "busybox:1.36"
    assert normalize_reference("docker.io/me/app") == "me/app:latest"
    assert normalize_reference("localhost:5000/app") == "localhost:5000/app:latest"


def test_it_refuses_to_remove_an_image_in_use_unless_forced(store):
    image = store.import_rootfs(rootfs(), "app")
    with pytest.raises(ImageInUse):
        store.remove("app", in_use_by=["c" * 64])
    assert store.get("app").id == image.id
    done = store.remove("app", in_use_by=["c" * 64], force=True)
    assert done == ["Untagged: app:latest"]
    # The container still reads the layers: the image stays, untagged.
    assert store.get(image.id).repo_tags == []
    assert store.layer_dirs(store.get(image.id))[0].is_dir()


def test_removing_one_of_several_tags_only_untags(store):
    image = store.import_rootfs(rootfs(), "app")
    store.tag("app", "app:v2")
    assert store.remove("app:v2") == ["Untagged: app:v2"]
    assert store.get(image.id).repo_tags == ["app:latest"]


def test_removing_by_id_an_image_with_several_tags_needs_force(store):
    image = store.import_rootfs(rootfs(), "app")
    store.tag("app", "app:v2")
    with pytest.raises(ImageReferenced):
        store.remove(image.id)
    done = store.remove(image.id, force=True)
    assert done[:2] == ["Untagged: app:latest", "Untagged: app:v2"]
    assert f"Deleted: {image.id}" in done


def test_remove_deletes_only_unreferenced_layers(store, state):
    shared = store.import_rootfs(rootfs(), "one")
    store.import_rootfs(rootfs(), "two", changes=["CMD echo"])
    done = store.remove("one")
    assert done == ["Untagged: one:latest", f"Deleted: {shared.id}"]
    assert store.layer_dirs(store.get("two"))[0].is_dir()
    done = store.remove("two")
    assert f"Deleted: {shared.layers[0]}" in done
    assert os.listdir(state.images / "layers") == []
    assert os.listdir(state.images / "configs") == []
    assert leftovers(state) == []
    with pytest.raises(NoSuchImage):
        store.get("two")


def test_it_loads_a_docker_save_tar(store, state):
    config = image_config([LOWER, UPPER])
    images = store.load(io.BytesIO(docker_save_tar(config, [LOWER, UPPER], ["app:1", "app:latest"])))
    [image] = images
    assert image.id == "sha256:" + sha(config)
    assert image.repo_tags == ["app:1", "app:latest"]
    top, bottom = store.layer_dirs(image)
    assert (bottom / "etc" / "gone").read_bytes() == b"bye"
    assert stat.S_ISCHR(os.lstat(top / "etc" / "gone").st_mode)
    assert os.getxattr(top / "data", "trusted.overlay.opaque") == b"y"
    assert image.config.cmd == ["sh"]
    assert leftovers(state) == []


def test_it_loads_a_gzipped_oci_layout_through_a_nested_index(store, state, tmp_path):
    config = image_config([LOWER, UPPER], cmd=["oci"])
    path = tmp_path / "oci.tar.gz"
    path.write_bytes(gzip.compress(oci_layout_tar(config, [LOWER, UPPER], "docker.io/library/web:2", nested=True)))
    [image] = store.load(path)
    assert image.repo_tags == ["web:2"]
    assert image.config.cmd == ["oci"]
    assert [p.parent.name for p in store.layer_dirs(image)] == [sha(UPPER), sha(LOWER)]
    assert leftovers(state) == []


def test_loading_shares_layers_the_store_already_has(store, state):
    store.load(io.BytesIO(docker_save_tar(image_config([LOWER]), [LOWER], ["base"])))
    [image] = store.load(io.BytesIO(oci_layout_tar(image_config([LOWER, UPPER]), [LOWER, UPPER], "app:1")))
    assert len(os.listdir(state.images / "layers")) == 2
    assert store.get("base").layers == image.layers[:1]


def test_a_corrupt_diff_id_leaves_nothing_behind(store, state):
    config = image_config([LOWER, UPPER])
    tampered = make_tar({"etc/.wh.gone": None, "data/new": b"evil"})
    with pytest.raises(InvalidValue):
        store.load(io.BytesIO(docker_save_tar(config, [LOWER, tampered], ["app:1"])))
    assert store.list() == []
    assert os.listdir(state.images / "layers") == []
    assert os.listdir(state.images / "configs") == []
    assert leftovers(state) == []
    with pytest.raises(NoSuchImage):
        store.get("app:1")


def test_a_truncated_archive_leaves_nothing_behind(store, state):
    data = docker_save_tar(image_config([LOWER, UPPER]), [LOWER, UPPER], ["app:1"])
    with pytest.raises(InvalidValue):
        store.load(io.BytesIO(gzip.compress(data)[:-200]))
    assert store.list() == []
    assert leftovers(state) == []


def test_a_load_with_layers_pointing_outside_the_archive_is_refused(store, state, tmp_path):
    secret = tmp_path / "secret.tar"
    secret.write_bytes(LOWER)
    config = image_config([LOWER])
    files = {f"{sha(config)}.json": config,
             "manifest.json": json.dumps([{"Config": f"{sha(config)}.json", "RepoTags": ["x"], "Layers": [str(secret)]}]).encode()}
    with pytest.raises(InvalidValue):
        store.load(io.BytesIO(make_tar(files)))
    assert store.list() == []


def test_a_mismatching_blob_digest_is_refused(store, state):
    data = oci_layout_tar(image_config([LOWER]), [LOWER], "app:1")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    index = json.loads(members["index.json"])
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:")
    members[manifest_name] = members[manifest_name].replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    with pytest.raises(InvalidValue):
        store.load(io.BytesIO(make_tar(members)))
    assert store.list() == []


def test_it_lists_images_newest_first(store):
    store.load(io.BytesIO(docker_save_tar(image_config([LOWER]), [LOWER], ["old"])))
    store.import_rootfs(rootfs(), "new")
    assert [i.repo_tags for i in store.list()] == [["new:latest"], ["old:latest"]]


def test_busybox_builds_deterministically_and_has_sh(store, state, tmp_path):
    first = build_busybox(store)
    second = build_busybox(ImageStore(StateRoot(tmp_path / "other")))
    again = build_busybox(store)
    assert first.id == second.id == again.id
    assert first.repo_tags == ["busybox:latest"]
    assert first.config.cmd == ["sh"]
    assert first.config.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    [root] = store.layer_dirs(first)
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert os.access(root / "bin" / "busybox", os.X_OK)
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert "nobody:x:65534:65534" in (root / "etc" / "passwd").read_text()
    assert "hosts: files dns" in (root / "etc" / "nsswitch.conf").read_text()
    assert leftovers(state) == []


def test_lookups_of_malformed_references_are_invalid(store):
    store.import_rootfs(rootfs(), "app")
    with pytest.raises(InvalidValue):
        store.get("App:Latest")


def test_concurrent_tagging_loses_no_tag(store):
    store.import_rootfs(rootfs(), "app")

    def tag_many(n):
        for i in range(15):
            ImageStore(store.state).tag("app", f"app:t{n}-{i}")

    threads = [threading.Thread(target=tag_many, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.get("app").repo_tags) == 1 + 6 * 15


def test_concurrent_imports_of_one_layer_share_it(store, state):
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda n: store.import_rootfs(rootfs(), f"app:{n}", [f"ENV N={n}"]), range(8)))
    assert len({i.id for i in images}) == 8
    assert len(os.listdir(state.images / "layers")) == 1
    assert leftovers(state) == []
