"""``/openapi.yaml``: the API's own description (console/dockerapi/openapi.yaml), as the file is."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..server import Response

DESCRIPTION = Path(__file__).resolve().parent.parent / "openapi.yaml"


@lru_cache(maxsize=1)
def _text() -> bytes:
    return DESCRIPTION.read_bytes()


async def openapi(api, request) -> Response:
    return Response(200, _text(), "application/yaml; charset=utf-8")


ROUTES = [("GET", "/openapi.yaml", openapi)]
