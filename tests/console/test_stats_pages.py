"""Resource use on the pages: the list's cells, the container page's graph, their websockets.

Personas: an admin, a viewer (no group: read-only, may see), an anonymous visitor.
"""

import re
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.template.loader import render_to_string
from django.utils import timezone

from console import collector, events
from console.asgi import application
from console.collector import Collector, Sample
from console.models import Container
from console.pages.stats import Graph, with_figures
from console.views import PAGE_SIZE, container_row, containers_with_details
from tests.console.conftest import HOST
from tests.console.test_collector import run_busy_container, two_ticks
from tests.helpers.sockets import ORIGIN, connects, session_cookie

MIB = 1024 * 1024


def make_row(name, state="running", host=HOST, age=0):
    created = timezone.now() - timezone.timedelta(seconds=age)
    return Container.objects.create(id=(name.encode().hex() * 64)[:64], name=name, host=host, image_ref="busybox",
                                    state=state, path="sleep", args=["1000"], created=created, started_at=created)


def publish(host, figures: dict[str, tuple[float | None, int, int]]) -> None:
    """One tick of a collector of ``host`` with these figures, through the collector's own publishing."""
    Collector(host, "unused").publish({cid: Sample(time.time(), *values) for cid, values in figures.items()})


async def receive_all(connection, timeout=5) -> list[str]:
    """Every message of the next push (the first waited for, the rest already there)."""
    messages = [await connection.receive_from(timeout=timeout)]
    while not await connection.receive_nothing(timeout=0.1):
        messages.append(await connection.receive_from())
    return messages


def cells(html: str, oob: bool = True) -> dict[str, str]:
    """id -> text of each stats cell (only those swapped out of band, with ``oob``)."""
    swapped = ' hx-swap-oob="true"' if oob else ""
    return {cid: re.sub("<[^>]+>", "", text)
            for cid, text in re.findall(rf'<td id="stats-([0-9a-f]+)" class="stats"[^>]*{swapped}>(.*?)</td>', html)}


# --- the list -------------------------------------------------------------------------------------


def test_the_list_has_a_stats_column_that_connects_its_websocket(client, viewer):
    web = make_row("web")
    client.force_login(viewer)
    page = client.get("/?state=running").content.decode()
    assert '<th id="stats-head" hx-ext="ws" ws-connect="/ws/stats/?state=running">CPU · Memory</th>' in page
    assert cells(page, oob=False) == {web.id: "—"}


def test_a_row_given_its_figures_shows_them_in_its_cell(db, stats_redis):
    web, idle = make_row("web"), make_row("idle", state="exited")
    collector.store({web.id: Sample(time.time(), 12.5, 20 * MIB, 64 * MIB),
                     idle.id: Sample(time.time(), 1.0, MIB, MIB)}, set())  # idle: left over, not running
    rows = with_figures([container_row(c) for c in containers_with_details().order_by("name")])
    html = "".join(render_to_string("_container_row.html", {"row": row, "can_change": False}) for row in rows)
    assert cells(html, oob=False) == {web.id: "12.5% · 20.0 MiB", idle.id: "—"}


def test_the_list_shows_the_figures_without_javascript(client, viewer, stats_redis):
    web = make_row("web")
    collector.store({web.id: Sample(time.time(), 12.5, 20 * MIB, 64 * MIB)}, set())
    client.force_login(viewer)
    assert "12.5%" in client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_list_socket_pushes_the_cells_of_its_rows_each_tick(client, viewer, stats_redis):
    web, db_row, idle = make_row("web"), make_row("db", age=1), make_row("idle", state="exited", age=2)
    elsewhere = make_row("remote", host="other-host", age=3)

    async def scenario(cookie):
        connection = WebsocketCommunicator(application, "/ws/stats/", headers=[ORIGIN, cookie])
        connected, _ = await connection.connect()
        assert connected
        try:
            opened = await receive_all(connection)
            await sync_to_async(publish)(HOST, {web.id: (12.5, 20 * MIB, 64 * MIB), db_row.id: (None, 3 * MIB, MIB)})
            first = await receive_all(connection)
            await sync_to_async(publish)(HOST, {web.id: (12.5, 20 * MIB, 64 * MIB)})  # db stopped
            second = await receive_all(connection)
            await sync_to_async(publish)(HOST, {web.id: (12.5, 20 * MIB, 64 * MIB)})  # nothing changed
            assert await connection.receive_nothing(timeout=0.3)
            await sync_to_async(events.container_changed)(web.id, "paused")  # the list draws its row again
            await sync_to_async(publish)(HOST, {web.id: (12.5, 20 * MIB, 64 * MIB)})
            redrawn = await receive_all(connection)
            return opened, first, second, redrawn
        finally:
            await connection.disconnect()

    opened, first, second, redrawn = async_to_sync(scenario)(session_cookie(client, viewer))
    assert len(opened) == 1 and cells(opened[0]) == {r.id: "—" for r in (web, db_row, idle, elsewhere)}
    assert len(first) == 1 and cells(first[0]) == {web.id: "12.5% · 20.0 MiB", db_row.id: "— · 3.0 MiB"}
    assert cells(second[0]) == {db_row.id: "—"}
    assert cells(redrawn[0]) == {web.id: "12.5% · 20.0 MiB"}


@pytest.mark.django_db(transaction=True)
def test_the_list_socket_sends_only_the_rows_of_its_page(client, admin, stats_redis):
    rows = [make_row(f"c{n}", age=n) for n in range(PAGE_SIZE + 2)]
    newest, second, oldest = rows[0], rows[1], rows[-1]

    async def scenario(cookie, query):
        connection = WebsocketCommunicator(application, f"/ws/stats/?{query}", headers=[ORIGIN, cookie])
        connected, _ = await connection.connect()
        assert connected
        try:
            await receive_all(connection)
            await sync_to_async(publish)(HOST, {newest.id: (1.0, MIB, MIB), second.id: (2.0, MIB, MIB),
                                                oldest.id: (3.0, MIB, MIB)})
            return cells("".join(await receive_all(connection)))
        finally:
            await connection.disconnect()

    cookie = session_cookie(client, admin)
    assert async_to_sync(scenario)(cookie, "page=1") == {newest.id: "1.0% · 1.0 MiB", second.id: "2.0% · 1.0 MiB"}
    assert async_to_sync(scenario)(cookie, "page=2") == {oldest.id: "3.0% · 1.0 MiB"}
    assert async_to_sync(scenario)(cookie, "name=c1") == {second.id: "2.0% · 1.0 MiB"}  # c1, c10..c19


# --- the container page ------------------------------------------------------------------------------


def test_the_container_page_shows_the_graph_as_an_image_and_connects_its_websocket(client, viewer):
    web = make_row("web")
    client.force_login(viewer)
    page = client.get(f"/containers/{web.id}/").content.decode()
    assert f'<section id="stats" hx-ext="ws" ws-connect="/ws/stats/{web.id}/">' in page
    assert f'<img src="/containers/{web.id}/stats.svg"' in page


def test_the_graph_image_shows_a_running_containers_figures(client, viewer, host, busybox, stats_redis):
    row = run_busy_container()
    _, samples = two_ticks(host)
    client.force_login(viewer)
    response = client.get(f"/containers/{row.id}/stats.svg")
    svg = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert f"CPU {samples[row.id].cpu:.1f}%" in svg and "Memory " in svg
    assert len(re.search(r'<polyline class="cpu-line"[^>]* points="([^"]+)"', svg).group(1).split()) == 2


def test_the_graph_image_of_a_stopped_container_says_so(client, viewer, stats_redis):
    idle = make_row("idle", state="exited")
    client.force_login(viewer)
    assert "No figures: not running" in client.get(f"/containers/{idle.id}/stats.svg").content.decode()
    assert client.get(f"/containers/{'ef' * 32}/stats.svg").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_container_socket_pushes_the_history_at_once_then_every_tick(client, admin, predefined_networks, host,
                                                                           busybox, stats_redis):
    row = run_busy_container()
    host_collector, _ = two_ticks(host)

    async def scenario(cookie):
        connection = WebsocketCommunicator(application, f"/ws/stats/{row.id}/", headers=[ORIGIN, cookie])
        connected, _ = await connection.connect()
        assert connected
        try:
            opened = await connection.receive_from(timeout=5)
            await sync_to_async(host_collector.tick)()
            ticked = await connection.receive_from(timeout=5)
            await sync_to_async(publish)("other-host", {})  # another host's tick: not about this one
            assert await connection.receive_nothing(timeout=0.3)
            await sync_to_async(publish)(HOST, {})  # this host's tick without it: it stopped
            stopped = await connection.receive_from(timeout=5)
            return opened, ticked, stopped
        finally:
            await connection.disconnect()

    opened, ticked, stopped = async_to_sync(scenario)(session_cookie(client, admin))
    points = lambda html: len(re.search(r'class="cpu-line"[^>]* points="([^"]+)"', html).group(1).split())  # noqa: E731
    assert opened.startswith('<div id="stats-now" hx-swap-oob="true">')
    assert re.search(r'CPU <strong class="cpu">\d+\.\d%</strong>', opened) and "<svg" in opened
    assert (points(opened), points(ticked)) == (2, 3)
    assert "not running" in stopped and "<polyline" not in stopped


def test_the_graph_draws_the_newest_sample_at_the_right_edge():
    samples = [Sample(float(n), 50.0 * n, n * MIB, 10 * MIB) for n in range(3)]
    svg = Graph(samples, standalone=True).render()
    cpu = re.search(r'class="cpu-line"[^>]* points="([^"]+)"', svg).group(1).split()
    assert [float(p.split(",")[0]) for p in cpu][-1] == Graph.WIDTH - Graph.PAD
    heights = [float(p.split(",")[1]) for p in cpu]
    assert heights[0] > heights[1] > heights[2]  # 0 %, 50 %, 100 %: higher up the SVG
    assert "CPU 100.0%" in svg and "Memory 2.0 MiB of 10.0 MiB" in svg
    assert ">CPU<" in Graph(samples).render() and "100.0%" not in Graph(samples).render()  # inline: the page says it


# --- who may see ----------------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(f"/containers/{'ab' * 32}/stats.svg")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/stats/", f"/ws/stats/{'ab' * 32}/"])
def test_an_anonymous_visitor_gets_no_socket(path):
    assert connects(path) is False
