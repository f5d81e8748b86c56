"""What the page areas do alike: answering a change the user's role does not allow.

Not an area: it has no urls. ``page`` is how the area renders itself, given
``status=``; a refusal renders it again, answered 403, with the reason as a
message (``functools.partial`` binds the request and what the page shows).
"""

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpResponse

from .. import operations, roles


def refused(request, error: roles.PermissionDenied, page: Callable[..., HttpResponse]) -> HttpResponse:
    messages.error(request, str(error))
    return page(status=403)


def refusal(request, action: str, page: Callable[..., HttpResponse], *, target=None,
            name: str = "") -> HttpResponse | None:
    """``refused`` (recorded as a failed operation) when the user may not do ``action`` whatever the input; else None.

    Pages ask before they validate, so a viewer is told they may not, not what is wrong with the input.
    """
    try:
        operations.require(request.user, action, "web", target=target, name=name)
    except roles.PermissionDenied as error:
        return refused(request, error, page)
    return None
