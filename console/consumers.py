"""Websocket consumers: thin, authorised in connect, one group each."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import groups


class ContainerListConsumer(AsyncJsonWebsocketConsumer):
    """Every change of any container, for the list page: {"id", "state", "exit_code", "removed"}."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        await self.channel_layer.group_add(groups.CONTAINERS, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(groups.CONTAINERS, self.channel_name)

    async def container_changed(self, event):
        await self.send_json({key: event[key] for key in ("id", "state", "exit_code", "removed")})
