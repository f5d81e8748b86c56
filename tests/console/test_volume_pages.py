"""The volumes page: list with the containers using each, create, remove; admin, viewer, anonymous."""

from pathlib import Path

from console import services
from console.models import Operation, Volume
from tests.helpers.pages import field_errors


def row_of(page: str, name: str) -> str:
    row = page[page.index(f'id="volume-{name}"'):]
    return row[:row.index("</tr>")]


def test_the_list_shows_each_volume_and_links_the_containers_using_it(signed_in, busybox):
    container = services.create_container({"Image": "busybox", "HostConfig": {"Binds": ["shared:/data"]}}, name="user1")
    services.create_volume({"Name": "idle"})
    page = signed_in.get("/volumes/").content.decode()
    shared = row_of(page, "shared")
    assert "local" in shared and Volume.objects.get(name="shared").mountpoint in shared
    assert f'<a href="/containers/{container.id}/">user1</a>' in shared
    assert '<td class="containers">—</td>' in row_of(page, "idle")
    services.remove_container(container.id)


def test_the_nav_links_to_the_volumes_page(signed_in):
    assert 'href="/volumes/"' in signed_in.get("/").content.decode()


def test_creating_a_volume_from_the_form_lists_it_with_its_labels(signed_in, host):
    response = signed_in.post("/volumes/create/", {"name": "data1", "labels": "team=web\nbackup"})
    assert response.status_code == 302 and response.url == "/volumes/"
    volume = Volume.objects.get(name="data1")
    assert volume.labels == {"team": "web", "backup": ""} and Path(volume.mountpoint).is_dir()
    page = signed_in.get("/volumes/").content.decode()
    assert "Created volume data1." in page and "team=web" in row_of(page, "data1")


def test_a_volume_without_a_name_gets_a_random_one(signed_in, host):
    signed_in.post("/volumes/create/", {"name": "", "labels": ""})
    assert len(Volume.objects.get().name) == 64


def test_a_bad_name_is_an_error_next_to_the_name_with_the_apis_message(signed_in, host):
    response = signed_in.post("/volumes/create/", {"name": "bad/name", "labels": ""})
    errors = field_errors(response.content.decode(), "name")
    assert 'class="errorlist' in errors and "includes invalid characters for a local volume name" in errors
    assert not Volume.objects.exists()


def test_a_label_without_a_key_is_an_error_next_to_the_labels(signed_in, host):
    response = signed_in.post("/volumes/create/", {"name": "v", "labels": "=value"})
    assert "the key is empty" in field_errors(response.content.decode(), "labels")
    assert not Volume.objects.exists()


def test_removing_a_volume_takes_it_off_the_list_and_the_disk(signed_in, host):
    volume = services.create_volume({"Name": "old"})
    response = signed_in.post("/volumes/old/remove/")
    assert response.status_code == 302
    page = signed_in.get("/volumes/").content.decode()
    assert "Removed volume old." in page and 'id="volume-old"' not in page
    assert not Path(volume.mountpoint).exists()


def test_a_volume_in_use_is_kept_and_the_page_says_why(signed_in, busybox):
    container = services.create_container({"Image": "busybox", "HostConfig": {"Binds": ["busy:/data"]}})
    response = signed_in.post("/volumes/busy/remove/", {"force": "on"}, follow=True)
    assert f"remove busy: volume is in use - [{container.id}]" in response.content.decode()
    assert Volume.objects.filter(name="busy").exists()
    services.remove_container(container.id, volumes=True)


def test_a_viewer_sees_the_volumes_but_no_forms(client, viewer, host):
    services.create_volume({"Name": "seen"})
    client.force_login(viewer)
    page = client.get("/volumes/").content.decode()
    assert 'id="volume-seen"' in page and "<form" not in page.split("<main>")[1]


def test_a_viewer_cannot_create_a_volume(client, viewer, host):
    client.force_login(viewer)
    response = client.post("/volumes/create/", {"name": "sneaky", "labels": ""})
    assert response.status_code == 403 and "vic is a viewer and cannot volume.create" in response.content.decode()
    assert not Volume.objects.filter(name="sneaky").exists()
    assert Operation.objects.get(action="volume.create", user=viewer).state == "failed"


def test_a_viewer_cannot_remove_a_volume(client, viewer, host):
    services.create_volume({"Name": "kept"})
    client.force_login(viewer)
    response = client.post("/volumes/kept/remove/", {"force": "on"})
    assert response.status_code == 403 and "cannot volume.remove" in response.content.decode()
    assert Volume.objects.filter(name="kept").exists()
    assert Operation.objects.get(action="volume.remove", user=viewer).state == "failed"


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get("/volumes/")
    assert response.status_code == 302 and response.url == "/login/?next=/volumes/"


def test_an_anonymous_post_changes_nothing(client, db):
    response = client.post("/volumes/create/", {"name": "anon"})
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert not Volume.objects.exists() and not Operation.objects.exists()


def test_a_viewer_is_refused_before_the_name_is_checked(client, viewer, host):
    client.force_login(viewer)
    response = client.post("/volumes/create/", {"name": "bad/name", "labels": ""})
    assert response.status_code == 403 and "invalid characters" not in response.content.decode()
    assert Operation.objects.get(action="volume.create", user=viewer).state == "failed"
