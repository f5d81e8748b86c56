import importlib

from django.urls import path

from . import consumers
from .pages import AREAS as PAGE_AREAS

websocket_urlpatterns = [
    path("ws/containers/", consumers.ContainerListConsumer.as_asgi()),
    path("ws/containers/<str:container_id>/", consumers.ContainerConsumer.as_asgi()),
    *[pattern for area in PAGE_AREAS
      for pattern in importlib.import_module(f"console.pages.{area}").websocket_urlpatterns],
]
