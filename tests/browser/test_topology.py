"""The topology page in a real browser: the drawing follows containers started elsewhere, its nodes open pages."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_run_form import open_run_form
from tests.browser.web import assert_not_reloaded, mark_document, wait_until_listening

pytestmark = pytest.mark.live


def test_a_container_started_from_another_tab_appears_in_the_drawing_without_a_reload(logged_in_page):
    page = logged_in_page
    page.get_by_role("link", name="Topology").click()
    expect(page.get_by_role("heading", name="Network topology")).to_be_visible()
    # the kernel check (asked for at load) is done, so its answer cannot replace the drawing pushed later
    expect(page.locator("#topology-drift")).to_contain_text(re.compile("no drift|differs"), timeout=30_000)
    wait_until_listening(page)
    mark_document(page)

    other_tab = page.context.new_page()  # the admin runs a container from another tab
    open_run_form(other_tab)
    other_tab.fill("#run-form [name=name]", "topology-new")
    other_tab.fill("#run-form [name=command]", "sleep 1000")
    other_tab.fill("#run-form [name='ports-0-container_port']", "8080")
    other_tab.get_by_role("button", name="Run", exact=True).click()
    other_tab.wait_for_url(re.compile(r"/containers/[0-9a-f]{64}/$"))
    container_id = other_tab.url.rstrip("/").rsplit("/", 1)[1]
    short_id = container_id[:12]
    node = page.locator(f"#topology-svg #topo-container-{short_id}")
    expect(node).to_be_visible()
    expect(node).to_contain_text("topology-new")
    row = page.locator(f"#topology-container-{short_id}")  # the table says it too
    expect(row).to_contain_text("running")
    expect(row.locator(".port")).to_have_text(re.compile(r"^0\.0\.0\.0:\d+ → 8080/tcp$"))
    assert_not_reloaded(page)

    node.click()
    expect(page).to_have_url(f"/containers/{container_id}/")
