"""Channels group names, in one place: only [A-Za-z0-9._-], under 100 characters."""

CONTAINERS = "containers"
NETWORKS = "networks"
# Every host's resource collector sends one message per tick here; list and container pages listen.
STATS = "stats"


def container_group(container_id: str) -> str:
    return f"container-{container_id}"


def container_logs_group(container_id: str) -> str:
    return f"logs-{container_id}"
