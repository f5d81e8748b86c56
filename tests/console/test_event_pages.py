"""The events page: the Operation rows, who/what/when/outcome, filters, keyset pages; read-only."""

import re
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console import services
from console.models import Operation
from console.roles import PermissionDenied


def event_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="event-(\d+)"', page)]


def row_of(page: str, operation: Operation) -> str:
    row = page[page.index(f'id="event-{operation.pk}"'):]
    return row[:row.index("</tr>")]


def record(action="container.start", state="done", **fields) -> Operation:
    return Operation.objects.create(action=action, state=state, **fields)


def at(operation: Operation, when: datetime) -> Operation:
    Operation.objects.filter(pk=operation.pk).update(created=when)
    return operation


# --- what a row shows ----------------------------------------------------------------------------


def test_real_actions_appear_with_who_what_target_and_outcome(signed_in, admin, viewer, busybox):
    container = services.create_container({"Image": "busybox"}, name="audited", user=admin, source="web")
    with pytest.raises(PermissionDenied):
        services.start_container(container.id, user=viewer, source="web")
    services.remove_container(container.id, source="api")
    page = signed_in.get("/events/").content.decode()
    created = Operation.objects.get(action="container.create")
    refused = Operation.objects.get(action="container.start")
    removed = Operation.objects.get(action="container.remove")
    assert event_ids(page)[:3] == [removed.pk, refused.pk, created.pk]  # newest first
    row = row_of(page, created)
    assert '<td class="who">alice</td>' in row and '<td class="source">web</td>' in row and "audited" in row
    assert '<td class="state">done</td>' in row
    row = row_of(page, refused)
    assert '<td class="who">vic</td>' in row and '<td class="state">failed</td>' in row
    assert "vic is a viewer and cannot container.start" in row
    assert '<td class="who">docker API</td>' in row_of(page, removed)


def test_a_target_that_still_exists_is_linked_and_a_gone_one_is_not(signed_in, busybox):
    kept = services.create_container({"Image": "busybox"}, name="kept")
    gone = services.create_container({"Image": "busybox"}, name="gone")
    services.remove_container(gone.id)
    page = signed_in.get("/events/").content.decode()
    kept_row = row_of(page, Operation.objects.get(action="container.create", target_id=kept.id))
    gone_row = row_of(page, Operation.objects.get(action="container.create", target_id=gone.id))
    assert f'<a href="/containers/{kept.id}/">kept</a>' in kept_row
    assert "gone" in gone_row and "<a " not in gone_row
    services.remove_container(kept.id)


def test_system_actions_say_system(signed_in):
    operation = record(source=Operation.SOURCE_SYSTEM, target_name="auto")
    assert '<td class="who">system</td>' in row_of(signed_in.get("/events/").content.decode(), operation)


def test_the_nav_links_to_the_events_page(signed_in):
    assert 'href="/events/"' in signed_in.get("/").content.decode()


# --- filters --------------------------------------------------------------------------------------


@pytest.fixture
def assorted(admin, viewer):
    now = datetime(2026, 6, 15, 12, tzinfo=dt_timezone.utc)
    return {
        "start": at(record("container.start", user=admin, source="web", target_name="web1", target_id="a" * 64), now),
        "stop": at(record("container.stop", source="api", target_name="db1", target_id="b" * 64), now - timedelta(days=1)),
        "image": at(record("image.remove", user=viewer, source="web", state="failed", target_name="busybox",
                           error="permission denied"), now - timedelta(days=3)),
        "network": at(record("network.create", source="system", target_name="front"), now - timedelta(days=10)),
    }


def filtered(client, **query) -> set[int]:
    response = client.get("/events/", query)
    assert response.status_code == 200
    return set(event_ids(response.content.decode()))


@pytest.mark.parametrize("query, expected", [
    ({"action": "container.start"}, {"start"}),
    ({"action": "container"}, {"start", "stop"}),
    ({"action": "container."}, {"start", "stop"}),
    ({"user": "vic"}, {"image"}),
    ({"source": "api"}, {"stop"}),
    ({"source": "web"}, {"start", "image"}),
    ({"state": "failed"}, {"image"}),
    ({"target": "DB1"}, {"stop"}),
    ({"target": "aaaa"}, {"start"}),
    ({"since": "2026-06-14"}, {"start", "stop"}),
    ({"until": "2026-06-12"}, {"image", "network"}),
    ({"since": "2026-06-12", "until": "2026-06-14"}, {"stop", "image"}),
    ({"source": "web", "state": "done"}, {"start"}),
    ({}, {"start", "stop", "image", "network"}),
])
def test_the_filters_narrow_the_rows(signed_in, assorted, query, expected):
    assert filtered(signed_in, **query) == {assorted[name].pk for name in expected}


def test_a_backwards_date_range_is_an_error_next_to_its_end(signed_in, assorted):
    page = signed_in.get("/events/", {"since": "2026-06-14", "until": "2026-06-01"}).content.decode()
    field = page[page.index('id="field-until"'):]
    assert "The end of the range is before its start." in field[:field.index("</div>")]
    assert event_ids(page) == []


def test_a_bad_date_is_an_error_next_to_its_field(signed_in, assorted):
    page = signed_in.get("/events/", {"since": "yesterday"}).content.decode()
    field = page[page.index('id="field-since"'):]
    assert "Enter a valid date." in field[:field.index("</div>")]


# --- pages --------------------------------------------------------------------------------------------


def test_pages_go_older_and_back_newer_keeping_the_filters(signed_in, db):
    Operation.objects.bulk_create([Operation(action="container.start" if n % 2 else "container.stop",
                                             target_name=f"c{n}") for n in range(130)])
    starts = list(Operation.objects.filter(action="container.start").order_by("-pk").values_list("pk", flat=True))
    first = signed_in.get("/events/", {"action": "container.start"}).content.decode()
    assert event_ids(first) == starts[:50] and "newer" not in first
    older = re.search(r'href="\?([^"]*before=\d+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "action=container.start" in older
    second = signed_in.get("/events/?" + older).content.decode()
    assert event_ids(second) == starts[50:65] and 'rel="next"' not in second
    newer = re.search(r'href="\?([^"]*after=\d+)" rel="prev"', second).group(1).replace("&amp;", "&")
    assert event_ids(signed_in.get("/events/?" + newer).content.decode()) == starts[:50]


def test_a_page_of_100000_rows_is_quick_and_never_counts_or_offsets(signed_in, db):
    Operation.objects.bulk_create([Operation(action=("container.start", "image.tag", "network.create")[n % 3],
                                             state="done" if n % 7 else "failed", target_name=f"t{n}")
                                   for n in range(100_000)], batch_size=5000)
    for query in ({}, {"state": "failed"}, {"action": "image", "before": str(Operation.objects.order_by("-pk")[500].pk)}):
        with CaptureQueriesContext(connection) as queries:
            started = time.monotonic()
            response = signed_in.get("/events/", query)
            elapsed = time.monotonic() - started
        assert response.status_code == 200 and len(event_ids(response.content.decode())) == 50
        sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
        assert "COUNT(" not in sql and "OFFSET" not in sql and len(queries.captured_queries) <= 8
        assert elapsed < 1.5, f"{query}: {elapsed:.2f} s"


# --- read-only, viewer, anonymous -------------------------------------------------------------------------


def test_the_page_offers_no_way_to_change_a_row(signed_in, assorted):
    page = signed_in.get("/events/").content.decode()
    main = page.split("<main>")[1]
    assert 'method="post"' not in main and "delete" not in main.lower()
    assert signed_in.post("/events/").status_code == 405


def test_a_viewer_sees_the_events(client, viewer, assorted):
    client.force_login(viewer)
    assert filtered(client) == {operation.pk for operation in assorted.values()}


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get("/events/")
    assert response.status_code == 302 and response.url == "/login/?next=/events/"
