"""The web process: pages over HTTP (Django) and websockets (Channels), one ASGI app for daphne.

/static/ (the vendored htmx and its ws extension) is served by this same app through
staticfiles' ASGI handler, from the app directories and STATICFILES_DIRS: no collectstatic
and no second server needed. A busy deployment may put a web server in front for /static/.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_application = get_asgi_application()  # sets Django up before the consumers import models

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from .audit import WebsocketOrigin  # noqa: E402
from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    "http": ASGIStaticFilesHandler(django_application),
    # WebsocketOrigin: a consumer's changes (the shell) are audited with the client's address.
    "websocket": AllowedHostsOriginValidator(WebsocketOrigin(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
})
