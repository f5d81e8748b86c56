"""The volumes pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
