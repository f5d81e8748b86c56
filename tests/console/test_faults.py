"""Faults survived (issue 9, item 1): SIGKILL the web server, the Docker API, the worker and Redis
in the middle of runs, stops and removes, and check what a user would check after each restart.

    client thread --HTTP--> [daphne | dockerapi] --Celery/Redis--> [worker] --> runc, veths, nft
         ^ one of 50 operations          ^ SIGKILL at a random point of some of them, restarted at once

The operations and the kill points come from one seed (printed; ``BERTH_FAULT_SEED`` replays it).
After each kill: the process is started again, the operation's client gets its answer (or its
connection error), and then, within 5 s of the restart, rows and kernel agree
(``tests.helpers.agreement``), every Operation row is finished (done or failed), and the target is
whole: running, stopped, created, or gone, never half-made. Two containers nobody touches keep
running with the same PID 1 through it all.

A worker that exits or hangs by itself is started again, as its supervisor would: kombu 5.7
crashes the worker when Redis goes away while it holds unacked tasks (``Servers.supervise``);
each such restart is in the printed report. ``BERTH_FAULTS=worker,redis`` keeps only those kinds
of kill; ``BERTH_FAULT_LOGS=DIR`` keeps the processes' logs there to read after a failure.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import shutil
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from console import services
from console.models import Container, Operation
from runtime import ContainerSpec
from runtime.network import PortSpec, links, nft
from runtime.network.spec import veth_name
from tests.browser.web import ADMIN, create_admin, start_docker_api, start_web_server, stop_server
from tests.conftest import unique
from tests.helpers.agreement import disagreements, wait_for_agreement

OPERATIONS = 50
FAULTS = ("web", "api", "worker", "redis") * 2
AGREEMENT = 5.0        # seconds after a restart by which rows and kernel must agree
CLIENT_WAIT = 40.0     # seconds a client may wait for its answer (a generous bound, never a timing claim)
# PID 1 of a pid namespace ignores SIGTERM unless it handles it: this one does, so stops are quick.
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
PUBLISHED = {"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": ""}]}}}


# --- clients: the Docker API over its socket, the pages through a logged-in session ------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class ApiClient:
    def __init__(self, path):
        self.path = str(path)

    def request(self, method: str, url: str, body: dict | None = None) -> tuple[int, dict | str]:
        connection = _UnixConnection(self.path, CLIENT_WAIT)
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, url, body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            try:
                return response.status, json.loads(text) if text else ""
            except ValueError:
                return response.status, text
        finally:
            connection.close()

    @staticmethod
    def run_in_process(name: str) -> str:
        """The same container through the services in this process; its id."""
        body = {"Image": "busybox", "Cmd": COMMAND, **json.loads(json.dumps(PUBLISHED))}
        container = services.create_container(body, name=name)
        services.start_container(container.id)
        return container.id

    def run(self, name: str) -> str:
        status, answer = self.request("POST", f"/containers/create?name={name}",
                                      {"Image": "busybox", "Cmd": COMMAND, **PUBLISHED})
        assert status == 201, (status, answer)
        status, answer = self.request("POST", f"/containers/{answer['Id']}/start")
        assert status in (204, 304), (status, answer)
        return "done"

    def stop(self, reference: str) -> str:
        status, answer = self.request("POST", f"/containers/{reference}/stop?t=1")
        assert status in (204, 304), (status, answer)
        return "done"

    def remove(self, reference: str) -> str:
        status, answer = self.request("DELETE", f"/containers/{reference}?force=1")
        assert status == 204, (status, answer)
        return "done"


class WebClient:
    """The run page and the action forms, as a browser without JavaScript posts them."""

    def __init__(self, url: str, password: str):
        self.url, self.password = url, password
        self.session = None

    def log_in(self) -> None:
        session = requests.Session()
        session.get(f"{self.url}/login/", timeout=CLIENT_WAIT)
        answer = session.post(f"{self.url}/login/", timeout=CLIENT_WAIT, allow_redirects=False,
                              data={"username": ADMIN, "password": self.password,
                                    "csrfmiddlewaretoken": session.cookies["csrftoken"]})
        assert answer.status_code == 302, answer.text[:500]
        self.session = session

    def _post(self, path: str, data: dict) -> requests.Response:
        data = {**data, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]}
        return self.session.post(f"{self.url}{path}", data=data, timeout=CLIENT_WAIT, allow_redirects=False,
                                 headers={"Referer": f"{self.url}/"})

    def run(self, name: str) -> str:
        answer = self._post("/run/", {
            "image": "busybox", "name": name, "command": shlex.join(COMMAND), "restart": "no", "network": "bridge",
            "ports-TOTAL_FORMS": "1", "ports-INITIAL_FORMS": "0", "ports-MIN_NUM_FORMS": "0",
            "ports-MAX_NUM_FORMS": "1000", "ports-0-container_port": "80", "ports-0-protocol": "tcp"})
        assert answer.status_code == 302, answer.text[:2000]
        return "done"

    def _action(self, container_id: str, action: str, **data) -> str:
        answer = self._post(f"/containers/{container_id}/{action}/", data)
        assert answer.status_code in (200, 302), answer.text[:2000]
        return "done"

    def stop(self, container_id: str) -> str:
        return self._action(container_id, "stop")

    def remove(self, container_id: str) -> str:
        return self._action(container_id, "remove", force="on")


# --- the processes that get killed ------------------------------------------------------------------


class Servers:
    """The web server and the Docker API of the stack, as subprocesses; each can be SIGKILLed and restarted."""

    def __init__(self, stack, socket_path):
        self.stack, self.socket_path = stack, socket_path
        self.password = create_admin(stack)
        self.web = self.api = None
        self.url = ""

    def start_web(self) -> None:
        self.web, self.url = start_web_server(self.stack)

    def start_api(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        self.api = start_docker_api(self.stack, self.socket_path)

    def kill(self, what: str) -> None:
        if what == "web":
            self.web.kill()
            self.web.wait(10)
        elif what == "api":
            self.api.kill()
            self.api.wait(10)
        elif what == "worker":
            self.stack.kill_worker()
        else:
            self.stack.kill_redis()

    def restart(self, what: str) -> None:
        {"web": self.start_web, "api": self.start_api, "worker": self.stack.start_worker,
         "redis": self.stack.start_redis}[what]()

    def supervise(self, patience: float = 0.0) -> str:
        """A worker that exited, or answers no ping for ``patience`` seconds, started again, as a
        supervisor with a watchdog would (systemd's Restart= and WatchdogSec=): kombu 5.7 crashes
        the worker when Redis goes away while it holds unacked tasks, and its shutdown may hang."""
        deadline = time.monotonic() + patience
        while not self.stack.worker_answers():
            if time.monotonic() > deadline:
                self.stack.kill_worker()
                self.stack.start_worker()
                return "the worker had exited or hung by itself: restarted"
        return ""

    def stop(self) -> None:
        for process in (self.web, self.api):
            if process is not None:
                stop_server(process)


@pytest.fixture
def servers(live, tmp_path):
    running = Servers(live, tmp_path / "api.sock")
    try:
        running.start_web()
        running.start_api()
        yield running
    finally:
        running.stop()
        if os.environ.get("BERTH_FAULT_LOGS"):  # where to keep the processes' logs, to read after a failure
            shutil.copytree(live.logs, os.environ["BERTH_FAULT_LOGS"], dirs_exist_ok=True)


# --- one operation, perhaps with a kill in its middle ---------------------------------------------------


@dataclass
class Outcome:
    number: int
    action: str
    name: str
    fault: str = ""
    answer: str = ""          # what the client heard: done, or the error
    state: str = ""           # where the container ended: running, exited, created, gone
    operations: list[str] = field(default_factory=list)   # the Operation rows it made: action state
    agreed_after: float = 0.0  # seconds from the restart to agreement
    also: str = ""             # what else had to be restarted


def _in_thread(call) -> tuple[threading.Thread, list]:
    heard: list = []

    def run():
        try:
            heard.append(call())
        except BaseException as error:  # the client's view: a connection reset, a 5xx, an assertion
            heard.append(f"{type(error).__name__}: {str(error)[:160]}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, heard


def _plan(rng: random.Random) -> dict[int, str]:
    """Which operations get a kill, and of what (``BERTH_FAULTS=redis,worker`` keeps only those kinds)."""
    kinds = os.environ.get("BERTH_FAULTS", "").split(",")
    faults = [f for f in FAULTS if f in kinds] if kinds != [""] else list(FAULTS)
    numbers = rng.sample(range(2, OPERATIONS), len(faults))
    return dict(zip(sorted(numbers), rng.sample(faults, len(faults))))


def _choose(rng: random.Random, pool: list[str]) -> tuple[str, str]:
    if len(pool) < 3:
        return "run", unique("flt-")
    action = rng.choices(["run", "stop", "remove"], weights=[2, 2, 2])[0]
    return (action, unique("flt-")) if action == "run" else (action, rng.choice(pool))


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _state_of(name: str) -> str:
    row = Container.objects.filter(name=name).first()
    return row.state if row else "gone"


@pytest.mark.live
def test_the_agreement_check_sees_a_lost_veth_and_an_unowned_container_until_the_reconcile(live):
    row = Container.objects.get(pk=ApiClient.run_in_process(unique("flt-probe-")))
    endpoint = row.endpoints.get()
    links.delete_link(veth_name(endpoint.endpoint_id))
    stray = live.runtime().create(ContainerSpec(image="busybox", cmd=["true"]), container_id=secrets.token_hex(32))
    found = disagreements(live)
    assert any(veth_name(endpoint.endpoint_id) in line for line in found), found
    assert any(stray.id[:12] in line and "has no row" in line for line in found), found
    live.runtime().remove(stray.id, force=True)
    services.reconcile_network()
    assert wait_for_agreement(live, AGREEMENT) >= 0


@pytest.mark.live
def test_the_reconcile_collects_a_port_a_start_killed_half_way_published_and_never_recorded(live):
    row = Container.objects.get(pk=ApiClient.run_in_process(unique("flt-half-")))
    address = row.endpoints.get().ip_address
    # What a worker killed between the port map's transaction and the registry's record leaves.
    nft.apply(nft.add_ports(live.nft_table, row.id, [PortSpec("tcp", "0.0.0.0", _unused_port(), address, 80)]))
    assert any("is none of its container's port mappings" in line for line in disagreements(live))
    services.reconcile_network()
    services.stop_container(row.id, timeout=0)
    assert wait_for_agreement(live, AGREEMENT) >= 0


@pytest.mark.live
def test_berth_survives_sigkills_of_its_processes_in_the_middle_of_operations(live, servers):
    seed = int(os.environ.get("BERTH_FAULT_SEED") or random.randrange(1 << 32))
    print(f"\nfault seed: {seed} (BERTH_FAULT_SEED={seed} replays it)")
    rng = random.Random(seed)
    api = ApiClient(servers.socket_path)
    web = WebClient(servers.url, servers.password)
    web.log_in()

    steady = [unique("flt-steady-") for _ in range(2)]
    for name in steady:
        api.run(name)
    steady_pids = {name: Container.objects.get(name=name).pid for name in steady}

    faults, pool, outcomes = _plan(rng), [], []
    try:
        for number in range(OPERATIONS):
            action, name = _choose(rng, pool)
            fault = faults.get(number, "")
            client = web if fault == "web" or (not fault and rng.random() < 0.3) else api
            outcome = _operate(live, servers, rng, number, client, action, name, fault)
            outcomes.append(outcome)
            if outcome.state == "gone":
                pool = [n for n in pool if n != name]
            elif name not in pool:
                pool.append(name)
            vanished = [n for n in pool if not Container.objects.filter(name=n).exists()]
            assert not vanished, f"containers vanished after their operations ended: {vanished}"
            if fault == "web":
                web = WebClient(servers.url, servers.password)
                web.log_in()
    finally:
        _report(outcomes)
    assert wait_for_agreement(live, AGREEMENT) >= 0
    for name in steady:
        row = Container.objects.get(name=name)
        assert (row.state, row.pid) == ("running", steady_pids[name]), f"{name} did not keep running"
        assert live.runtime().get(row.id).state.pid == steady_pids[name]
    unfinished = Operation.objects.exclude(state__in=(Operation.STATE_DONE, Operation.STATE_FAILED))
    assert not unfinished.exists(), [str(o) for o in unfinished]


def _operate(stack, servers, rng, number, client, action, name, fault) -> Outcome:
    outcome = Outcome(number, action, name, fault)
    outcome.also = servers.supervise() if not stack.worker_alive else ""
    last = Operation.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    # Stop and remove by id: the client thread has no database connection of the stack's.
    reference = name if action == "run" else Container.objects.get(name=name).id
    thread, heard = _in_thread(lambda: getattr(client, action)(reference))
    if fault:
        time.sleep(rng.uniform(0.0, 0.12))  # most operations take 0.1-0.3 s
        servers.kill(fault)
        servers.restart(fault)
        if fault == "redis":
            outcome.also = servers.supervise(patience=3.0)
        restarted = time.monotonic()  # every process is back: the reconcile's 5 s start now
    thread.join(CLIENT_WAIT + 5)
    assert not thread.is_alive(), f"operation {number} ({action} {name}) got no answer"
    outcome.answer = heard[0] if heard else "nothing"
    if fault:
        left = max(AGREEMENT - (time.monotonic() - restarted), 1.0)
        try:
            wait_for_agreement(stack, left)
        except AssertionError as error:
            raise AssertionError(f"operation {number} ({action} through {type(client).__name__}, {fault} killed; "
                                 f"the client heard {outcome.answer!r}; {outcome.also}): {error}") from None
        outcome.agreed_after = time.monotonic() - restarted
        _wait_until_finished(last, restarted + AGREEMENT)
    outcome.state = _state_of(name)
    outcome.operations = [f"{o.action} {o.state}" + (f" ({o.error[:60]})" if o.error else "")
                          for o in Operation.objects.filter(pk__gt=last).order_by("pk")]
    if fault:
        unfinished = [o for o in outcome.operations if " pending" in o or " running" in o]
        assert not unfinished, f"operation {number}: {unfinished} after {fault} was killed"
    return outcome


def _wait_until_finished(last_pk: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not Operation.objects.filter(pk__gt=last_pk, state__in=(Operation.STATE_PENDING,
                                                                    Operation.STATE_RUNNING)).exists():
            return
        time.sleep(0.1)


def _report(outcomes: list[Outcome]) -> None:
    print("faults:")
    for o in outcomes:
        if o.fault:
            print(f"  #{o.number:2} {o.fault:6} during {o.action:6} -> client: {o.answer[:70]!s:70} | "
                  f"container {o.state:8} | {'; '.join(o.operations)} | agreed {o.agreed_after:.2f} s after restart"
                  + (f" | {o.also}" if o.also else ""))
    for o in outcomes:
        if not o.fault and o.answer != "done":
            print(f"  #{o.number:2} (no kill) {o.action:6} -> client: {o.answer[:100]} | container {o.state} | "
                  f"{'; '.join(o.operations)}" + (f" | {o.also}" if o.also else ""))
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        counts[(o.action, o.state)] = counts.get((o.action, o.state), 0) + 1
    print("all operations (action, where the container ended):", dict(sorted(counts.items())))
