"""The API's OpenAPI description (console/dockerapi/openapi.yaml): served on the socket, and it
describes exactly the routes the server has, no more, no fewer."""

from __future__ import annotations

import re

import yaml

from console.dockerapi.routes import build_router
from console.dockerapi.handlers.description import DESCRIPTION

METHODS = {"get", "put", "post", "delete", "head", "patch", "options"}


def described() -> dict:
    return yaml.safe_load(DESCRIPTION.read_text())


def router_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route, written as OpenAPI writes a path ({name*} is one parameter there)."""
    router = build_router(api=None)
    found = set()
    for method, regex, _ in router.routes:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", regex.pattern.strip("^$"))
        found.add((method, path))
    return found


def description_routes(description: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in description["paths"].items() for method in item
            if method in METHODS}


def references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_route_of_the_server_is_described_and_nothing_else():
    served, written = router_routes(), description_routes(described())
    assert served - written == set(), "routes the description lacks"
    assert written - served == set(), "described routes the server does not have"


def test_the_description_is_openapi_3_with_an_operation_id_and_a_response_for_each():
    description = described()
    assert description["openapi"].startswith("3.") and description["info"]["version"] == "1.45"
    ids = []
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert operation.get("responses"), f"{method} {path} has no responses"
                ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)), "an operationId is used twice"


def test_every_reference_in_the_description_resolves():
    description = described()
    for ref in set(references(description)):
        node = description
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_the_socket_serves_the_description_as_it_is(client):
    connection = client()
    connection.request("GET", "/openapi.yaml")
    status, headers, body = connection.response()
    assert status == 200 and headers["content-type"].startswith("application/yaml")
    assert body == DESCRIPTION.read_bytes()
    connection.request("GET", "/v1.45/openapi.yaml")
    assert connection.response()[2] == body
