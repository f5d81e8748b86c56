"""The networks pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
