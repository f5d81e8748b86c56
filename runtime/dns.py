"""Name resolution on user-defined networks: one DNS server for the whole host.

Docker answers on 127.0.0.11 inside every container. Berth runs one server
in its worker process instead, with a socket on each user-defined network's
gateway (the bridge's own address), and gives the containers of that network
``nameserver <gateway>`` in /etc/resolv.conf::

    [ctr web 172.18.0.2] --"db?"--> 172.18.0.1:53 --- br-1a2b (network N)
                                        |  N's records only: db -> 172.18.0.3
                                        `- other names: the host's nameservers
    [ctr x   172.19.0.2] --"db?"--> 172.19.0.1:53 --- br-3c4d (network M): NXDOMAIN

The socket a query arrives on names the network, so a container sees the
names of its own network and nothing of the others. The default bridge gets
no socket: Docker resolves no names there (links write /etc/hosts instead).

Records are a plain mapping, name -> IPv4 addresses (a container's name, its
aliases and its short id, lowercase), replaced whole by ``set_records``; the
next query sees the new mapping. Answers carry a short TTL so that clients
that cache notice a container that came or went within seconds.

What is answered, per network:

- A (and ANY) for a known name: its addresses, in random order (round robin
  for a name several containers share as an alias).
- AAAA or any other type for a known name: NOERROR with no answers, so a
  client asking A and AAAA side by side takes the A answer and moves on.
- PTR for ``d.c.b.a.in-addr.arpa`` of a known address: the first name that
  lists the address (callers put the container's name first).
- Anything else goes to the host's nameservers (``forward=False``, e.g. for
  ``--internal`` networks, or no nameserver at all: NXDOMAIN); SERVFAIL when
  none of them answers in time.

One thread multiplexes every UDP socket with a selector; forwarded UDP
queries are waited for in that same loop (a fresh socket per attempt: a
random source port and a random id, and replies only from the server asked).
TCP is rare (clients retry over TCP after a truncated reply): each accepted
connection gets a short-lived thread of its own, and its forwarded queries go
upstream over TCP too.

Kernel facts this relies on:

- Binding needs the address to be configured (EADDRNOTAVAIL otherwise), so
  ``serve_network`` raises OSError until the bridge has its gateway; call it
  again once it does.
- A bound socket stays bound when its address goes away: when the bridge
  comes back with the same address, the same socket receives again.
- The port is shared with nothing: a process on the host that listens on
  0.0.0.0:53 makes every bind here fail with EADDRINUSE.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import secrets
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

DNS_PORT = 53
TTL = 10  # seconds; Docker says 600, but a container that moved should be found again quickly
FORWARD_TIMEOUT = 2.0  # seconds per upstream nameserver
MAX_FORWARDS = 512  # UDP queries waiting for an upstream at once; more get SERVFAIL
MAX_TCP = 32  # TCP connections served at once; more are closed
TCP_IDLE = 5.0  # seconds a TCP connection may sit without a full query
UDP_LIMIT = 512  # bytes a UDP reply may have without EDNS (RFC 1035 4.2.1)
HOST_RESOLV_CONF = Path("/etc/resolv.conf")

# Header flags and codes (RFC 1035 4.1.1).
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE = 0x7800
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_PTR, TYPE_AAAA, TYPE_ANY = 1, 12, 28, 255
CLASS_IN, CLASS_ANY = 1, 255

_HEADER = struct.Struct("!HHHHHH")
_LENGTH = struct.Struct("!H")


# --- messages ----------------------------------------------------------------------


class Malformed(ValueError):
    """A packet that is no query we can answer; ``reply`` is what to send back, if anything."""

    def __init__(self, reason: str, reply: Optional[bytes] = None):
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Question:
    id: int
    flags: int
    name: str  # lowercase (ASCII only, as DNS compares), no trailing dot; "" for the root
    qtype: int
    qclass: int
    section: bytes  # the question as sent, echoed in every reply


def parse_query(packet: bytes) -> Question:
    """The one question of a query. Raises Malformed, with a reply when the sender earned one."""
    if len(packet) < _HEADER.size:
        raise Malformed("shorter than a header")
    query_id, flags, qdcount = struct.unpack_from("!HHH", packet)
    if flags & QR:
        raise Malformed("a response, not a query")  # never answer one: two servers could loop
    if flags & OPCODE:
        raise Malformed("not a standard query", _header_only(query_id, flags, NOTIMP))
    formerr = _header_only(query_id, flags, FORMERR)
    if qdcount != 1:
        raise Malformed(f"{qdcount} questions", formerr)
    labels, offset = [], _HEADER.size
    while True:
        if offset >= len(packet):
            raise Malformed("name runs past the end", formerr)
        length = packet[offset]
        if length == 0:
            offset += 1
            break
        if length > 63:  # 0xC0.. is a compression pointer: no query needs one
            raise Malformed("compressed or oversized label", formerr)
        label = packet[offset + 1:offset + 1 + length]
        if len(label) < length:
            raise Malformed("label runs past the end", formerr)
        labels.append(label)
        offset += 1 + length
    if offset - _HEADER.size > 255:
        raise Malformed("name longer than 255 bytes", formerr)
    if offset + 4 > len(packet):
        raise Malformed("question runs past the end", formerr)
    qtype, qclass = struct.unpack_from("!HH", packet, offset)
    name = b".".join(labels).lower().decode("latin-1")
    return Question(query_id, flags, name, qtype, qclass, packet[_HEADER.size:offset + 4])


def _header_only(query_id: int, flags: int, rcode: int) -> bytes:
    return _HEADER.pack(query_id, QR | (flags & (OPCODE | RD)) | rcode, 0, 0, 0, 0)


def build_reply(question: Question, rcode: int, answers: list[bytes] = (), *,
                authoritative: bool = True, recursion: bool = True,
                limit: Optional[int] = None) -> bytes:
    """A reply to ``question``; answers that do not fit in ``limit`` bytes are cut and TC set."""
    flags = QR | (question.flags & (OPCODE | RD)) | rcode
    flags |= (AA if authoritative else 0) | (RA if recursion else 0)
    size = _HEADER.size + len(question.section)
    kept = []
    for record in answers:
        if limit is not None and size + len(record) > limit:
            flags |= TC
            break
        kept.append(record)
        size += len(record)
    header = _HEADER.pack(question.id, flags, 1, len(kept), 0, 0)
    return header + question.section + b"".join(kept)


def _record(rtype: int, rdata: bytes) -> bytes:
    # The owner name is always the question's: a pointer to offset 12.
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, CLASS_IN, TTL, len(rdata)) + rdata


def _encode_name(name: str) -> Optional[bytes]:
    labels = [label.encode("latin-1") for label in name.split(".")]
    if any(not 0 < len(label) <= 63 for label in labels):
        return None
    encoded = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return encoded if len(encoded) <= 255 else None


def _reverse_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


# --- records -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Zone:
    names: dict[str, tuple[str, ...]]  # name -> IPv4 addresses
    pointers: dict[str, str]  # "3.0.18.172.in-addr.arpa" -> name

    @classmethod
    def of(cls, records: dict[str, list[str]]) -> "_Zone":
        names: dict[str, tuple[str, ...]] = {}
        for name, addresses in records.items():
            key = name.strip().rstrip(".").lower()
            if not key:
                raise ValueError(f"empty name in DNS records: {name!r}")
            if isinstance(addresses, str):
                raise ValueError(f"addresses of {name!r} must be a list, not a string")
            valid = [str(ipaddress.IPv4Address(address)) for address in addresses]
            names[key] = tuple(dict.fromkeys(names.get(key, ()) + tuple(valid)))
        pointers: dict[str, str] = {}
        for name, addresses in names.items():
            for address in addresses:
                pointers.setdefault(_reverse_name(address), name)
        return cls(names, pointers)


_NO_RECORDS = _Zone({}, {})


def answer_locally(zone: _Zone, question: Question, limit: Optional[int]) -> Optional[bytes]:
    """The reply from a network's own records, or None when the name is not one of them."""
    if question.qclass not in (CLASS_IN, CLASS_ANY):
        return None
    addresses = zone.names.get(question.name)
    if addresses is not None:
        answers = []
        if question.qtype in (TYPE_A, TYPE_ANY):
            shuffled = random.sample(addresses, len(addresses))
            answers = [_record(TYPE_A, socket.inet_aton(address)) for address in shuffled]
        return build_reply(question, NOERROR, answers, limit=limit)
    target = zone.pointers.get(question.name)
    if target is not None and question.qtype in (TYPE_PTR, TYPE_ANY):
        encoded = _encode_name(target)
        if encoded is not None:
            return build_reply(question, NOERROR, [_record(TYPE_PTR, encoded)], limit=limit)
    return None


# --- upstream nameservers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upstream:
    family: int
    address: tuple  # a sockaddr: (host, port) or (host, port, flowinfo, scope_id)

    @classmethod
    def parse(cls, text: str) -> "Upstream":
        """``ip``, ``ip:port``, ``ipv6`` or ``[ipv6]:port``; port 53 unless given."""
        text = text.strip()
        port = DNS_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif text.count(":") == 1:
            host, _, number = text.partition(":")
            port = int(number)
        else:
            host = text
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        if not 0 < port < 65536:
            raise ValueError(f"port out of range in {text!r}")
        if ip.version == 4:
            return cls(socket.AF_INET, (host, port))
        return cls(socket.AF_INET6, (host, port, 0, 0))


def host_nameservers(path: Path = HOST_RESOLV_CONF) -> list[Upstream]:
    """The host's own nameservers, loopback ones included: the server runs on the host."""
    found = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(Upstream.parse(words[1]))
            except ValueError:
                pass
    return found


# --- the server --------------------------------------------------------------------


@dataclass(eq=False)
class _Listener:
    network_id: str
    address: str
    udp: socket.socket
    tcp: socket.socket
    subnet: Optional[ipaddress.IPv4Network]
    forward: bool

    def admits(self, peer: tuple) -> bool:
        if self.subnet is None:
            return True
        try:
            return ipaddress.ip_address(peer[0]) in self.subnet
        except ValueError:
            return False

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@dataclass(eq=False)
class _Forward:
    """A UDP query on its way through the upstream nameservers, one at a time."""

    listener: _Listener
    client: tuple
    question: Question
    query_id: int  # ours, random: a reply must carry it
    packet: bytes  # the client's query as sent, with our id
    upstreams: list[Upstream]
    attempt: int = -1
    sock: Optional[socket.socket] = None
    deadline: float = 0.0


class DnsServer:
    """One DNS server for every user-defined network on the host (see the module docstring)."""

    def __init__(self, upstreams: Optional[list[str]] = None, port: int = DNS_PORT, *,
                 forward_timeout: float = FORWARD_TIMEOUT):
        # None: the host's /etc/resolv.conf, read again whenever it changes.
        self._fixed_upstreams = None if upstreams is None else [Upstream.parse(u) for u in upstreams]
        self._resolv_seen: Optional[tuple] = None
        self._resolv_upstreams: list[Upstream] = []
        self.port = port
        self.forward_timeout = forward_timeout
        self._lock = threading.RLock()
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[str, _Listener] = {}
        self._zones: dict[str, _Zone] = {}
        self._forwards: set[_Forward] = set()
        self._tcp_connections: set[socket.socket] = set()
        self._tcp_slots = threading.BoundedSemaphore(MAX_TCP)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, ("wake", None))
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._closed = False

    # -- lifecycle

    def start(self) -> None:
        with self._lock:
            self._check_open()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="berth-dns", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop answering and close every socket. Idempotent; a stopped server stays stopped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            self._wake()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            for listener in self._listeners.values():
                listener.close()
            self._listeners.clear()
            for forward in self._forwards:
                if forward.sock is not None:
                    forward.sock.close()
            self._forwards.clear()
            for connection in self._tcp_connections:
                _shut(connection)
            self._selector.close()
            self._wake_reader.close()
            self._wake_writer.close()

    # -- networks and records

    def serve_network(self, network_id: str, address: str, *, subnet: Optional[str] = None,
                      forward: bool = True) -> None:
        """Answer for ``network_id`` on ``address``:port (its gateway). Idempotent.

        ``subnet``: answer only queries from it (REFUSED otherwise), so a container
        of another network cannot ask this gateway for names not meant for it.
        ``forward=False``: unknown names are NXDOMAIN (``--internal`` networks).
        Raises OSError while the address is not configured on the host; retry then.
        """
        address = str(ipaddress.IPv4Address(address))
        allowed = ipaddress.IPv4Network(subnet, strict=False) if subnet else None
        with self._lock:
            self._check_open()
            current = self._listeners.get(network_id)
            if current is not None and current.address == address:
                current.subnet, current.forward = allowed, forward
                return
            udp, tcp = _bind(address, self.port)
            listener = _Listener(network_id, address, udp, tcp, allowed, forward)
            self._selector.register(udp, selectors.EVENT_READ, ("udp", listener))
            self._selector.register(tcp, selectors.EVENT_READ, ("tcp", listener))
            self._listeners[network_id] = listener
            if current is not None:
                self._close_listener(current)
            self._wake()

    def forget_network(self, network_id: str) -> None:
        """Close the network's sockets and drop its records. Idempotent."""
        with self._lock:
            self._zones.pop(network_id, None)
            listener = self._listeners.pop(network_id, None)
            if listener is not None and not self._closed:
                self._close_listener(listener)

    def set_records(self, network_id: str, records: dict[str, list[str]]) -> None:
        """Replace the network's names (name -> IPv4 addresses) at once; the next query sees them."""
        zone = _Zone.of(records)
        with self._lock:
            self._zones[network_id] = zone

    def records(self, network_id: str) -> dict[str, list[str]]:
        zone = self._zones.get(network_id, _NO_RECORDS)
        return {name: list(addresses) for name, addresses in zone.names.items()}

    def networks(self) -> dict[str, str]:
        """The networks served: network id -> the address their sockets are bound to."""
        with self._lock:
            return {network_id: listener.address for network_id, listener in self._listeners.items()}

    # -- the loop

    def _loop(self) -> None:
        while not self._stopping.is_set():
            events = self._selector.select(self._next_timeout())
            with self._lock:
                if self._stopping.is_set():
                    return
                for key, _ in events:
                    self._dispatch(key)
                self._expire_forwards(time.monotonic())

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        kind, subject = key.data
        if key.fileobj.fileno() == -1:  # closed since select() returned
            return
        try:
            if kind == "udp":
                self._read_udp(subject)
            elif kind == "tcp":
                self._accept_tcp(subject)
            elif kind == "forward":
                self._read_forward(subject)
            else:
                while self._wake_reader.recv(4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            log.debug("dns: %s on a %s socket", error, kind)
        except Exception:
            # One packet that trips a bug must not end name resolution for every network.
            log.exception("dns: unexpected error handling a %s event; still serving", kind)

    def _read_udp(self, listener: _Listener) -> None:
        packet, peer = listener.udp.recvfrom(65535)
        outcome = self._answer(listener, packet, peer, UDP_LIMIT)
        if isinstance(outcome, Question):
            self._start_forward(listener, peer, packet, outcome)
        elif outcome is not None:
            listener.udp.sendto(outcome, peer)

    def _answer(self, listener: _Listener, packet: bytes, peer: tuple,
                limit: Optional[int]) -> bytes | Question | None:
        """The reply, None to stay silent, or the question when it must go upstream."""
        try:
            question = parse_query(packet)
        except Malformed as error:
            return error.reply if listener.admits(peer) else None
        if not listener.admits(peer):
            return build_reply(question, REFUSED, recursion=False)
        local = answer_locally(self._zones.get(listener.network_id, _NO_RECORDS), question, limit)
        if local is not None:
            return local
        if listener.forward and self._upstreams():
            return question
        return build_reply(question, NXDOMAIN, recursion=listener.forward, limit=limit)

    # -- forwarding over UDP, inside the loop

    def _upstreams(self) -> list[Upstream]:
        if self._fixed_upstreams is not None:
            found = self._fixed_upstreams
        else:
            found = self._host_upstreams()
        # Never ask ourselves: a host whose resolv.conf names a Berth gateway would loop.
        ours = {(served.address, self.port) for served in self._listeners.values()}
        return [upstream for upstream in found if upstream.address[:2] not in ours]

    def _host_upstreams(self) -> list[Upstream]:
        try:
            stat = HOST_RESOLV_CONF.stat()
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen != self._resolv_seen:
            self._resolv_seen = seen
            self._resolv_upstreams = host_nameservers(HOST_RESOLV_CONF) if seen else []
        return self._resolv_upstreams

    def _start_forward(self, listener: _Listener, client: tuple, packet: bytes, question: Question) -> None:
        if len(self._forwards) >= MAX_FORWARDS:
            listener.udp.sendto(build_reply(question, SERVFAIL, authoritative=False), client)
            return
        query_id = secrets.randbits(16)
        forward = _Forward(listener, client, question, query_id, _LENGTH.pack(query_id) + packet[2:],
                           self._upstreams())
        self._forwards.add(forward)
        self._next_upstream(forward)

    def _next_upstream(self, forward: _Forward) -> None:
        self._drop_forward_socket(forward)
        while forward.attempt + 1 < len(forward.upstreams):
            forward.attempt += 1
            upstream = forward.upstreams[forward.attempt]
            sock = socket.socket(upstream.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                # Connected: only that server's replies arrive, and its ICMP errors do too.
                sock.connect(upstream.address)
                sock.send(forward.packet)
            except OSError as error:
                log.debug("dns: upstream %s: %s", upstream.address, error)
                sock.close()
                continue
            forward.sock = sock
            forward.deadline = time.monotonic() + self.forward_timeout
            self._selector.register(sock, selectors.EVENT_READ, ("forward", forward))
            return
        self._finish_forward(forward, build_reply(forward.question, SERVFAIL, authoritative=False))

    def _read_forward(self, forward: _Forward) -> None:
        try:
            reply = forward.sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ECONNREFUSED: nothing listens there; ask the next one
            self._next_upstream(forward)
            return
        if len(reply) < _HEADER.size or not reply[2] & 0x80 or _LENGTH.unpack_from(reply)[0] != forward.query_id:
            return  # not the answer to our question; keep waiting
        self._finish_forward(forward, _LENGTH.pack(forward.question.id) + reply[2:])

    def _finish_forward(self, forward: _Forward, reply: bytes) -> None:
        self._drop_forward_socket(forward)
        self._forwards.discard(forward)
        udp = forward.listener.udp
        if udp.fileno() != -1:  # the network may have been forgotten meanwhile
            try:
                udp.sendto(reply, forward.client)
            except OSError as error:
                log.debug("dns: reply to %s: %s", forward.client, error)

    def _drop_forward_socket(self, forward: _Forward) -> None:
        if forward.sock is not None:
            self._selector.unregister(forward.sock)
            forward.sock.close()
            forward.sock = None

    def _expire_forwards(self, now: float) -> None:
        for forward in [f for f in self._forwards if f.deadline <= now]:
            self._next_upstream(forward)

    def _next_timeout(self) -> Optional[float]:
        with self._lock:
            if not self._forwards:
                return None
            return max(0.0, min(f.deadline for f in self._forwards) - time.monotonic())

    # -- TCP: a thread per connection

    def _accept_tcp(self, listener: _Listener) -> None:
        connection, peer = listener.tcp.accept()
        if not self._tcp_slots.acquire(blocking=False):
            connection.close()
            return
        connection.settimeout(TCP_IDLE)
        self._tcp_connections.add(connection)
        threading.Thread(target=self._serve_tcp, args=(listener, connection, peer),
                         name="berth-dns-tcp", daemon=True).start()

    def _serve_tcp(self, listener: _Listener, connection: socket.socket, peer: tuple) -> None:
        try:
            while not self._stopping.is_set():
                head = _receive(connection, _LENGTH.size)
                packet = head and _receive(connection, _LENGTH.unpack(head)[0])
                if not packet:
                    return
                with self._lock:
                    outcome = self._answer(listener, packet, peer, None)
                    upstreams = self._upstreams() if isinstance(outcome, Question) else []
                if isinstance(outcome, Question):
                    outcome = (self._forward_tcp(packet, upstreams)
                               or build_reply(outcome, SERVFAIL, authoritative=False))
                if outcome is None:
                    return
                connection.sendall(_LENGTH.pack(len(outcome)) + outcome)
        except OSError as error:
            log.debug("dns: TCP client %s: %s", peer, error)
        finally:
            with self._lock:
                self._tcp_connections.discard(connection)
            connection.close()
            self._tcp_slots.release()

    def _forward_tcp(self, packet: bytes, upstreams: list[Upstream]) -> Optional[bytes]:
        for upstream in upstreams:
            try:
                with socket.socket(upstream.family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(self.forward_timeout)
                    sock.connect(upstream.address)
                    sock.sendall(_LENGTH.pack(len(packet)) + packet)
                    head = _receive(sock, _LENGTH.size)
                    reply = head and _receive(sock, _LENGTH.unpack(head)[0])
            except OSError as error:
                log.debug("dns: upstream %s over TCP: %s", upstream.address, error)
                continue
            if reply and len(reply) >= _HEADER.size and reply[:2] == packet[:2]:
                return reply
        return None

    # -- small things

    def _close_listener(self, listener: _Listener) -> None:
        for sock in (listener.udp, listener.tcp):
            self._selector.unregister(sock)
        listener.close()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the DNS server was stopped; make a new one")


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Not on UDP: there SO_REUSEADDR would let a second socket share the port.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((address, port))
        tcp.bind((address, port))
        tcp.listen(16)
    except OSError:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


def _receive(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or b"" when the peer closes first."""
    chunks, wanted = [], size
    while wanted:
        chunk = sock.recv(wanted)
        if not chunk:
            return b""
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
