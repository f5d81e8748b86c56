"""The web process as its own unprivileged user (scripts/web-user, scripts/start), on a live stack laid out as
scripts/setup leaves it; only the worker and the Docker API run as root.

    [Chromium] --http/ws--> [daphne as berth-web, no capabilities] --Celery/Redis--> [worker: root, runc]
                              |-- reads  <root>/container-logs/<id>/ctr.log (group berth, 0640)
                              |-- writes <root>/db/berth.sqlite3            (group berth, 0660)
                              '-- shell: docker.sock (group berth) --> [Docker API: root] --runc exec--> /bin/sh

The stack is this module's own (its database in ``db/``, as the set-up makes it), so the session's stack
keeps its layout. Everything it made goes with it: containers, bridges, cgroups, the state root.
"""

from __future__ import annotations

import grp
import io
import os
import pwd
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.web import (ADMIN, CHROMIUM, DOCKER, MISSING_CHROMIUM, PAGE_PROBE, as_user, create_admin,
                               docker_cli, launch_chromium, log_in, start_docker_api, start_web_server, stop_server)
from tests.conftest import unique
from tests.live import PROJECT, LiveStack
from tests.console.test_shell import runc_execs

WEB_USER = "berth-web"
GROUP = "berth"
ROW_READS_42 = """
() => [...document.querySelectorAll(".xterm-rows > div")].some(row => row.textContent.trim() === "42")
"""

pytestmark = [pytest.mark.live, pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")]


class SetUpStack(LiveStack):
    """A live stack whose database is in ``db/``, where scripts/setup puts it (the web's group may write there)."""

    def __init__(self):
        super().__init__()
        self.database = self.root / "db" / "berth.sqlite3"

    def start(self) -> "SetUpStack":
        self.database.parent.mkdir(parents=True)
        return super().start()


@dataclass
class Web:
    stack: SetUpStack
    process: subprocess.Popen
    url: str
    password: str
    docker: object  # docker_cli on the stack's API


def grant_web_user(stack: SetUpStack) -> None:
    """What scripts/setup does for the web's user: the account, and its share of the state root."""
    subprocess.run([str(PROJECT / "scripts" / "web-user")], env=stack.env, check=True, capture_output=True,
                   timeout=60)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM)
    if not DOCKER.exists():
        pytest.fail(f"the docker CLI is missing at {DOCKER}")
    stack = SetUpStack()
    api = server = None
    try:
        stack.start()
        stack.env["BERTH_UPLOAD_DIR"] = str(stack.root / "uploads")  # as scripts/env.sh sets it
        grant_web_user(stack)
        socket_path = stack.root / "docker.sock"
        api = start_docker_api(stack, socket_path)
        os.chown(socket_path, 0, grp.getgrnam(GROUP).gr_gid)  # as scripts/start gives it to the group
        password = create_admin(stack)
        server, url = start_web_server(stack, docker_socket=socket_path, user=WEB_USER,
                                       log_name="web-unprivileged.log")
        yield Web(stack, server, url, password, docker_cli(socket_path, tmp_path_factory.mktemp("docker-home")))
    finally:
        if server is not None:
            stop_server(server)
        if api is not None:
            stop_server(api)
        stack.stop()


@pytest.fixture
def page(web):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(base_url=web.url)
            context.add_init_script(PAGE_PROBE)
            context.set_default_timeout(15_000)
            page = context.new_page()
            log_in(page, ADMIN, web.password)
            yield page
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def container(web):
    """Running busybox whose PID 1 prints a line at once, and another once /tmp/go exists; removed after."""
    name = unique("unpriv-")
    script = "echo first-line-of-pid-1; until [ -e /tmp/go ]; do sleep 0.1; done; echo $((6*7))-said-pid-1; sleep 300"
    started = web.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip(), name
    finally:
        web.docker("rm", "-f", name)


def proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())


def as_web_user(code: str) -> str:
    """What a Python snippet prints when run with the web process's credentials (user, groups, no capabilities)."""
    done = subprocess.run(as_user(WEB_USER) + [sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


READ = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        print(path, "read")
    except OSError as error:
        print(path, type(error).__name__)
"""


def reads(paths: list[Path]) -> dict[str, str]:
    """For each path: "read" or the error the web's user gets opening it."""
    code = READ.replace("sys.argv[1:]", repr([str(p) for p in paths]))
    return dict(line.rsplit(" ", 1) for line in as_web_user(code).splitlines())


# --- the process --------------------------------------------------------------------------------


def test_the_web_process_is_berth_web_with_no_capabilities(web):
    account = pwd.getpwnam(WEB_USER)
    status = proc_status(web.process.pid)
    assert status["Uid"].split() == [str(account.pw_uid)] * 4  # real, effective, saved, filesystem
    assert status["Gid"].split() == [str(grp.getgrnam(GROUP).gr_gid)] * 4
    for capabilities in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, capabilities
    assert status["NoNewPrivs"].strip() == "1"
    assert "daphne" in Path(f"/proc/{web.process.pid}/cmdline").read_bytes().decode()


# --- what a user does -----------------------------------------------------------------------------


def test_a_user_signs_in_and_sees_the_container_listed(web, page, container):
    _, name = container
    page.goto("/")
    assert page.locator("table", has_text=name).count() == 1


def test_the_log_viewer_shows_what_pid_1_prints_live(web, page, container):
    container_id, _ = container
    page.goto(f"/containers/{container_id}/")
    lines = page.locator("#log-lines")
    lines.get_by_text("first-line-of-pid-1").wait_for()
    page.wait_for_function("window.__berthOpenSockets >= 2")  # the log's socket among them
    assert web.docker("exec", container_id, "touch", "/tmp/go").returncode == 0
    lines.get_by_text("42-said-pid-1").wait_for()  # the page was not reloaded: it came over the websocket


def test_the_shell_runs_a_command_and_closing_the_page_ends_its_exec(web, page, container):
    container_id, _ = container
    page.goto(f"/containers/{container_id}/")
    page.locator("#shell-open").click()
    page.locator("#terminal").scroll_into_view_if_needed()
    page.locator("#terminal .xterm-rows").get_by_text("#").first.wait_for()
    page.locator("#terminal").click()
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")
    page.wait_for_function(ROW_READS_42)
    assert len(runc_execs(container_id)) == 1

    page.close()
    deadline = time.monotonic() + 15
    while runc_execs(container_id):
        assert time.monotonic() < deadline, "the shell's exec is still running after the page closed"
        time.sleep(0.2)
    assert web.docker("inspect", "-f", "{{.State.Running}}", container_id).stdout.strip() == "true"


def test_an_image_imported_through_the_page_reaches_the_worker(web, page, tmp_path):
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        member = tarfile.TarInfo("hello.txt")
        member.size = 6
        tar.addfile(member, io.BytesIO(b"hello\n"))
    reference = f"{unique('unpriv-import-')}:1"
    page.goto("/images/")
    page.set_input_files("#id_import-archive", str(archive))
    page.fill("#id_import-reference", reference)
    page.locator("#image-import-form button[type=submit]").click()
    page.get_by_text(reference.split(":")[0]).first.wait_for()
    listed = web.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert reference in listed.stdout.split(), listed.stdout
    assert not any((web.stack.root / "uploads").iterdir()), "the upload is gone once the request ended"
    web.docker("rmi", reference)


# --- what the web's user may not do ---------------------------------------------------------------


def test_the_web_user_reads_the_log_and_nothing_else_of_the_state_root(web, container):
    container_id, _ = container
    root = web.stack.root
    directory = root / "containers" / container_id
    allowed = [root / "container-logs" / container_id / "ctr.log", web.stack.database]
    refused = [directory / "config.json", directory / "container.json", directory / "rootfs" / "etc" / "passwd",
               root / "names" / "x", root / "exits" / container_id]
    found = reads(allowed + refused)
    assert {str(path): "read" for path in allowed}.items() <= found.items()
    assert all(found[str(path)] == "PermissionError" for path in refused), found
    listings = as_web_user(
        "import os\n"
        f"for d in {[str(root), str(root / 'containers'), str(root / 'images'), str(root / 'container-logs')]!r}:\n"
        "    try:\n        os.listdir(d); print('listed')\n    except PermissionError:\n        print('refused')")
    assert listings.split() == ["refused"] * 4


def test_the_web_user_cannot_write_a_log_or_signal_the_containers_processes(web, container):
    container_id, _ = container
    log = web.stack.root / "container-logs" / container_id / "ctr.log"
    pid = int(web.docker("inspect", "-f", "{{.State.Pid}}", container_id).stdout)
    outcome = as_web_user(
        "import os, signal\n"
        "try:\n"
        f"    open({str(log)!r}, 'ab'); print('wrote')\n"
        "except PermissionError:\n    print('no-write')\n"
        "try:\n"
        f"    os.kill({pid}, 0); print('signalled')\n"
        "except PermissionError:\n    print('no-signal')")
    assert outcome.split() == ["no-write", "no-signal"]
