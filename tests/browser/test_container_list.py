"""The containers list in a real browser: logging in, and rows that follow the CLI and the buttons live."""

import pytest
from playwright.sync_api import expect

from tests.browser.web import assert_not_reloaded, mark_document, wait_until_listening

pytestmark = pytest.mark.live

# Leaves at once on SIGTERM (sh as PID 1 would otherwise ignore it until the stop timeout's SIGKILL).
POLITE_SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]


def test_logging_in_through_the_form_shows_the_containers_list(logged_in_page, web_server):
    page = logged_in_page
    expect(page).to_have_url(f"{web_server}/")
    expect(page.get_by_role("heading", name="Containers")).to_be_visible()
    expect(page.locator("table#containers")).to_be_visible()


def test_a_container_started_with_the_cli_appears_stops_and_goes_without_a_reload(logged_in_page, docker):
    page = logged_in_page
    wait_until_listening(page)
    mark_document(page)

    started = docker("run", "-d", "--name", "from-the-cli", "busybox", *POLITE_SLEEPER)
    assert started.returncode == 0, started.stderr
    row = page.locator(f"tr#container-{started.stdout.strip()}")
    expect(row).to_be_visible()
    expect(row).to_contain_text("from-the-cli")
    expect(row.locator("td.state")).to_have_text("running")

    row.get_by_role("button", name="stop", exact=True).click()
    expect(row.locator("td.state")).to_have_text("exited", timeout=30_000)

    row.get_by_role("button", name="remove", exact=True).click()
    expect(row).to_have_count(0)
    assert_not_reloaded(page)
