"""The console's pages beyond the containers list, one module per area.

Each module holds its views and its ``urlpatterns`` (included by
``console.urls``) and, where it streams, ``websocket_urlpatterns`` (joined by
``console.routing``). Views stay thin: rules live in the services.
"""

AREAS = ["run", "logs", "shell", "stats", "images", "networks", "volumes", "events", "topology", "users"]
