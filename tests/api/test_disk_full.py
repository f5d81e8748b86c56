"""``docker import`` and ``docker load`` through the API on a full state root (issue 9, item 5).

The API server runs over a small tmpfs of the test's own as its state root:
uploads land in ``<root>/tmp`` and a real image store on the same tmpfs
imports and loads them (the worker's part: the services here hand its errors
over as the Celery tasks do, as data). A filler file takes the free space for
real. Every answer is a JSON message that says the disk is full, never a bug's
500, and the store is as it was; with the space back the same request works.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from console.dockerapi.api import DockerAPI
from console.dockerapi.errors import status_of
from console.dockerapi.events import LocalEvents
from console.tasks import error_from_data, error_to_data
from runtime.errors import BerthError, DiskFull
from runtime.images import ImageStore
from runtime.paths import StateRoot
from tests.runtime.test_disk_full import BLOB, LAYER, MIB, Filler, small_tmpfs, snapshot
from tests.runtime.test_images import docker_save_tar, image_config

from .conftest import RawClient, ServerThread
from .fakes import FakeRuntime, FakeServices, FakeStore, Image, Related, Tag

SAVED = docker_save_tar(image_config([LAYER]), [LAYER], ["full/load:1"])
NO_SPACE = re.compile(r"no space left on device|free space")


def as_the_worker_answers(call):
    """Run call as a Celery task would: a runtime error crosses over as data and is raised again."""
    try:
        return call()
    except BerthError as error:
        raise error_from_data(error_to_data(error)) from None


class StoreServices(FakeServices):
    """The fake services, with images imported and loaded by a real image store."""

    def __init__(self, events, store: ImageStore):
        super().__init__(events)
        self.image_store = store
        self.before_writing = None  # the moment the worker starts on an upload

    def import_image(self, fileobj_or_path, reference=None, changes=()):
        self._about_to_write()
        image = as_the_worker_answers(lambda: self.image_store.import_rootfs(fileobj_or_path, reference, changes))
        return self._row(image)

    def load_images(self, fileobj_or_path):
        self._about_to_write()
        return [self._row(i) for i in as_the_worker_answers(lambda: self.image_store.load(fileobj_or_path))]

    def _about_to_write(self):
        if self.before_writing is not None:
            self.before_writing()

    def _row(self, image):
        row = Image(image.id, self.images[next(iter(self.images))].created, image.size, image.raw_config,
                    Related(Tag(t) for t in image.repo_tags))
        self.images[image.id] = row
        return row


@pytest.fixture
def full_api():
    """An API server whose state root is a 16 MiB tmpfs: its client factory, services, image store and filler."""
    with small_tmpfs("16m") as root:
        state = StateRoot(root)
        store = ImageStore(state)
        events = LocalEvents()
        services = StoreServices(events, store)
        services.store = FakeStore()
        api = DockerAPI(services=services, runtime=FakeRuntime(root / "fake"), events=events, root=root,
                        store=services.store, stats_interval=0.1, poll_interval=0.2)
        server = ServerThread(api, str(root / "docker.sock")).start()
        clients = []
        try:
            def connect() -> RawClient:
                clients.append(RawClient(server.path, timeout=30))
                return clients[-1]

            yield SimpleNamespace(connect=connect, services=services, store=store, filler=Filler(root))
        finally:
            for client in clients:
                client.close()
            server.stop()


def upload(connect, path: str, body: bytes):
    client = connect()
    client.request("POST", path, body, {"Content-Type": "application/x-tar"})
    status, headers, data = client.response()
    return status, headers, data


def json_lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def assert_a_clear_refusal(status: int, headers: dict, data: bytes) -> str:
    assert status >= 400
    assert headers["content-type"].startswith("application/json")
    message = json.loads(data)["message"]
    assert NO_SPACE.search(message), message
    assert "Traceback" not in message and "internal error" not in message
    return message


IMPORT = "/v1.45/images/create?fromSrc=-&repo=full/api&tag=1"
LOAD = "/v1.45/images/load?quiet=1"


def refused_on_a_full_disk_then_accepted(full_api, path: str, archive: bytes) -> bytes:
    """Upload ``archive`` on a full disk: a clear refusal that stores nothing (no upload left in tmp/,
    no layer, no tag). Then once space is freed: accepted; the answer's body."""
    connect, store, filler = full_api.connect, full_api.store, full_api.filler
    before = snapshot(store.state)
    filler.fill()
    message = assert_a_clear_refusal(*upload(connect, path, archive))
    assert message.startswith("cannot receive the archive: no space left on device")
    assert snapshot(store.state) == before
    filler.free()
    status, _, data = upload(connect, path, archive)
    assert status == 200
    return data


def test_an_import_on_a_full_disk_is_a_clear_error_and_stores_nothing(full_api):
    data = refused_on_a_full_disk_then_accepted(full_api, IMPORT, LAYER)
    store = full_api.store
    assert json_lines(data)[-1]["status"] == store.get("full/api:1").id
    assert (store.layer_dirs(store.get("full/api:1"))[0] / "data" / "blob").read_bytes() == BLOB


def test_a_load_on_a_full_disk_is_a_clear_error_and_stores_nothing(full_api):
    data = refused_on_a_full_disk_then_accepted(full_api, LOAD, SAVED)
    assert json_lines(data) == [{"stream": "Loaded image: full/load:1\n"}]


@pytest.mark.parametrize("path, body", [(IMPORT, LAYER), (LOAD, SAVED)], ids=["import", "load"])
def test_an_upload_that_fits_but_does_not_unpack_is_a_clear_error(full_api, path, body):
    connect, store, filler = full_api.connect, full_api.store, full_api.filler
    before = snapshot(store.state)
    filler.fill(leave=len(body) + MIB // 2)  # the upload fits, unpacking it beside the upload does not
    status, headers, data = upload(connect, path, body)
    if status == 200:  # load reports failures in its stream, as moby does
        [line] = json_lines(data)
        assert NO_SPACE.search(line["error"]), line
    else:
        assert_a_clear_refusal(status, headers, data)
    assert snapshot(store.state) == before


@pytest.mark.parametrize("path, body", [(IMPORT, LAYER), (LOAD, SAVED)], ids=["import", "load"])
def test_a_disk_that_fills_after_the_upload_was_checked_is_a_clear_error(full_api, path, body):
    # Something else (a container's log, say) takes the space between the upload's checks and the worker's unpacking.
    connect, store, filler = full_api.connect, full_api.store, full_api.filler
    full_api.services.before_writing = filler.fill
    before = snapshot(store.state)
    status, headers, data = upload(connect, path, body)
    if path == LOAD:
        assert status == 200  # load reports failures in its stream, as moby does
        [line] = json_lines(data)
        message = line["error"]
        assert line["errorDetail"] == {"message": message}
    else:
        message = assert_a_clear_refusal(status, headers, data)
    assert re.match(r"cannot (import the image|load the images): no space left on device \(the filesystem of ", message)
    assert snapshot(store.state) == before
    full_api.services.before_writing = None
    filler.free()
    assert upload(connect, path, body)[0] == 200


def test_a_full_disk_in_the_worker_reaches_the_client_as_the_same_message(tmp_path):
    # What the services raise again from a task's answer maps to the message the runtime wrote.
    layer = tmp_path / "layer.tar"
    layer.write_bytes(LAYER)
    with small_tmpfs("16m") as root:
        store = ImageStore(StateRoot(root))
        Filler(root).fill()
        with pytest.raises(DiskFull) as caught:
            as_the_worker_answers(lambda: store.import_rootfs(str(layer)))
    assert status_of(caught.value) == (500, str(caught.value))
    assert str(caught.value).startswith("cannot import the image: no space left on device (the filesystem of ")

