"""The container list page and logging in: an anonymous visitor, the admin."""

import pytest
from django.utils import timezone

from console.models import Container


@pytest.fixture
def web(db):
    return Container.objects.create(id="ab" * 32, name="web", host="test-host", image_ref="busybox",
                                    state="running", path="sleep", args=["1000"], created=timezone.now(),
                                    started_at=timezone.now())


def test_an_anonymous_visitor_is_sent_to_log_in(client, web):
    response = client.get("/")
    assert response.status_code == 302 and response.url == "/login/?next=/"


def test_the_login_page_renders(client, db):
    response = client.get("/login/")
    assert response.status_code == 200 and b'name="password"' in response.content


def test_the_admin_can_log_in(client, admin):
    response = client.post("/login/", {"username": "alice", "password": "s3cret-pass"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused(client, admin):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"didn't match" in response.content


def test_a_logged_in_user_sees_the_containers(client, admin, web):
    client.force_login(admin)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="container-' + web.id + '"' in page
    assert "web" in page and "sleep 1000" in page and "Up Less than a second" in page


def test_logging_out_ends_the_session(client, admin):
    client.force_login(admin)
    client.post("/logout/")
    assert client.get("/").status_code == 302
