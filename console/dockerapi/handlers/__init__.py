"""The endpoints, one small async function each, grouped by what they act on.

Every handler is ``async def handler(api, request) -> Response | None``;
``routes()`` lists them for the router.
"""
