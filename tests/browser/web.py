"""The pieces of a browser session on a live stack, for the tests' fixtures and bench/bench_browser_logs.py.

    [Chromium] --http/ws 127.0.0.1--> [daphne: console.asgi] --Celery/Redis--> [worker: runc]
    [docker CLI] --unix socket--> [manage.py dockerapi] ----------------^

The web server and the Docker API are subprocesses with the stack's ``env`` (Django's
connections are per thread, the worker is another process), ended by their PID. Chromium is Debian's
(``scripts/setup --deps`` installs it), never a download; it is told to resolve no host
and to reach for nothing in the background, so only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import pwd
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import PROJECT, _end, _free_port, _spawn, _tail

CHROMIUM = Path("/usr/bin/chromium")
DOCKER = Path("/usr/local/bin/docker")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium calls home at start; this machine's network refuses it, and it must not try.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
MISSING_CHROMIUM = (f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "(scripts/setup --deps installs it; never a browser download)")
ADMIN = "admin"
# Counts the page's open websockets (htmx's and any other script's), so a test can wait until
# the page listens before it changes something.
PAGE_PROBE = """
(() => {
  const Native = window.WebSocket;
  window.__berthOpenSockets = 0;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => { window.__berthOpenSockets += 1; });
      this.addEventListener("close", () => { window.__berthOpenSockets -= 1; });
    }
  };
})();
"""


def create_admin(stack) -> str:
    """The admin user in the stack's database, with a new password (returned)."""
    password = secrets.token_urlsafe(12)
    subprocess.run([sys.executable, str(PROJECT / "manage.py"), "createadmin", "--username", ADMIN],
                   env={**stack.env, "BERTH_ADMIN_PASSWORD": password}, cwd=PROJECT, check=True,
                   capture_output=True, text=True)
    return password


def as_user(user: str) -> list[str]:
    """The command prefix scripts/start runs the web with: ``user``, its groups, no capabilities, none to gain."""
    return ["setpriv", "--reuid", user, "--regid", str(pwd.getpwnam(user).pw_gid), "--init-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def start_web_server(stack, docker_socket: Path | None = None, user: str | None = None,
                     log_name: str = "web.log") -> tuple[subprocess.Popen, str]:
    """daphne serving console.asgi (pages, websockets, /static/) on a free port: the process and its URL.

    Its shell asks the Docker API on ``docker_socket`` for the exec; ``user``: it runs as that user, as
    scripts/start runs it (the process is then setpriv's, which daphne replaces: the same PID).
    """
    port = _free_port()
    log = stack.logs / log_name
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"]
    env = dict(stack.env)
    if docker_socket is not None:
        env["BERTH_DOCKER_SOCKET"] = str(docker_socket)
    process = _spawn(as_user(user) + command if user else command, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_page(f"{url}/login/", process, log)
    except BaseException:
        stop_server(process)
        raise
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    _end(process, timeout=10)


def _wait_for_page(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daphne did not serve {url}:\n{_tail(log)}")
        time.sleep(0.1)


def chromium_options() -> dict:
    return {"executable_path": str(CHROMIUM), "headless": True, "args": CHROMIUM_ARGS}


def start_docker_api(stack, path: Path) -> subprocess.Popen:
    """``manage.py dockerapi`` on the unix socket ``path`` (one no other server uses)."""
    from console.dockerapi.server import answers

    log = stack.logs / f"{path.stem}.log"
    process = _spawn([sys.executable, str(PROJECT / "manage.py"), "dockerapi", "--socket", str(path)], stack.env, log)
    deadline = time.monotonic() + 30
    while not answers(path):
        if process.poll() is not None or time.monotonic() > deadline:
            _end(process, timeout=10)
            raise RuntimeError(f"the Docker API did not listen on {path}:\n{_tail(log)}")
        time.sleep(0.05)
    return process


@contextmanager
def serving_docker_api(stack, path: Path) -> Iterator[Path]:
    """The Docker API on ``path`` while the block runs; ended by its PID after it."""
    process = start_docker_api(stack, path)
    try:
        yield path
    finally:
        stop_server(process)


def docker_cli(socket: Path, home: Path):
    """The real docker CLI on the Docker API at ``socket``, its home and config under ``home``.

    ``run("ps", "-a")`` -> CompletedProcess (text); ``run.env`` is the environment it runs in.
    """
    config = home / "docker-config"
    config.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "DOCKER_CONFIG": str(config),
           "DOCKER_HOST": f"unix://{socket}"}

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(DOCKER), *args], env=env, input=input, capture_output=True, text=True,
                              timeout=timeout)

    run.env = env
    return run


def launch_chromium(playwright):
    return playwright.chromium.launch(**chromium_options())


def log_in(page, username: str, password: str) -> None:
    """Through the login form, as a person would."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def wait_until_listening(page, sockets: int = 1) -> None:
    """Until the page has that many websockets open (so what happens next is pushed to it)."""
    page.wait_for_function(f"window.__berthOpenSockets >= {sockets}")


def mark_document(page) -> None:
    """A mark that a reload would wipe."""
    page.evaluate("window.__berthNotReloaded = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__berthNotReloaded === true"), "the page was reloaded"
