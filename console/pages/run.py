"""The run pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
