"""The logs pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
