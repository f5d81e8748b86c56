"""The log viewer's pages: the last lines, older lines by cursor, search over the whole log, download; ANSI to HTML."""

import re
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import AsyncClient

from console import ansi, logstream, services
from console.logstream import Cursor

LINE_TEXT = re.compile(r'<div class="log-line (?:stdout|stderr)" data-t="\d+" data-ts="[^"]*">(.*?)</div>')


def finished(host, cmd, name=None):
    row = services.create_container({"Image": "busybox", "Cmd": cmd}, name=name)
    services.start_container(row.id)
    host.wait(row.id, timeout=20)
    return services.refresh_container(row.id)


@pytest.fixture
def counted(busybox, host):
    """A container that printed 1..100000 (about 1,400 lines per conmon timestamp) and exited."""
    return finished(host, ["seq", "100000"], name="counter")


def shown(response):
    return LINE_TEXT.findall(response.content.decode())


def older_link(response):
    found = re.search(r'id="log-older" href="[^"]*\?before=([0-9-]+)', response.content.decode())
    return found and found.group(1)


def fragment(client, row, **params):
    return client.get(f"/containers/{row.id}/logs/", params, headers={"HX-Request": "true"})


# --- the last lines and older ones ------------------------------------------------------------------


def test_the_page_shows_the_last_lines_without_javascript(client, admin, counted):
    client.force_login(admin)
    response = client.get(f"/containers/{counted.id}/logs/")
    assert response.status_code == 200
    page = response.content.decode()
    for element in ('<section id="logs"', '<div id="log-lines"', 'id="log-search"', 'id="log-timestamps"',
                    'id="log-download"', '<span id="log-status">exited with code 0</span>'):
        assert element in page
    assert shown(response) == [str(n) for n in range(99501, 100001)]
    assert "<!doctype html>" in page and older_link(response)


def test_older_lines_page_back_to_the_first_without_gaps_or_repeats(client, admin, counted):
    client.force_login(admin)
    seen = shown(client.get(f"/containers/{counted.id}/logs/"))
    cursor = older_link(client.get(f"/containers/{counted.id}/logs/"))
    pages = 1
    while cursor:
        response = fragment(client, counted, before=cursor)
        assert "<!doctype html>" not in response.content.decode()  # the lines alone, for the page's script
        seen = shown(response) + seen
        cursor = re.search(r'data-older="([0-9-]*)"', response.content.decode()).group(1)
        pages += 1
    assert seen == [str(n) for n in range(1, 100001)]
    assert pages == 200


def test_a_cursor_made_by_the_browser_from_the_lines_shown_works(client, admin, counted):
    """The script sends the time of the first line shown and how many shown lines share it."""
    client.force_login(admin)
    last = [r for r in logstream.page(logstream.log_path(counted.id), count=700).records]
    first = last[0]
    same = sum(1 for r in last if r.time_ns == first.time_ns)
    response = fragment(client, counted, before=f"{first.time_ns}-{same}")
    assert shown(response) == [str(n) for n in range(98801, 99301)]


def test_a_bad_cursor_is_a_bad_request(client, admin, counted):
    client.force_login(admin)
    assert fragment(client, counted, before="yesterday").status_code == 400


# --- search -----------------------------------------------------------------------------------------


def test_search_finds_lines_far_from_the_loaded_ones(client, admin, counted):
    client.force_login(admin)
    response = fragment(client, counted, q="4242")
    matches = shown(response)
    assert "<mark>4242</mark>" in matches and len(matches) == 20  # 4242, 14242, ... 94242, 42420..42429
    assert [re.sub("</?mark>", "", m) for m in matches] == sorted(
        (str(n) for n in range(1, 100001) if "4242" in str(n)), key=int)
    assert "20 lines match" in response.content.decode()


def test_search_keeps_the_newest_matches_and_ignores_case(busybox, host):
    row = finished(host, ["sh", "-c", "for i in $(seq 1 3000); do echo Error $i; echo fine; done"])
    found = logstream.search(logstream.log_path(row.id), "eRRoR", limit=1000)
    assert found.limited and len(found.records) == 1000, found.records[-1]
    assert found.records[-1].data == b"Error 3000\n", (found.records[-1], services.refresh_container(row.id).state)
    assert [r.data for r in found.records[:2]] == [b"Error 2001\n", b"Error 2002\n"]
    assert found.records[-1].data == b"Error 3000\n"


def test_search_joins_a_line_conmon_split_in_chunks(busybox, host):
    row = finished(host, ["sh", "-c", "echo before; printf start-; sleep 0.3; printf middle-; sleep 0.3; echo end"])
    for term in ("T-MID", "start", "middle-end"):
        assert [r.data for r in logstream.search(logstream.log_path(row.id), term).records] == [b"start-middle-end\n"]
    assert b" P " in logstream.log_path(row.id).read_bytes()  # the case at hand: it was written in chunks


def test_search_does_not_match_the_timestamp_or_stream(busybox, host):
    row = finished(host, ["echo", "hello"])
    assert logstream.search(logstream.log_path(row.id), "stdout").records == []
    assert logstream.search(logstream.log_path(row.id), time.strftime("%Y-")).records == []


# --- download ----------------------------------------------------------------------------------------


def download(user, row, **params):
    """Through the ASGI handler, as daphne serves it: the body comes in chunks from an async iterator."""
    async def fetch():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get(f"/containers/{row.id}/logs/download/", params)
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    return async_to_sync(fetch)()


def test_download_streams_the_whole_log_as_plain_text(admin, counted):
    response, chunks = download(admin, counted)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="counter.log"'
    assert b"".join(chunks) == "".join(f"{n}\n" for n in range(1, 100001)).encode()
    assert len(chunks) > 1 and max(map(len, chunks)) < 2 * logstream.DOWNLOAD_CHUNK


def test_download_with_timestamps(admin, busybox, host):
    row = finished(host, ["sh", "-c", "echo out; echo err >&2"])
    body = b"".join(download(admin, row, timestamps="1")[1])
    assert sorted(line.split(b" ", 1)[1] for line in body.splitlines()) == [b"err", b"out"]
    assert all(re.match(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ", line) for line in body.splitlines())


# --- who may read -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "download/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, busybox, host, suffix):
    row = finished(host, ["echo", "secret"])
    response = client.get(f"/containers/{row.id}/logs/{suffix}")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_reads_the_log(client, busybox, host):
    row = finished(host, ["echo", "for everyone"])
    client.force_login(User.objects.create_user("vic", password="pw"))
    assert shown(client.get(f"/containers/{row.id}/logs/")) == ["for everyone"]


def test_an_unknown_container_is_not_found(client, admin, db):
    client.force_login(admin)
    assert client.get(f"/containers/{'cd' * 32}/logs/").status_code == 404


def test_the_container_page_has_the_log_viewer(client, admin, busybox, host):
    row = finished(host, ["sh", "-c", "exit 4"])
    client.force_login(admin)
    page = client.get(f"/containers/{row.id}/").content.decode()
    assert '<section id="logs"' in page and 'id="log-lines"' in page
    assert '<span id="log-status">exited with code 4</span>' in page
    assert f'data-ws="/ws/containers/{row.id}/logs/"' in page and "js/logs.js" in page


# --- ANSI colours --------------------------------------------------------------------------------------


def test_colours_become_spans_and_text_is_escaped():
    assert ansi.to_html("\x1b[1;31mfailed\x1b[0m <b>&\n") == '<span class="ansi-bold ansi-red">failed</span> &lt;b&gt;&amp;'
    assert ansi.to_html("\x1b[42;97m ok \x1b[39m!") == ('<span class="ansi-bright-white ansi-bg-green"> ok </span>'
                                                        '<span class="ansi-bg-green">!</span>')


def test_palette_and_true_colours_are_inline_styles_of_numbers():
    assert ansi.to_html("\x1b[38;5;67mx") == '<span style="color:#5f87af">x</span>'
    assert ansi.to_html("\x1b[48;2;1;2;300my") == '<span style="background-color:#0102ff">y</span>'


def test_other_escapes_and_control_characters_are_dropped():
    assert ansi.to_html("\x1b]0;title\x07\x1b[2Ka\x00b\tc\x1b[?25l") == "ab\tc"
    assert ansi.to_html("10%\r50%\r100%\r\n") == "100%"


def test_a_highlight_marks_the_term_inside_escaped_text():
    assert ansi.to_html("<Error> error", highlight="ERROR") == "&lt;<mark>Error</mark>&gt; <mark>error</mark>"
    assert ansi.to_html("a<b", highlight="<") == "a<mark>&lt;</mark>b"


def test_a_cursor_reads_back_what_it_wrote():
    assert Cursor.parse(str(Cursor(1732931149234139072, 3))) == Cursor(1732931149234139072, 3)
    for bad in ("", "1", "-1-2", "a-b", "1-2-3"):
        with pytest.raises(ValueError):
            Cursor.parse(bad)
