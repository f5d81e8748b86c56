"""The users page: an admin creates accounts with a role, changes roles, deactivates; nobody else may."""

import re

import pytest
from django.contrib.auth import get_user_model

from console import roles
from console.models import Operation

User = get_user_model()


@pytest.fixture
def operator(db):
    user = User.objects.create_user("olga", password="pw")
    roles.grant(user, roles.OPERATOR)
    return user


def row_of(page: str, user) -> str:
    row = page[page.index(f'id="user-{user.pk}"'):]
    return row[:row.index("</tr>")]


def test_the_page_lists_every_user_with_their_role(signed_in, admin, viewer, operator):
    page = signed_in.get("/users/").content.decode()
    assert '<td class="role">viewer</td>' in row_of(page, viewer)
    assert '<td class="role">operator</td>' in row_of(page, operator)
    assert '<td class="role">admin</td>' in row_of(page, admin)


def test_the_nav_links_to_the_users_page_for_admins_only(signed_in, client, viewer):
    assert 'href="/users/"' in signed_in.get("/").content.decode()
    client.force_login(viewer)
    assert 'href="/users/"' not in client.get("/").content.decode()


def test_an_admin_creates_a_user_with_a_role_who_can_then_sign_in(signed_in, admin, client):
    response = signed_in.post("/users/create/", {"username": "nina", "password": "long-password",
                                                 "role": "operator"})
    assert response.status_code == 302
    nina = User.objects.get(username="nina")
    assert roles.role_of(nina) == roles.OPERATOR and nina.check_password("long-password")
    row = Operation.objects.get(action="user.create")
    assert (row.user, row.source, row.target_name, row.target_id, row.state) == (
        admin, "web", "nina", str(nina.pk), Operation.STATE_DONE)
    client.logout()
    assert client.login(username="nina", password="long-password")


def test_a_taken_name_is_an_error_next_to_the_name(signed_in, viewer):
    response = signed_in.post("/users/create/", {"username": "vic", "password": "long-password", "role": "admin"})
    page = response.content.decode()
    assert response.status_code == 409
    field = page[page.index('id="field-username"'):]
    assert "a user named vic exists already" in field[:field.index("</div>")]
    assert roles.role_of(viewer) == roles.VIEWER
    assert Operation.objects.get(action="user.create").state == Operation.STATE_FAILED


def test_a_short_password_is_refused(signed_in):
    response = signed_in.post("/users/create/", {"username": "nina", "password": "short", "role": "viewer"})
    assert response.status_code == 400 and not User.objects.filter(username="nina").exists()


def test_an_admin_changes_a_role(signed_in, admin, viewer):
    assert signed_in.post(f"/users/{viewer.pk}/role/", {"role": "admin"}).status_code == 302
    viewer.refresh_from_db()
    assert roles.role_of(viewer) == roles.ADMIN and viewer.is_staff  # the Django admin too
    row = Operation.objects.get(action="user.role")
    assert (row.user, row.target_name, row.detail["from"], row.detail["to"], row.state) == (
        admin, "vic", "viewer", "admin", Operation.STATE_DONE)


def test_a_demoted_superuser_is_no_admin_any_more(signed_in, db):
    other = User.objects.create_user("root2", password="pw", is_staff=True, is_superuser=True)
    signed_in.post(f"/users/{other.pk}/role/", {"role": "viewer"})
    other.refresh_from_db()
    assert roles.role_of(other) == roles.VIEWER and not (other.is_superuser or other.is_staff)


def test_an_unknown_role_is_refused_and_recorded(signed_in, viewer):
    assert signed_in.post(f"/users/{viewer.pk}/role/", {"role": "root"}).status_code == 400
    assert roles.role_of(viewer) == roles.VIEWER
    assert "unknown role" in Operation.objects.get(action="user.role").error


def test_an_admin_deactivates_a_user_who_can_no_longer_sign_in(signed_in, client, admin, viewer):
    assert signed_in.post(f"/users/{viewer.pk}/deactivate/").status_code == 302
    viewer.refresh_from_db()
    assert not viewer.is_active
    assert '<td class="active">no</td>' in row_of(signed_in.get("/users/").content.decode(), viewer)
    row = Operation.objects.get(action="user.deactivate")
    assert (row.user, row.target_name, row.state) == (admin, "vic", Operation.STATE_DONE)
    client.logout()
    assert not client.login(username="vic", password="pw")


def test_an_admin_cannot_demote_or_deactivate_themselves(signed_in, admin):
    page = signed_in.get("/users/").content.decode()
    assert "deactivate" not in row_of(page, admin) and "change role" not in row_of(page, admin)
    assert signed_in.post(f"/users/{admin.pk}/role/", {"role": "viewer"}).status_code == 409
    assert signed_in.post(f"/users/{admin.pk}/deactivate/").status_code == 409
    admin.refresh_from_db()
    assert roles.role_of(admin) == roles.ADMIN and admin.is_active


def test_an_unknown_user_is_404(signed_in):
    assert signed_in.post("/users/9999/deactivate/").status_code == 404


# --- operator, viewer, anonymous ------------------------------------------------------------------------


@pytest.fixture(params=["operator", "viewer"])
def not_admin(request, operator, viewer):
    return {"operator": operator, "viewer": viewer}[request.param]


def test_anyone_but_an_admin_gets_403_on_the_page(client, not_admin):
    client.force_login(not_admin)
    response = client.get("/users/")
    assert response.status_code == 403 and "cannot user.list" in response.content.decode()


@pytest.mark.parametrize("post", [
    lambda target: ("/users/create/", {"username": "nina", "password": "long-password", "role": "admin"}),
    lambda target: (f"/users/{target.pk}/role/", {"role": "admin"}),
    lambda target: (f"/users/{target.pk}/deactivate/", {}),
], ids=["create", "role", "deactivate"])
def test_anyone_but_an_admin_is_refused_every_change_and_it_is_recorded(client, not_admin, post, db):
    target = User.objects.create_user("pat", password="pw")
    client.force_login(not_admin)
    url, data = post(target)
    response = client.post(url, data)
    assert response.status_code == 403
    assert re.search(rf"{not_admin.username} is an? (viewer|operator) and cannot user\.", response.content.decode())
    target.refresh_from_db()
    assert roles.role_of(target) == roles.VIEWER and target.is_active
    assert not User.objects.filter(username="nina").exists()
    refusal = Operation.objects.get(action__startswith="user.")
    assert (refusal.user, refusal.state) == (not_admin, Operation.STATE_FAILED)


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    assert client.get("/users/")["Location"].startswith("/login/")
