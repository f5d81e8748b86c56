"""Name resolution on user-defined networks (runtime/dns.py).

The server runs where it runs in Berth, on port 53 of gateway addresses, but
inside a network namespace of the test's own: a bridge without ports there holds
the "gateways" of two networks, and nothing outside the namespace sees them::

    netns berth-test-...-dns-...
      lo            127.0.0.1     fake upstream nameservers (:5353 answers, :5354 is silent)
      br0 (bridge)  172.30.253.1  network A's gateway  <- a DnsServer socket
                    172.30.254.1  network B's gateway  <- a DnsServer socket

A harness process (this module run with ``-m``, inside the namespace) holds the
server and a small DNS client; the test drives it over a pipe, one JSON line a
call. Nothing is ever forwarded to the host's nameservers: every server here
is made with an explicit (fake, in-namespace) upstream list.
"""

import json
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.dns import (
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    DnsServer,
    Malformed,
    Upstream,
    answer_locally,
    build_reply,
    parse_query,
)
from tests.conftest import remove_netns, unique

REPO = Path(__file__).resolve().parents[2]
A_GATEWAY, B_GATEWAY, LATE_GATEWAY = "172.30.253.1", "172.30.254.1", "172.30.252.1"
A_SUBNET, B_SUBNET = "172.30.253.0/24", "172.30.254.0/24"
UPSTREAM_NAME, UPSTREAM_ADDRESS = "upstream.example", "10.53.0.7"
TYPE_MX = 15
FORMERR = 1

WEB = "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
A_RECORDS = {"web": ["172.30.253.10"], "frontend": ["172.30.253.10"], WEB[:12]: ["172.30.253.10"],
             "db": ["172.30.253.11"]}
B_RECORDS = {"cache": ["172.30.254.10"]}


# --- the harness: runs inside the namespace ------------------------------------------


def encode_query(name: str, qtype: int = TYPE_A, query_id: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split(".") if part)
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    labels, end, hops = [], None, 0
    while message[offset]:
        if message[offset] >= 0xC0:
            end = offset + 2 if end is None else end
            offset = struct.unpack_from("!H", message, offset)[0] & 0x3FFF
            hops += 1
            assert hops < 20, "compression loop in a reply"
            continue
        labels.append(message[offset + 1:offset + 1 + message[offset]].decode())
        offset += 1 + message[offset]
    return ".".join(labels), (offset + 1 if end is None else end)


def decode_reply(message: bytes, query_id: int) -> dict:
    rid, flags, qdcount, ancount = struct.unpack_from("!HHHH", message)
    assert rid == query_id, "the reply carries the query's id"
    offset = 12
    for _ in range(qdcount):
        offset = _read_name(message, offset)[1] + 4
    answers = []
    for _ in range(ancount):
        offset = _read_name(message, offset)[1]
        rtype, _, ttl, length = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        rdata = message[offset:offset + length]
        value = (socket.inet_ntoa(rdata) if rtype == TYPE_A
                 else _read_name(message, offset)[0] if rtype == TYPE_PTR else rdata.hex())
        answers.append([rtype, value, ttl])
        offset += length
    return {"rcode": flags & 0xF, "aa": bool(flags & 0x0400), "tc": bool(flags & 0x0200), "answers": answers}


def query(server: str, name: str, qtype: int = TYPE_A, *, source: str = None, tcp: bool = False,
          timeout: float = 2.0):
    """The decoded reply; "timeout" or "refused" (nothing listens) when there is none."""
    query_id = random.randrange(1 << 16)
    packet = encode_query(name, qtype, query_id)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        try:
            sock.connect((server, 53))
            if tcp:
                sock.sendall(struct.pack("!H", len(packet)) + packet)
                length = struct.unpack("!H", _exactly(sock, 2))[0]
                reply = _exactly(sock, length)
            else:
                sock.send(packet)
                reply = sock.recv(65535)
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
    return decode_reply(reply, query_id)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionRefusedError("closed")
        data += chunk
    return data


def send_raw(server: str, hex_packet: str, timeout: float = 0.5):
    """Send bytes as they are; the reply in hex, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(bytes.fromhex(hex_packet), (server, 53))
        try:
            return sock.recv(65535).hex()
        except socket.timeout:
            return None


def can_bind(address: str, port: int = 53) -> bool:
    """Whether both UDP and TCP address:port are free."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


class FakeUpstream:
    """A nameserver on 127.0.0.1 of the namespace: UPSTREAM_NAME -> UPSTREAM_ADDRESS, else NXDOMAIN."""

    def __init__(self, port: int, silent: bool = False):
        self.count = 0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", port))
        self.tcp.listen(4)
        if not silent:
            threading.Thread(target=self._udp, daemon=True).start()
            threading.Thread(target=self._tcp, daemon=True).start()

    def answer(self, packet: bytes) -> bytes:
        self.count += 1
        end = packet.index(b"\0", 12) + 5
        name = _read_name(packet, 12)[0].lower()
        known = name == UPSTREAM_NAME
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(UPSTREAM_ADDRESS)
        header = struct.pack("!HHHHHH", struct.unpack("!H", packet[:2])[0], 0x8180 | (0 if known else 3),
                             1, int(known), 0, 0)
        return header + packet[12:end] + (rr if known else b"")

    def _udp(self):
        while True:
            packet, peer = self.udp.recvfrom(65535)
            self.udp.sendto(self.answer(packet), peer)

    def _tcp(self):
        while True:
            connection, _ = self.tcp.accept()
            with connection:
                packet = _exactly(connection, struct.unpack("!H", _exactly(connection, 2))[0])
                reply = self.answer(packet)
                connection.sendall(struct.pack("!H", len(reply)) + reply)


def harness(options: dict) -> None:
    server = DnsServer(**options)
    server.start()
    upstreams: dict[int, FakeUpstream] = {}

    def upstream(port, silent=False):
        upstreams[port] = FakeUpstream(port, silent)

    calls = {"query": query, "send_raw": send_raw, "can_bind": can_bind, "upstream": upstream,
             "upstream_count": lambda port: upstreams[port].count, "ping": lambda: "pong"}
    for line in sys.stdin:
        method, args, kwargs = json.loads(line)
        try:
            result = calls[method](*args, **kwargs) if method in calls else getattr(server, method)(*args, **kwargs)
            reply = {"ok": result}
        except Exception as error:
            reply = {"error": type(error).__name__, "message": str(error)}
        print(json.dumps(reply), flush=True)


# --- the test's side ---------------------------------------------------------------


class HarnessError(Exception):
    pass


class Harness:
    def __init__(self, netns: str, options: dict):
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.runtime.test_dns", json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True,
        )
        assert self.call("ping") == "pong"

    def call(self, method: str, *args, **kwargs):
        self.process.stdin.write(json.dumps([method, args, kwargs]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise HarnessError(f"the harness did not answer {method} (exit status {self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise HarnessError(f"{reply['error']}: {reply['message']}")
        return reply["ok"]

    def __getattr__(self, method):
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def addresses(self, server: str, name: str, **options) -> list[str]:
        reply = self.query(server, name, **options)
        assert reply["rcode"] == NOERROR, reply
        return sorted(value for rtype, value, _ in reply["answers"] if rtype == TYPE_A)

    def rcode(self, server: str, name: str, **options) -> int:
        return self.query(server, name, **options)["rcode"]

    def close(self):
        self.process.kill()  # this PID: `ip netns exec` execs the harness in place
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def ip(netns: str, *words: str) -> None:
    subprocess.run(["ip", "-n", netns, *words], check=True, capture_output=True)


@pytest.fixture
def netns():
    name = unique("dns-")
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        ip(name, "link", "set", "lo", "up")
        ip(name, "link", "add", "br0", "type", "bridge")
        ip(name, "addr", "add", f"{A_GATEWAY}/24", "dev", "br0")
        ip(name, "addr", "add", f"{B_GATEWAY}/24", "dev", "br0")
        ip(name, "link", "set", "br0", "up")
        yield name
    finally:
        remove_netns(name)


@pytest.fixture
def serve(netns):
    """Start a harness with a DnsServer(upstreams=[] unless given); every one is killed after the test."""
    started = []

    def _serve(**options) -> Harness:
        options.setdefault("upstreams", [])
        harness = Harness(netns, options)
        started.append(harness)
        return harness

    yield _serve
    for harness in started:
        harness.close()


@pytest.fixture
def two_networks(serve):
    server = serve()
    server.serve_network("net-a", A_GATEWAY)
    server.serve_network("net-b", B_GATEWAY)
    server.set_records("net-a", A_RECORDS)
    server.set_records("net-b", B_RECORDS)
    return server


# --- on the wire, inside the namespace ---------------------------------------------


def test_it_resolves_name_alias_and_short_id_on_their_network(two_networks):
    for name in ("web", "frontend", WEB[:12]):
        assert two_networks.addresses(A_GATEWAY, name) == ["172.30.253.10"]
    assert two_networks.addresses(B_GATEWAY, "cache") == ["172.30.254.10"]


def test_answers_are_authoritative_with_a_short_ttl(two_networks):
    reply = two_networks.query(A_GATEWAY, "web")
    assert reply["aa"] and [ttl for _, _, ttl in reply["answers"]] == [10]


def test_names_of_another_network_do_not_resolve(two_networks):
    assert two_networks.rcode(A_GATEWAY, "cache") == NXDOMAIN
    assert two_networks.rcode(B_GATEWAY, "web") == NXDOMAIN
    assert two_networks.rcode(B_GATEWAY, WEB[:12]) == NXDOMAIN


def test_names_are_case_insensitive_and_records_may_end_in_a_dot(two_networks):
    two_networks.set_records("net-a", {"Web.": ["172.30.253.10"]})
    assert two_networks.records("net-a") == {"web": ["172.30.253.10"]}
    assert two_networks.addresses(A_GATEWAY, "WEB") == ["172.30.253.10"]
    assert two_networks.addresses(A_GATEWAY, "wEb.") == ["172.30.253.10"]


def test_record_changes_are_seen_at_once(two_networks):
    two_networks.set_records("net-a", {"web": ["172.30.253.20"], "new": ["172.30.253.21"]})
    assert two_networks.addresses(A_GATEWAY, "web") == ["172.30.253.20"]
    assert two_networks.addresses(A_GATEWAY, "new") == ["172.30.253.21"]
    assert two_networks.rcode(A_GATEWAY, "db") == NXDOMAIN
    assert two_networks.rcode(A_GATEWAY, "frontend") == NXDOMAIN


def test_an_alias_shared_by_two_containers_gives_both_addresses(two_networks):
    two_networks.set_records("net-a", {"api": ["172.30.253.10", "172.30.253.11"]})
    assert two_networks.addresses(A_GATEWAY, "api") == ["172.30.253.10", "172.30.253.11"]


def test_aaaa_and_other_types_of_a_known_name_are_empty_answers(two_networks):
    for qtype in (TYPE_AAAA, TYPE_MX):
        reply = two_networks.query(A_GATEWAY, "web", qtype=qtype)
        assert (reply["rcode"], reply["answers"]) == (NOERROR, [])
    assert two_networks.query(A_GATEWAY, "nope", qtype=TYPE_AAAA)["rcode"] == NXDOMAIN


def test_it_answers_ptr_for_known_addresses_with_the_first_name(two_networks):
    reply = two_networks.query(A_GATEWAY, "10.253.30.172.in-addr.arpa", qtype=TYPE_PTR)
    assert reply["answers"] == [[TYPE_PTR, "web", 10]]
    assert two_networks.rcode(B_GATEWAY, "10.253.30.172.in-addr.arpa", qtype=TYPE_PTR) == NXDOMAIN


def test_it_answers_over_tcp(two_networks):
    assert two_networks.addresses(A_GATEWAY, "db", tcp=True) == ["172.30.253.11"]
    assert two_networks.rcode(B_GATEWAY, "db", tcp=True) == NXDOMAIN


def test_a_long_answer_is_truncated_over_udp_and_whole_over_tcp(two_networks):
    many = [f"172.30.253.{n}" for n in range(100, 160)]
    two_networks.set_records("net-a", {"crowd": many})
    over_udp = two_networks.query(A_GATEWAY, "crowd")
    assert over_udp["tc"] and 0 < len(over_udp["answers"]) < len(many)
    assert two_networks.addresses(A_GATEWAY, "crowd", tcp=True) == sorted(many)


def test_queries_from_outside_the_networks_subnet_are_refused(serve):
    server = serve()
    server.serve_network("net-a", A_GATEWAY, subnet=A_SUBNET)
    server.set_records("net-a", A_RECORDS)
    assert server.rcode(A_GATEWAY, "web", source=B_GATEWAY) == REFUSED
    assert server.addresses(A_GATEWAY, "web", source=A_GATEWAY) == ["172.30.253.10"]


def test_a_malformed_packet_does_not_stop_the_server(two_networks):
    header = lambda flags, qdcount: struct.pack("!HHHHHH", 0x4242, flags, qdcount, 0, 0, 0)
    silent = [b"", b"\x01", b"\xff" * 11, header(0x8180, 1) + b"\3web\0\0\1\0\1"]  # short, or a response
    for packet in silent:
        assert two_networks.send_raw(A_GATEWAY, packet.hex(), timeout=0.2) is None
    formerr = [header(0x0100, 0), header(0x0100, 2) + b"\3web\0\0\1\0\1" * 2,
               header(0x0100, 1) + b"\xc0\x0c\0\1\0\1",  # a pointer to itself
               header(0x0100, 1) + b"\x3fweb", header(0x0100, 1) + b"\3web\0\0",
               header(0x0100, 1) + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
               + b"\x3f" + b"a" * 63 + b"\0\0\1\0\1"]  # 257 bytes of name
    for packet in formerr:
        reply = bytes.fromhex(two_networks.send_raw(A_GATEWAY, packet.hex()))
        assert reply[:2] == b"\x42\x42" and reply[3] & 0xF == FORMERR
    notify = bytes.fromhex(two_networks.send_raw(A_GATEWAY, header(0x2000, 1).hex() + "0377656200" + "00010001"))
    assert notify[3] & 0xF == NOTIMP
    for _ in range(20):
        two_networks.send_raw(A_GATEWAY, random.randbytes(random.randrange(12, 200)).hex(), timeout=0.05)
    assert two_networks.addresses(A_GATEWAY, "web") == ["172.30.253.10"]
    assert two_networks.addresses(A_GATEWAY, "web", tcp=True) == ["172.30.253.10"]


def test_forget_network_closes_its_sockets_and_drops_its_names(two_networks):
    two_networks.forget_network("net-a")
    assert two_networks.query(A_GATEWAY, "web", timeout=0.5) in ("refused", "timeout")
    assert two_networks.can_bind(A_GATEWAY)
    assert two_networks.records("net-a") == {}
    assert two_networks.networks() == {"net-b": B_GATEWAY}
    assert two_networks.addresses(B_GATEWAY, "cache") == ["172.30.254.10"]
    two_networks.forget_network("net-a")  # idempotent


def test_serve_network_is_idempotent(two_networks):
    two_networks.serve_network("net-a", A_GATEWAY)
    assert two_networks.networks() == {"net-a": A_GATEWAY, "net-b": B_GATEWAY}
    assert two_networks.addresses(A_GATEWAY, "web") == ["172.30.253.10"]


def test_an_address_not_yet_configured_fails_and_can_be_retried(serve, netns):
    server = serve()
    server.set_records("late", {"early": ["172.30.252.5"]})
    with pytest.raises(HarnessError, match="OSError"):
        server.serve_network("late", LATE_GATEWAY)
    ip(netns, "addr", "add", f"{LATE_GATEWAY}/24", "dev", "br0")
    server.serve_network("late", LATE_GATEWAY)
    assert server.addresses(LATE_GATEWAY, "early") == ["172.30.252.5"]


def test_a_socket_keeps_serving_when_its_address_goes_and_comes_back(two_networks, netns):
    ip(netns, "addr", "del", f"{A_GATEWAY}/24", "dev", "br0")
    ip(netns, "addr", "add", f"{A_GATEWAY}/24", "dev", "br0")
    assert two_networks.addresses(A_GATEWAY, "web") == ["172.30.253.10"]


def test_serving_a_network_on_a_new_address_closes_the_old_one(serve, netns):
    server = serve()
    ip(netns, "addr", "add", f"{LATE_GATEWAY}/24", "dev", "br0")
    server.serve_network("net-a", A_GATEWAY)
    server.set_records("net-a", A_RECORDS)
    server.serve_network("net-a", LATE_GATEWAY)
    assert server.can_bind(A_GATEWAY)
    assert server.addresses(LATE_GATEWAY, "web") == ["172.30.253.10"]


def test_stop_closes_every_socket(two_networks):
    two_networks.stop()
    assert two_networks.can_bind(A_GATEWAY) and two_networks.can_bind(B_GATEWAY)
    with pytest.raises(HarnessError, match="RuntimeError"):
        two_networks.serve_network("net-a", A_GATEWAY)


def test_unknown_names_are_nxdomain_without_upstream(two_networks):
    assert two_networks.rcode(A_GATEWAY, UPSTREAM_NAME) == NXDOMAIN


def test_unknown_names_are_forwarded_to_the_upstream(serve):
    server = serve(upstreams=["127.0.0.1:5353"])
    server.upstream(5353)
    server.serve_network("net-a", A_GATEWAY)
    server.set_records("net-a", A_RECORDS)
    assert server.addresses(A_GATEWAY, UPSTREAM_NAME) == [UPSTREAM_ADDRESS]
    assert server.rcode(A_GATEWAY, "missing.example") == NXDOMAIN
    assert server.addresses(A_GATEWAY, UPSTREAM_NAME, tcp=True) == [UPSTREAM_ADDRESS]
    assert server.upstream_count(5353) == 3
    assert server.addresses(A_GATEWAY, "web") == ["172.30.253.10"]
    assert server.upstream_count(5353) == 3, "the network's own names are not forwarded"


def test_a_silent_upstream_gives_way_to_the_next(serve):
    server = serve(upstreams=["127.0.0.1:5354", "127.0.0.1:5353"], forward_timeout=0.3)
    server.upstream(5354, silent=True)
    server.upstream(5353)
    server.serve_network("net-a", A_GATEWAY)
    started = time.monotonic()
    assert server.addresses(A_GATEWAY, UPSTREAM_NAME) == [UPSTREAM_ADDRESS]
    assert 0.3 <= time.monotonic() - started < 2


def test_it_answers_servfail_when_no_upstream_answers(serve):
    server = serve(upstreams=["127.0.0.1:5355", "127.0.0.1:5354"], forward_timeout=0.3)  # closed, then silent
    server.upstream(5354, silent=True)
    server.serve_network("net-a", A_GATEWAY)
    assert server.rcode(A_GATEWAY, UPSTREAM_NAME) == SERVFAIL
    assert server.rcode(A_GATEWAY, UPSTREAM_NAME, tcp=True) == SERVFAIL


def test_a_network_without_forwarding_keeps_unknown_names_to_itself(serve):
    server = serve(upstreams=["127.0.0.1:5353"])
    server.upstream(5353)
    server.serve_network("internal", A_GATEWAY, forward=False)
    assert server.rcode(A_GATEWAY, UPSTREAM_NAME) == NXDOMAIN
    assert server.upstream_count(5353) == 0


def test_busybox_nslookup_finds_a_container(two_networks, netns):
    found = subprocess.run(["ip", "netns", "exec", netns, "busybox", "nslookup", "web", A_GATEWAY],
                           capture_output=True, text=True, timeout=20)
    assert "172.30.253.10" in found.stdout, found.stdout + found.stderr
    missing = subprocess.run(["ip", "netns", "exec", netns, "busybox", "nslookup", "cache", A_GATEWAY],
                             capture_output=True, text=True, timeout=20)
    assert "NXDOMAIN" in missing.stdout + missing.stderr


def test_glibc_resolves_through_it_from_resolv_conf(two_networks, netns, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {A_GATEWAY}\noptions timeout:1 attempts:1\n")

    def getent(name):
        # A mount namespace of its own: /etc/resolv.conf changes for this one command only.
        script = f"mount --bind {resolv} /etc/resolv.conf && exec getent ahosts {name}"
        return subprocess.run(["ip", "netns", "exec", netns, "unshare", "--mount", "sh", "-c", script],
                              capture_output=True, text=True, timeout=20)

    started = time.monotonic()
    found = getent("frontend")
    assert found.returncode == 0 and found.stdout.split()[0] == "172.30.253.10", found.stderr
    assert getent("cache").returncode == 2
    assert time.monotonic() - started < 5, "no waiting for AAAA or retries"


# --- messages, without a kernel ----------------------------------------------------


def test_parse_query_reads_the_question():
    question = parse_query(encode_query("Web.Example", TYPE_AAAA, 7))
    assert (question.id, question.name, question.qtype, question.qclass) == (7, "web.example", TYPE_AAAA, 1)


@pytest.mark.parametrize("packet", [b"", b"\0" * 11, encode_query("web")[:-1], encode_query("web")[:14]])
def test_parse_query_refuses_short_packets(packet):
    with pytest.raises(Malformed):
        parse_query(packet)


def test_a_response_is_never_answered():
    packet = bytearray(encode_query("web"))
    packet[2] |= 0x80
    with pytest.raises(Malformed) as raised:
        parse_query(bytes(packet))
    assert raised.value.reply is None


def test_build_reply_echoes_id_question_and_recursion_desired():
    question = parse_query(encode_query("nope", query_id=99))
    reply = build_reply(question, NXDOMAIN)
    assert decode_reply(reply, 99) == {"rcode": NXDOMAIN, "aa": True, "tc": False, "answers": []}
    assert reply[2] & 0x01  # RD copied


def test_answer_locally_leaves_unknown_names_to_the_caller():
    server = DnsServer(upstreams=[])
    server.set_records("n", {"web": ["10.0.0.2"]})
    zone = server._zones["n"]
    assert answer_locally(zone, parse_query(encode_query("other")), 512) is None
    assert decode_reply(answer_locally(zone, parse_query(encode_query("web", query_id=5)), 512), 5)["answers"] \
        == [[TYPE_A, "10.0.0.2", 10]]
    server.stop()


def test_set_records_refuses_what_is_no_ipv4_address():
    server = DnsServer(upstreams=[])
    for bad in ({"web": ["fe80::1"]}, {"web": ["300.1.1.1"]}, {"web": "10.0.0.2"}, {"": ["10.0.0.2"]}):
        with pytest.raises(ValueError):
            server.set_records("n", bad)
    assert server.records("n") == {}
    server.stop()


def test_upstreams_are_ip_or_ip_and_port():
    assert Upstream.parse("10.0.0.1").address == ("10.0.0.1", 53)
    assert Upstream.parse("127.0.0.1:5353").address == ("127.0.0.1", 5353)
    assert Upstream.parse("::1").address == ("::1", 53, 0, 0)
    assert Upstream.parse("[::1]:5353").address == ("::1", 5353, 0, 0)
    for bad in ("name.example", "10.0.0.1:0", "10.0.0.1:x"):
        with pytest.raises(ValueError):
            Upstream.parse(bad)


if __name__ == "__main__":
    harness(json.loads(sys.argv[1]))
