"""Browser tests: Debian's headless Chromium, driven by Playwright, against the live stack
(see tests/browser/web.py for the picture). A missing Chromium fails the tests, it does not skip them.

Playwright's sync API keeps an event loop that Django sees as running in this thread, so the
browser is started per test, after ``live`` (which uses the ORM) and ended before it; test
bodies talk to Berth through the page and the docker CLI only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.web import (ADMIN, CHROMIUM, DOCKER, MISSING_CHROMIUM, PAGE_PROBE, create_admin, docker_cli,
                               launch_chromium, log_in, serving_docker_api, start_web_server, stop_server)


@pytest.fixture(scope="session")
def admin_password(live_stack) -> str:
    return create_admin(live_stack)


@pytest.fixture(scope="session")
def web_server(live_stack, browser_docker_api) -> str:
    process, url = start_web_server(live_stack, docker_socket=browser_docker_api)  # the shell's exec runs there
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="session")
def browser_docker_api(live_stack) -> Path:
    """The Docker API on a socket of these tests' own in the stack's root."""
    with serving_docker_api(live_stack, live_stack.root / "browser-docker.sock") as path:
        yield path


@pytest.fixture
def docker(live, browser_docker_api, tmp_path):
    """The real docker CLI on Berth: ``docker("run", "-d", ...)`` -> CompletedProcess (text)."""
    if not DOCKER.exists():
        pytest.fail(f"the docker CLI is missing at {DOCKER}")
    return docker_cli(browser_docker_api, tmp_path)


@pytest.fixture
def browser(live):
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, web_server):
    """A page in a fresh context (no cookies); relative URLs go to the web server."""
    context = browser.new_context(base_url=web_server)
    context.add_init_script(PAGE_PROBE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def logged_in_page(page, admin_password):
    log_in(page, ADMIN, admin_password)
    return page
