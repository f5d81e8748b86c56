"""Publishing a port costs the same whether 1 or 2,000 are published already.

For each level (1, 500, 2,000 ports already in the nftables map) this times
what a container with one published port needs on a bridge: namespace, veth
pair, address, one atomic nft transaction, then create + start of a busybox
container in that namespace. It also counts listening sockets on the 2,000
published ports: Berth keeps no process per port (Docker runs two
docker-proxy processes per published port, 3.3 MB each).

Own names throughout (nft table, bridge, namespaces, state root); everything is
removed at the end. Run as root:  .venv/bin/python -m bench.bench_ports [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from pathlib import Path

from runtime import ContainerSpec, NetworkSpec, Runtime, StateRoot
from runtime.baseimage import build_busybox
from .common import RESULTS, exclusive, remove_engine
from runtime.network import BridgeSpec, EndpointSpec, Networking, PortSpec

SUBNET, GATEWAY, PREFIX = "172.31.240.0/20", "172.31.240.1", 20
LEVELS = (1, 500, 2000)
FIRST_FILLER_PORT = 20000


def filler_ports(networking: Networking, count: int, already: int) -> int:
    """Publish ports for idle owners until ``count`` are in the map; the new total."""
    for n in range(already, count):
        owner = f"{n:064x}"
        networking.publish(owner, [PortSpec("tcp", "0.0.0.0", FIRST_FILLER_PORT + n, "172.31.250.2", 80)])
    return max(count, already)


def one_container(engine: Runtime, networking: Networking, bridge: str, index: int, host_port: int) -> float:
    began = time.perf_counter()
    container_id = secrets.token_hex(32)
    netns = networking.create_netns(container_id)
    address = f"172.31.241.{index % 250 + 2}"
    networking.attach(netns, EndpointSpec(container_id, bridge, address, PREFIX, GATEWAY))
    networking.publish(container_id, [PortSpec("tcp", "0.0.0.0", host_port, address, 80)])
    network = NetworkSpec(mode="netns", netns_path=netns, addresses=[address])
    engine.create(ContainerSpec(image="busybox", cmd=["sleep", "100"], network=network), container_id=container_id)
    engine.start(container_id)
    took = time.perf_counter() - began
    engine.remove(container_id, force=True)
    networking.unpublish(container_id)
    networking.detach(container_id)
    networking.remove_netns(container_id)
    return took


def listeners_on(ports: range) -> int:
    """Sockets listening on these host ports: a userland proxy would hold one per published port."""
    wanted = {f"{port:04X}" for port in ports}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[1].rsplit(":", 1)[1] in wanted:
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    with exclusive():
        results, proxies = measure(options.runs)
    report(results, proxies)


def measure(runs: int) -> tuple[dict, int]:
    """Median create + start by ports already published, and the listeners on the filler ports."""
    tag = secrets.token_hex(3)
    state = StateRoot(Path("/tmp") / f"berth-bench-{tag}", f"berth-bench-{tag}")
    engine = Runtime(state)
    networking = Networking(table=f"berth-bench-{tag}", netns_prefix=f"bb{tag}-",
                            state_dir=state.root / "network")
    bridge = f"bbb{tag}"
    results = {}
    try:
        build_busybox(engine.images)
        networking.ensure_bridge(BridgeSpec(bridge, SUBNET, GATEWAY))
        published = 0
        for level in LEVELS:
            published = filler_ports(networking, level, published)
            timings = [one_container(engine, networking, bridge, i, 40000 + i) for i in range(runs)]
            results[level] = statistics.median(timings)
        proxies = listeners_on(range(FIRST_FILLER_PORT, FIRST_FILLER_PORT + published))
    finally:
        for container in engine.list():
            engine.remove(container.id, force=True)
        networking.gc(set(), set(), set(), set())
        networking.remove_bridge(bridge)
        networking.teardown()
        remove_engine(engine)
    return results, proxies


def report(results: dict, proxies: int) -> None:
    ratio = results[LEVELS[-1]] / results[LEVELS[0]]
    print(f"{'ports already published':26}{'create+start, one port (median)':>34}")
    for level in LEVELS:
        print(f"{level:<26}{results[level] * 1000:>31.1f} ms")
    print(f"ratio {LEVELS[-1]}/{LEVELS[0]}: {ratio:.2f} (target <= 1.1)")
    print(f"listening sockets (proxies) for {LEVELS[-1]} published ports: {proxies} (Docker: one docker-proxy per port)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ports.json").write_text(json.dumps({
        "median_s_by_published": results, "ratio": ratio,
        "proxy_listeners": proxies}, indent=2) + "\n")


if __name__ == "__main__":
    main()
