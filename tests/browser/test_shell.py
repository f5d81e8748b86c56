"""The shell tab in a real browser: a terminal on an exec in the running container, gone with the page."""

import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.live

ROW_READS_42 = """
() => [...document.querySelectorAll(".xterm-rows > div")].some(row => row.textContent.trim() === "42")
"""


@pytest.fixture
def sleeper(docker) -> str:
    started = docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def open_shell(page, container_id: str) -> None:
    page.goto(f"/containers/{container_id}/")
    page.locator("#shell-open").click()
    # xterm.js draws only while the terminal is on screen; it opens below the button, so look at it.
    page.locator("#terminal").scroll_into_view_if_needed()
    # busybox sh's prompt: the shell runs and its output reaches the page.
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("#", timeout=15_000)
    page.locator("#terminal").click()


def processes_in(docker, container_id: str) -> list[str]:
    """The commands running in the container (busybox ps: PID USER [TIME] COMMAND), ps itself left out."""
    listing = docker("exec", container_id, "ps")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    columns = len(header.split())
    commands = [row.split(None, columns - 1)[-1] for row in rows]
    return [command for command in commands if command != "ps"]


def wait_for_processes(docker, container_id: str, expected: list[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (found := processes_in(docker, container_id)) != expected:
        assert time.monotonic() < deadline, f"still running in the container: {found}"
        time.sleep(0.2)


def test_the_shell_tab_runs_a_command_and_closing_the_page_ends_it(logged_in_page, docker, sleeper):
    page = logged_in_page
    open_shell(page, sleeper)
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")
    page.wait_for_function(ROW_READS_42)
    assert len(processes_in(docker, sleeper)) == 2  # sleep and the shell

    page.close()
    wait_for_processes(docker, sleeper, ["sleep 300"])


def test_the_shell_tab_says_ended_when_the_shell_exits(logged_in_page, docker, sleeper):
    page = logged_in_page
    open_shell(page, sleeper)
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    expect(page.locator("#shell-status")).to_contain_text("ended")
    wait_for_processes(docker, sleeper, ["sleep 300"])
