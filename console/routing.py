from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/containers/", consumers.ContainerListConsumer.as_asgi()),
    path("ws/containers/<str:container_id>/", consumers.ContainerConsumer.as_asgi()),
]
