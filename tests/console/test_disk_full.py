"""The images page on a full state root (issue 9, item 5): the form says the disk is full, nothing is stored.

BERTH_ROOT is a small tmpfs of the test's own, filled for real; the host's
tasks run inline (the ``host`` fixture) over a runtime on that tmpfs.
"""

from __future__ import annotations

import gc

import pytest

from console.models import Image, Operation
from console.runtime_access import get_runtime
from tests.console.test_image_pages import docker_save_tar, upload
from tests.helpers.pages import field_errors
from tests.runtime.test_disk_full import BLOB, MIB, Filler, small_tmpfs, snapshot
from tests.helpers.tars import rootfs_tar

ROOTFS = rootfs_tar({"blob": BLOB})


@pytest.fixture
def full_host(host, settings):
    """The runtime over a 16 MiB tmpfs as BERTH_ROOT, and the filler of that tmpfs."""
    with small_tmpfs("16m") as root:
        settings.BERTH_ROOT = root
        # As deployed (BERTH_UPLOAD_DIR, scripts/env.sh): uploads land on the state root's filesystem.
        (root / "uploads").mkdir()
        settings.FILE_UPLOAD_TEMP_DIR = str(root / "uploads")
        yield get_runtime(), Filler(root)
        gc.collect()  # uploads the test client left open are deleted while their folder is still there


def import_rootfs(client):
    return client.post("/images/import/", {"import-archive": upload(ROOTFS), "import-reference": "berth-test/full:1"})


def archive_errors(response, field: str) -> str:
    assert response.status_code == 200
    return field_errors(response.content.decode(), field)


def test_an_import_that_fills_the_disk_is_an_error_next_to_the_file_field(signed_in, full_host):
    engine, filler = full_host
    before, rows = snapshot(engine.state), Image.objects.count()
    filler.fill(leave=len(ROOTFS) + MIB)  # the upload lands under the state root; its layer does not fit beside it
    errors = archive_errors(import_rootfs(signed_in), "import-archive")
    assert "cannot import the image: no space left on device" in errors
    assert snapshot(engine.state) == before and Image.objects.count() == rows
    assert Operation.objects.get(action="image.import").error.startswith("cannot import the image: no space left")
    filler.free()
    assert import_rootfs(signed_in).status_code == 302
    assert engine.images.get("berth-test/full:1").repo_tags == ["berth-test/full:1"]


@pytest.mark.parametrize("form", ["import", "load"])
def test_an_upload_to_a_full_disk_is_an_error_next_to_the_file_field(signed_in, full_host, form):
    engine, filler = full_host
    before, rows = snapshot(engine.state), Image.objects.count()
    filler.fill()
    if form == "import":
        response = import_rootfs(signed_in)
    else:
        response = signed_in.post("/images/load/", {"load-archive": upload(docker_save_tar("berth-test/full:2"))})
    errors = archive_errors(response, f"{form}-archive")
    assert "cannot receive the archive: no space left on device" in errors
    assert snapshot(engine.state) == before and Image.objects.count() == rows
