"""Login, CSRF and cookies on every way into the console: each URL pattern and websocket route, walked."""

import json
import os
import re
import subprocess
import sys

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client, RequestFactory
from django.urls import URLResolver, get_resolver

from console.routing import websocket_urlpatterns
from tests.helpers.sockets import connects

MADE_UP_ID = "ab" * 32
# Public by design: the login page itself, and logout (which only ends a session).
PUBLIC = {"login/", "logout/"}


def fill(route: str) -> str:
    """A concrete path for a route pattern: each parameter given a made-up value of its converter's kind."""
    return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: "1" if m.group(1) == "int" else MADE_UP_ID, route)


def routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def console_routes():
    """Every console route, the included console/pages/* areas too; Django's admin has its own login."""
    return [route for route in routes(get_resolver().url_patterns) if not route.startswith("admin/")]


def row_counts():
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


PAGES = [route for route in console_routes() if route not in PUBLIC]


def test_the_walk_finds_the_areas_pages():
    # The walk must reach into the included areas, or the tests below would prove little.
    assert {"run/", "images/", "networks/", "volumes/", "users/", "containers/<str:container_id>/"} <= set(PAGES)


def sent_to_login(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL)


@pytest.mark.django_db
@pytest.mark.parametrize("route", PAGES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_anonymous_visitor_is_sent_to_login_and_changes_nothing(route, method):
    before = row_counts()
    response = getattr(Client(), method)(fill(route))
    assert sent_to_login(response) or response.status_code in (404, 405), (route, response.status_code)
    assert row_counts() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", [str(pattern.pattern) for pattern in websocket_urlpatterns])
def test_an_anonymous_websocket_is_refused(route):
    assert connects(fill(route)) is False


@pytest.mark.django_db
@pytest.mark.parametrize("route", console_routes())
def test_a_post_without_the_csrf_token_is_forbidden_and_changes_nothing(route, admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    before = row_counts()
    response = client.post(fill(route), {"name": "made-up", "image": "busybox", "role": "admin"})
    assert response.status_code == 403, (route, response.status_code)
    assert row_counts() == before


def test_the_real_form_posts_with_its_token(admin):
    # The same client with the page's token gets past CSRF: the 403s above are CSRF, not something else.
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post("/login/", {"username": "alice", "password": "s3cret-pass", "csrfmiddlewaretoken": token})
    assert sent_to_login(response) is False and response.status_code == 302


def settings_under(environment: dict) -> dict:
    """The cookie settings console/settings.py derives in a fresh process with ``environment``."""
    probe = ("import json; from console import settings as s; print(json.dumps({name: getattr(s, name) for name in "
             "('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_PROXY_SSL_HEADER', 'SESSION_COOKIE_HTTPONLY')}))")
    env = {key: value for key, value in os.environ.items() if key != "BERTH_TLS"} | environment
    output = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True,
                            cwd=settings.BASE_DIR).stdout
    values = json.loads(output)
    if values["SECURE_PROXY_SSL_HEADER"] is not None:
        values["SECURE_PROXY_SSL_HEADER"] = tuple(values["SECURE_PROXY_SSL_HEADER"])
    return values


def log_in(**headers):
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "s3cret-pass"}, **headers)
    assert response.status_code == 302
    return response.cookies[settings.SESSION_COOKIE_NAME]


@pytest.mark.parametrize("environment", [{}, {"BERTH_TLS": "0"}])
def test_without_tls_the_session_cookie_is_httponly(environment, settings, admin):
    for name, value in settings_under(environment).items():
        setattr(settings, name, value)
    cookie = log_in()
    assert cookie["httponly"] is True
    assert not cookie["secure"]


def test_under_berth_tls_both_cookies_are_secure_and_httponly_behind_the_proxy(settings, admin):
    for name, value in settings_under({"BERTH_TLS": "1"}).items():
        setattr(settings, name, value)
    client = Client()
    login_page = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert login_page.cookies[settings.CSRF_COOKIE_NAME]["secure"] is True
    cookie = log_in(HTTP_X_FORWARDED_PROTO="https")
    assert cookie["httponly"] is True
    assert cookie["secure"] is True


def test_under_berth_tls_the_proxy_header_is_what_makes_a_request_secure(settings):
    for name, value in settings_under({"BERTH_TLS": "1"}).items():
        setattr(settings, name, value)
    assert RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https").is_secure() is True
    assert RequestFactory().get("/").is_secure() is False
