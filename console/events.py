"""Publishing what changed to every open page and API waiter (Channels groups over Redis).

Event ``container.changed``: {"type": "container.changed", "id": ..., "state": ...,
"exit_code": ..., "removed": bool}. Sent to the container's own group and to
the list group; consumers render, the API's ``wait`` reads state and removed.
A removed container's event carries the state and exit code it had last.

Event ``network.changed``: {"type": "network.changed", "id": ..., "action": "create" | "remove" |
"connect" | "disconnect", "container": id or ""}. Sent to the networks group (the topology page).
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import groups

log = logging.getLogger(__name__)


def container_changed(container_id: str, state: str, exit_code: int = 0, removed: bool = False) -> None:
    event = {"type": "container.changed", "id": container_id, "state": state,
             "exit_code": exit_code, "removed": removed}
    try:
        async_to_sync(_send)([groups.container_group(container_id), groups.CONTAINERS], event)
    except Exception:
        # The row holds the truth already; a page that missed this reloads it.
        log.exception("could not publish %s of container %s", state, container_id)


def network_changed(network_id: str, action: str, container_id: str = "") -> None:
    event = {"type": "network.changed", "id": network_id, "action": action, "container": container_id}
    try:
        async_to_sync(_send)([groups.NETWORKS], event)
    except Exception:
        log.exception("could not publish %s of network %s", action, network_id)


async def _send(group_names: list[str], event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for name in group_names:  # one event loop, one connection for both groups
        await layer.group_send(name, event)
