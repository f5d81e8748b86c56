"""The images pages (to be filled in)."""

urlpatterns = []
websocket_urlpatterns = []
