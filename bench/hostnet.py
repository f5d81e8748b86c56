"""The host as the benchmarks see it: processes, cgroups, links, and the iptables(-nft) tables dockerd edits.

dockerd with ``--iptables=true`` adds chains (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2) and
jumps to them in iptables' ``filter`` and ``nat`` tables (created if missing), may change base chain
policies and sysctls, and leaves nothing behind on request. ``save_snapshot`` records those tables,
the sysctls and a few paths before it starts; ``restore_snapshot`` removes whatever differs after it
stopped: new tables, new rules, new chains, changed policies and sysctls, paths that appeared.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from pyroute2 import IPRoute

IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
IPTABLES_FAMILIES = {"ip", "ip6"}
SYSCTLS = [Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/bridge/bridge-nf-call-iptables"),
           Path("/proc/sys/net/bridge/bridge-nf-call-ip6tables")]
# What dockerd creates outside its data and exec roots when they are missing.
DOCKERD_PATHS = [Path("/etc/docker/key.json"), Path("/etc/docker"), Path("/run/docker"), Path("/run/containerd")]
SNAPSHOT = "host-before.json"
CGROUP_ROOT = Path("/sys/fs/cgroup")


# --- processes -------------------------------------------------------------------------------------


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def descendants(roots: list[int]) -> set[int]:
    """These processes and every process under them."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [pid for pid in roots if pid]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def processes_mentioning(text: str) -> set[int]:
    """Processes whose command line or environment holds ``text`` (a folder only they use), not this one."""
    needle, found = text.encode(), set()
    for pid in _pids():
        if pid == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                if needle in Path(f"/proc/{pid}/{part}").read_bytes():
                    found.add(pid)
                    break
            except OSError:
                continue
    return found


def cgroups_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def memory_kb(pids: set[int]) -> dict:
    """Total RSS and PSS (shared pages split among their sharers) of these processes, in kB."""
    total = {"rss_kb": 0, "pss_kb": 0, "processes": 0}
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                total[f"{name.lower()}_kb"] += int(rest.split()[0])
        total["processes"] += 1
    return total


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)


def kill_processes_mentioning(text: str) -> None:
    _kill(processes_mentioning(text))


def remove_cgroup_parent(name: str) -> None:
    """Kill what is left in a cgroup parent, in every hierarchy, then remove its folders, deepest first."""
    directories = list(CGROUP_ROOT.glob(f"*/{name}"))
    pids = set()
    for directory in directories:
        for procs in directory.glob("**/cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                pass
    _kill(pids)
    for directory in directories:
        for child in sorted(directory.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            try:
                child.rmdir()
            except OSError:
                pass


# --- links -----------------------------------------------------------------------------------------


def add_bridge(name: str, address: str) -> None:
    ip, prefix = address.split("/")
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
        ipr.link("set", index=index, state="up")


def free_subnet(candidates: list[str]) -> ipaddress.IPv4Network:
    """A random one of these subnets that no address or route of the host overlaps."""
    with IPRoute() as ipr:
        taken = [ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False)
                 for a in ipr.get_addr(family=socket.AF_INET)]
        taken += [ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")
                  for r in ipr.get_routes(family=socket.AF_INET) if r.get_attr("RTA_DST")]
    free = [net for net in map(ipaddress.IPv4Network, candidates) if not any(net.overlaps(t) for t in taken)]
    if not free:
        raise RuntimeError(f"no free subnet for Docker's bridge among {candidates[0]}...")
    return secrets.choice(free)


def remove_bridge_and_ports(name: str) -> None:
    """The bridge and every link enslaved to it (the host ends of veths); nothing if it is gone."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return
        for link in ipr.get_links():
            if link.get_attr("IFLA_MASTER") == found[0]:
                _delete_link(ipr, link["index"])
        _delete_link(ipr, found[0])


def _delete_link(ipr: IPRoute, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except Exception as error:  # gone meanwhile (a veth goes with its peer)
        if "No such device" not in str(error):
            raise


def delete_links(wanted) -> None:
    """Links whose (name, alias) ``wanted`` accepts."""
    with IPRoute() as ipr:
        for link in ipr.get_links():
            if wanted(link.get_attr("IFLA_IFNAME") or "", link.get_attr("IFLA_IFALIAS") or ""):
                _delete_link(ipr, link["index"])


# --- nftables ----------------------------------------------------------------------------------------


def _ruleset() -> list[dict]:
    out = subprocess.run(["nft", "-j", "list", "ruleset"], check=True, capture_output=True, text=True).stdout
    return [item for item in json.loads(out or "{}").get("nftables", []) if "metainfo" not in item]


def _table_of(item: dict) -> tuple[str, str]:
    body = next(iter(item.values()))
    return body.get("family", ""), body.get("table", body.get("name", ""))


def _without_volatile(value):
    """Handles and counters change without anyone changing the rules: left out of comparisons."""
    if isinstance(value, dict):
        return {key: (None if key == "counter" else _without_volatile(inner))
                for key, inner in value.items() if key != "handle"}
    if isinstance(value, list):
        return [_without_volatile(inner) for inner in value]
    return value


def comparable_ruleset(ignore_prefix: str = "berth-test-") -> list:
    """The whole ruleset minus handles, counters and the tables of test runs (other sessions' own)."""
    return [_without_volatile(item) for item in _ruleset() if not _table_of(item)[1].startswith(ignore_prefix)]


def delete_tables(wanted) -> None:
    """nft tables whose name ``wanted`` accepts."""
    for item in _ruleset():
        if "table" in item and wanted(item["table"]["name"]):
            _nft([{"delete": {"table": {"family": item["table"]["family"], "name": item["table"]["name"]}}}])


def _iptables_items() -> list[dict]:
    return [item for item in _ruleset()
            if _table_of(item)[0] in IPTABLES_FAMILIES and _table_of(item)[1] in IPTABLES_TABLES]


def _rule_key(rule: dict) -> str:
    return json.dumps([rule["family"], rule["table"], rule["chain"], _without_volatile(rule.get("expr"))],
                      sort_keys=True)


def _nft(commands: list[dict]) -> None:
    if commands:
        subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps({"nftables": commands}), check=True,
                       capture_output=True, text=True)


def save_snapshot(folder: Path) -> None:
    items = _iptables_items()
    snapshot = {
        "tables": [[i["table"]["family"], i["table"]["name"]] for i in items if "table" in i],
        "chains": {json.dumps([c["family"], c["table"], c["name"]]): c.get("policy")
                   for c in (i["chain"] for i in items if "chain" in i)},
        "rules": [_rule_key(i["rule"]) for i in items if "rule" in i],
        "sysctls": {str(path): path.read_text() for path in SYSCTLS if path.exists()},
        "absent_paths": [str(path) for path in DOCKERD_PATHS if not path.exists()],
    }
    (folder / SNAPSHOT).write_text(json.dumps(snapshot, indent=1))


def restore_snapshot(folder: Path) -> None:
    """Undo every change to the iptables tables, the sysctls and the paths since ``save_snapshot``."""
    path = folder / SNAPSHOT
    if not path.exists():
        return
    snapshot = json.loads(path.read_text())
    tables = {tuple(t) for t in snapshot["tables"]}
    items = _iptables_items()
    _nft([{"delete": {"table": {"family": i["table"]["family"], "name": i["table"]["name"]}}}
          for i in items if "table" in i and (i["table"]["family"], i["table"]["name"]) not in tables])
    items = _iptables_items()
    kept = Counter(snapshot["rules"])
    doomed_rules = []
    for rule in (i["rule"] for i in items if "rule" in i):
        key = _rule_key(rule)
        if kept[key] > 0:
            kept[key] -= 1
        else:
            doomed_rules.append({"delete": {"rule": {k: rule[k] for k in ("family", "table", "chain", "handle")}}})
    _nft(doomed_rules)
    chains = [i["chain"] for i in items if "chain" in i]
    _nft([{"flush": {"chain": {k: c[k] for k in ("family", "table", "name")}}} for c in chains
          if json.dumps([c["family"], c["table"], c["name"]]) not in snapshot["chains"]])
    _nft([{"delete": {"chain": {k: c[k] for k in ("family", "table", "name")}}} for c in chains
          if json.dumps([c["family"], c["table"], c["name"]]) not in snapshot["chains"]])
    for chain in chains:
        before = snapshot["chains"].get(json.dumps([chain["family"], chain["table"], chain["name"]]))
        if before is not None and chain.get("policy") != before:
            _nft([{"add": {"chain": {**{k: v for k, v in chain.items() if k != "handle"}, "policy": before}}}])
    for name, value in snapshot["sysctls"].items():
        if Path(name).exists() and Path(name).read_text() != value:
            Path(name).write_text(value)
    for name in snapshot["absent_paths"]:
        _remove_path(Path(name))


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
    else:
        path.unlink(missing_ok=True)
