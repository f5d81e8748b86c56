"""The run form in a real browser: a container run from it, its log followed live, stopped, removed;
and a validation error shown beside its field."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.web import assert_not_reloaded, mark_document

pytestmark = pytest.mark.live

TICKER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"
# The highest N of the lines reading "line N" as shown (innerText: what the reader sees, timestamps off).
HIGHEST_LINE = """
() => Math.max(-1, ...[...document.querySelectorAll("#log-lines .log-line")]
  .map(line => /^line (\\d+)$/.exec(line.innerText.trim())).filter(Boolean).map(found => Number(found[1])))
"""


def open_run_form(page) -> None:
    page.goto("/run/")
    form = page.locator("form#run-form")
    expect(form).to_be_visible()
    busybox = form.locator("select[name=image] option", has_text="busybox").first
    form.locator("select[name=image]").select_option(busybox.get_attribute("value"))


def highest_line(page) -> int:
    return page.evaluate(HIGHEST_LINE)


def wait_for_line(page, number: int) -> None:
    page.wait_for_function(f"({HIGHEST_LINE})() >= {number}", timeout=10_000)


def test_a_container_run_from_the_form_shows_its_lines_live_then_stops_and_goes(logged_in_page, web_server):
    page = logged_in_page
    open_run_form(page)
    page.fill("#run-form [name=name]", "ticker")
    page.fill("#run-form [name=command]", f"sh -c '{TICKER}'")
    page.get_by_role("button", name="Run", exact=True).click()

    page.wait_for_url(re.compile(r"/containers/[0-9a-f]{64}/$"))
    container_id = page.url.rstrip("/").rsplit("/", 1)[1]
    mark_document(page)
    wait_for_line(page, 3)
    seen = highest_line(page)
    # Ten lines a second: a dozen more within a few seconds, pushed to the page as they are written.
    wait_for_line(page, seen + 12)

    state = page.locator(f"#container-state-{container_id}")
    state.get_by_role("button", name="stop", exact=True).click()
    # sh as PID 1 ignores SIGTERM: the stop ends with SIGKILL after its timeout.
    expect(state).to_contain_text("exited", timeout=30_000)
    expect(page.locator("#log-status")).to_contain_text(re.compile(r"exited with code \d+"))
    stopped_at = highest_line(page)
    page.wait_for_timeout(500)
    assert highest_line(page) == stopped_at, "lines still arrive after the container exited"
    assert_not_reloaded(page)

    state.get_by_role("button", name="remove", exact=True).click()
    expect(page).to_have_url(f"{web_server}/")  # the removed container's page sends the reader to the list
    expect(page.locator("table#containers")).to_be_visible()
    expect(page.locator(f"tr#container-{container_id}")).to_have_count(0)


@pytest.mark.parametrize("field, value", [("memory", "lots"), ("ports-0-container_port", "99999")])
def test_a_wrong_value_is_refused_with_its_error_beside_the_field(logged_in_page, field, value):
    page = logged_in_page
    open_run_form(page)
    page.fill(f"#run-form [name='{field}']", value)
    page.get_by_role("button", name="Run", exact=True).click()

    errors = page.locator(f"#field-{field} .errorlist")
    expect(errors).to_be_visible()
    expect(errors).not_to_have_text("")
    expect(page.locator(f"#run-form [name='{field}']")).to_have_value(value)
    expect(page).to_have_url(re.compile(r"/run/$"))
