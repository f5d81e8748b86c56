"""A web server and a DNS server on 127.0.0.1, for name-resolution tests.

Run inside a network namespace the test made (``ip netns exec NS python3 -m
tests.helpers.nameserver NAME``): it answers A queries for NAME with 127.0.0.1
and serves "hello from berth" on port 8080. Prints "ready" once both listen.
"""

import http.server
import socket
import struct
import sys
import threading

BODY = b"hello from berth"


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def answer(query: bytes, known_name: str) -> bytes:
    end = query.index(b"\0", 12) + 5
    labels, i = [], 12
    while query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode().lower())
        i += 1 + query[i]
    qtype = struct.unpack("!H", query[end - 4:end - 2])[0]
    known = ".".join(labels) == known_name
    answers = b""
    if known and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    flags = 0x8180 | (0 if known else 3)
    header = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], flags, 1, int(bool(answers)), 0, 0)
    return header + query[12:end] + answers


def serve_dns(sock: socket.socket, known_name: str) -> None:
    while True:
        query, peer = sock.recvfrom(512)
        sock.sendto(answer(query, known_name), peer)


def start(known_name: str) -> None:
    """Both servers in daemon threads; they listen once this returns."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Hello)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    threading.Thread(target=serve_dns, args=(dns, known_name), daemon=True).start()


def main() -> None:
    start(sys.argv[1])
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
