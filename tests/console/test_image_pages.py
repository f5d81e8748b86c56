"""The images page: list, import, load, tag, remove; the admin, a viewer, an anonymous visitor."""

import hashlib
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console import services
from console.models import Image, ImageTag, Operation
from tests.helpers.pages import field_errors
from tests.helpers.tars import rootfs_tar


def docker_save_tar(tag: str) -> bytes:
    """A one-layer image as `docker save` writes it: manifest.json, <config>.json, <layer>/layer.tar."""
    layer = rootfs_tar({"saved.txt": b"saved\n"})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/saved.txt"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = hashlib.sha256(layer).hexdigest() + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    return rootfs_tar({config_name: config, layer_name: layer, "manifest.json": manifest})


def upload(data: bytes, name="rootfs.tar"):
    return SimpleUploadedFile(name, data, content_type="application/x-tar")


def import_tar(client, reference="berth-test/page:1", files=None, **extra):
    data = rootfs_tar(files or {"hello.txt": b"hi\n"})
    return client.post("/images/import/", {"import-archive": upload(data), "import-reference": reference, **extra})


# --- the list -------------------------------------------------------------------------------------


def test_the_list_shows_the_images_with_their_tags_sizes_and_users(signed_in, busybox):
    services.create_container({"Image": "busybox"}, name="uses-busybox")
    page = signed_in.get("/images/").content.decode()
    row = page[page.index(f'id="image-{busybox.id[7:19]}"'):]
    row = row[:row.index("</tr>")]
    assert "busybox:latest" in row and busybox.id[7:19] in row and " ago" in row
    assert '<td class="containers">1</td>' in row
    assert 'enctype="multipart/form-data"' in page and 'hx-encoding="multipart/form-data"' in page
    assert "htmx:xhr:progress" in page and "<progress" in page


def test_the_nav_links_to_the_images_page(signed_in, busybox):
    assert 'href="/images/"' in signed_in.get("/").content.decode()


# --- import, load, tag, remove ------------------------------------------------------------------------


def test_importing_a_rootfs_tar_adds_the_image_to_the_list(signed_in, busybox, host):
    response = import_tar(signed_in, **{"import-changes": 'CMD ["/hello.txt"]'})
    assert response.status_code == 302 and response.url == "/images/"
    image = services.get_image("berth-test/page:1")
    assert image.config["config"]["Cmd"] == ["/hello.txt"]
    page = signed_in.get("/images/").content.decode()
    assert "berth-test/page:1" in page and "Imported " + image.id in page
    assert not list(host.state.tmp.glob("upload-*"))
    services.remove_image(image.id, force=True)


def test_an_htmx_import_is_told_where_to_go_next(signed_in, busybox):
    data = rootfs_tar({"a": b"a"})
    response = signed_in.post("/images/import/", {"import-archive": upload(data), "import-reference": "berth-test/hx"},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Redirect"] == "/images/"
    services.remove_image("berth-test/hx", force=True)


def test_a_non_tar_upload_is_an_error_next_to_the_file_field(signed_in, busybox):
    response = signed_in.post("/images/import/", {"import-archive": upload(b"this is not a tar archive\n" * 40),
                                                  "import-reference": "berth-test/bad"})
    assert response.status_code == 200
    errors = field_errors(response.content.decode(), "import-archive")
    assert 'class="errorlist' in errors and "not a valid tar archive" in errors
    assert not ImageTag.objects.filter(name="berth-test/bad:latest").exists()


def test_a_bad_reference_is_an_error_next_to_its_field(signed_in, busybox):
    response = import_tar(signed_in, reference="Bad Name!")
    errors = field_errors(response.content.decode(), "import-reference")
    assert "invalid reference format" in errors
    assert Image.objects.count() == 1


def test_an_htmx_import_with_an_error_gets_the_form_back(signed_in, busybox):
    response = signed_in.post("/images/import/", {"import-reference": "x"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert page.lstrip().startswith('<form id="image-import-form"')
    assert "This field is required." in field_errors(page, "import-archive")


def test_loading_an_archive_brings_its_images(signed_in, busybox):
    response = signed_in.post("/images/load/", {"load-archive": upload(docker_save_tar("berth-test/saved:2"))})
    assert response.status_code == 302
    page = signed_in.get("/images/").content.decode()
    assert "Loaded image: berth-test/saved:2" in page and "berth-test/saved:2" in page
    services.remove_image("berth-test/saved:2", force=True)


def test_loading_a_non_archive_is_an_error_next_to_the_file_field(signed_in, busybox):
    response = signed_in.post("/images/load/", {"load-archive": upload(b"\x00garbage" * 100, "x.tar")})
    errors = field_errors(response.content.decode(), "load-archive")
    assert 'class="errorlist' in errors and "not a valid tar archive" in errors


def test_tagging_adds_the_tag_to_the_row(signed_in, busybox):
    response = signed_in.post(f"/images/{busybox.id}/tag/", {"reference": "berth-test/again:7"})
    assert response.status_code == 302
    page = signed_in.get("/images/").content.decode()
    assert "berth-test/again:7" in page and "Tagged " + busybox.id[7:19] in page
    services.remove_image("berth-test/again:7")


def test_a_bad_tag_is_an_error_next_to_that_rows_field(signed_in, busybox):
    response = signed_in.post(f"/images/{busybox.id}/tag/", {"reference": "UPPER:case"})
    errors = field_errors(response.content.decode(), f"tag-{busybox.id[7:19]}")
    assert "invalid reference format: repository name (UPPER:case) must be lowercase" in errors


def test_untagging_one_tag_keeps_the_image(signed_in, busybox):
    services.tag_image("busybox", "berth-test/second")
    response = signed_in.post(f"/images/{busybox.id}/remove/", {"reference": "berth-test/second:latest"})
    assert response.status_code == 302
    page = signed_in.get("/images/").content.decode()
    assert "Untagged: berth-test/second:latest" in page
    assert Image.objects.filter(pk=busybox.id).exists() and not ImageTag.objects.filter(name="berth-test/second:latest").exists()


def test_removing_an_image_in_use_says_why_and_force_untags_it(signed_in, busybox):
    image = services.import_image(io.BytesIO(rootfs_tar({"true": b""})), "berth-test/used", changes=["CMD /true"])
    container = services.create_container({"Image": "berth-test/used"})
    signed_in.post(f"/images/{image.id}/remove/")
    page = signed_in.get("/images/").content.decode()
    assert f"image is being used by stopped container {container.id[:12]}" in page
    assert ImageTag.objects.filter(name="berth-test/used:latest").exists()
    signed_in.post(f"/images/{image.id}/remove/", {"force": "on"})
    page = signed_in.get("/images/").content.decode()
    assert "Untagged: berth-test/used:latest" in page and "&lt;none&gt;" in page
    services.remove_container(container.id)
    signed_in.post(f"/images/{image.id}/remove/")
    assert f"Deleted: {image.id}" in signed_in.get("/images/").content.decode()
    assert not Image.objects.filter(pk=image.id).exists()


# --- a viewer and an anonymous visitor ---------------------------------------------------------------


def test_a_viewer_sees_the_list_but_no_forms(client, viewer, busybox):
    client.force_login(viewer)
    page = client.get("/images/").content.decode()
    assert "busybox:latest" in page
    assert "<form" not in page.replace('action="/logout/"', "").split("<main>")[1]


@pytest.mark.parametrize("action", ["import", "load", "tag", "remove"])
def test_a_viewer_gets_403_and_nothing_changes(client, viewer, busybox, action):
    client.force_login(viewer)
    posts = {
        "import": ("/images/import/", lambda: {"import-archive": upload(rootfs_tar({"a": b"a"})), "import-reference": "v/x"}),
        "load": ("/images/load/", lambda: {"load-archive": upload(rootfs_tar({"a": b"a"}))}),
        "tag": (f"/images/{busybox.id}/tag/", lambda: {"reference": "v/tagged"}),
        "remove": (f"/images/{busybox.id}/remove/", lambda: {"force": "on"}),
    }
    url, data = posts[action]
    before = sorted(ImageTag.objects.values_list("name", flat=True))
    response = client.post(url, data())
    assert response.status_code == 403 and "is a viewer and cannot" in response.content.decode()
    assert sorted(ImageTag.objects.values_list("name", flat=True)) == before
    operation = Operation.objects.get(action=f"image.{action}")
    assert operation.state == "failed" and operation.user == viewer and operation.source == "web"


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get("/images/")
    assert response.status_code == 302 and response.url == "/login/?next=/images/"


@pytest.mark.parametrize("url", ["/images/import/", "/images/load/", "/images/sha256:00/tag/", "/images/sha256:00/remove/"])
def test_an_anonymous_post_is_sent_to_log_in(client, db, url):
    response = client.post(url, {})
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert not Operation.objects.exists()


def test_an_upload_without_the_csrf_token_is_refused(admin, busybox):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = client.post("/images/import/", {"import-archive": upload(rootfs_tar({"a": b"a"})),
                                               "import-reference": "berth-test/csrf"})
    assert response.status_code == 403 and not ImageTag.objects.filter(name="berth-test/csrf:latest").exists()


def test_an_upload_is_streamed_to_a_temporary_file_not_held_in_memory(signed_in, busybox, monkeypatch):
    seen = []
    real_import = services.import_image

    def recording_import(fileobj, *args, **kwargs):
        seen.append(type(fileobj.file).__name__ if hasattr(fileobj, "file") else type(fileobj).__name__)
        return real_import(fileobj, *args, **kwargs)

    monkeypatch.setattr(services, "import_image", recording_import)
    import_tar(signed_in, reference="berth-test/streamed")
    assert seen and "BytesIO" not in seen[0]
    services.remove_image("berth-test/streamed", force=True)


def test_a_viewer_is_refused_before_the_tag_is_checked(client, viewer, busybox):
    client.force_login(viewer)
    response = client.post(f"/images/{busybox.id}/tag/", {"reference": "UPPER:case"})
    assert response.status_code == 403 and "invalid reference format" not in response.content.decode()
    assert Operation.objects.get(action="image.tag", user=viewer).state == "failed"
