"""The shell pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
