"""Publishing what changed to every open page and API waiter (Channels groups over Redis).

Event ``container.changed``: {"type": "container.changed", "id": ..., "state": ...,
"exit_code": ..., "removed": bool}. Sent to the container's own group and to
the list group; consumers render, the API's ``wait`` reads state and removed.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import groups


def container_changed(container_id: str, state: str, exit_code: int = 0, removed: bool = False) -> None:
    event = {"type": "container.changed", "id": container_id, "state": state,
             "exit_code": exit_code, "removed": removed}
    layer = get_channel_layer()
    send = async_to_sync(layer.group_send)
    send(groups.container_group(container_id), event)
    send(groups.CONTAINERS, event)
