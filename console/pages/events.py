"""The events pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
