"""The console's pages: the containers list and a container's page, and the actions on both.

Every action is a real POST form (the page works without JavaScript); htmx
posts the same forms and swaps the partial it gets back (``_container_row.html``
for the list, ``_container_state.html`` for a container's page). The same
partials are what the websocket consumers push when a container changes.
"""

import json
import shlex

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from runtime.errors import BerthError

from . import logstream, roles, services
from .dockerapi import shapes
from .models import Container

PAGE_SIZE = 50

# action name -> the service that does it; each takes the container's id, user= and source=.
ACTIONS = {
    "start": services.start_container,
    "stop": services.stop_container,
    "restart": services.restart_container,
    "kill": services.kill_container,
    "pause": services.pause_container,
    "unpause": services.unpause_container,
    "remove": services.remove_container,
}


def containers_with_details():
    """Containers with everything a row shows, in a fixed number of queries."""
    return Container.objects.select_related("image").prefetch_related("ports", "endpoints__network")


def container_row(container: Container) -> dict:
    """What ``_container_row.html`` and ``_container_state.html`` show of one container."""
    return {
        "container": container,
        "command": shlex.join([container.path, *container.args]) if container.path else "",
        "status": services.describe_status(container),
        "port_maps": list(container.ports.all()),
        "endpoints": list(container.endpoints.all()),
    }


def _get_container_for_user(request, container_id: str) -> Container:
    container = containers_with_details().filter(pk=container_id).first()
    if container is None:
        raise Http404("No such container")
    return container


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def list_page(containers, state: str, name: str, number):
    """The list's page ``number`` of ``containers``: newest first, filtered by state and by name."""
    containers = containers.order_by("-created")
    if state in dict(Container.STATES):
        containers = containers.filter(state=state)
    if name:
        containers = containers.filter(name__icontains=name)
    return Paginator(containers, PAGE_SIZE).get_page(number)


@login_required
def container_list(request):
    state = request.GET.get("state", "")
    name = request.GET.get("name", "").strip()
    page = list_page(containers_with_details(), state, name, request.GET.get("page"))
    from .pages.stats import with_figures  # here: console.pages.stats imports this module

    return render(request, "containers.html", {
        "rows": with_figures([container_row(c) for c in page]), "page": page, "states": Container.STATES,
        "state": state, "name": name, "actions": list(ACTIONS),
    })


@login_required
def container_detail(request, container_id):
    container = _get_container_for_user(request, container_id)
    inspect = shapes.container_inspect(container, settings.BERTH_ROOT)
    return render(request, "container.html", {
        "row": container_row(container),
        "mounts": list(container.mounts.select_related("volume")),
        "inspect": json.dumps(inspect, indent=2, sort_keys=True, default=str),
        "config": inspect["Config"], "host_config": inspect["HostConfig"],
        "log": logstream.log_context(container.id),
    })


@login_required
@require_POST
def container_action(request, container_id, action):
    container = _get_container_for_user(request, container_id)
    service = ACTIONS.get(action)
    if service is None:
        raise Http404("No such action")
    options = {"force": request.POST.get("force") == "on"} if action == "remove" else {}
    removed = False
    try:
        service(container.id, user=request.user, source="web", **options)
        removed = action == "remove"
    except roles.PermissionDenied as error:
        return _refused(request, error)
    except BerthError as error:
        messages.error(request, f"{action} {container.name}: {error}")
    if not _is_htmx(request):
        return redirect(reverse("container-list") if removed else _next_url(request))
    if removed and request.headers.get("HX-Target", "").startswith("container-state-"):
        response = HttpResponse()
        response["HX-Redirect"] = reverse("container-list")
        return response
    return _action_partial(request, container.id, removed)


@login_required
@require_POST
def container_bulk_action(request):
    """One action on the rows ticked in the list; each container's error is a message of its own."""
    action = request.POST.get("action", "")
    service = ACTIONS.get(action)
    if service is None:
        messages.error(request, "Choose an action for the selected containers.")
        return redirect(_next_url(request))
    ids = request.POST.getlist("ids")
    options = {"force": request.POST.get("force") == "on"} if action == "remove" else {}
    done = 0
    for container in Container.objects.filter(pk__in=ids).order_by("-created"):
        try:
            service(container.id, user=request.user, source="web", **options)
            done += 1
        except roles.PermissionDenied as error:
            return _refused(request, error)
        except BerthError as error:
            messages.error(request, f"{action} {container.name}: {error}")
    if done:
        messages.success(request, f"{action}: {done} container{'s' if done != 1 else ''}.")
    return redirect(_next_url(request))


def _refused(request, error: roles.PermissionDenied) -> HttpResponse:
    """403 with the reason: as a page of its own, or (htmx) as the out-of-band message alone."""
    messages.error(request, str(error))
    if not _is_htmx(request):
        return render(request, "refused.html", status=403)
    # The message swaps in out of band; the row or state it was aimed at stays as it is.
    response = render(request, "_action_response.html", {"row": None}, status=403)
    response["HX-Reswap"] = "none"
    return response


def _action_partial(request, container_id: str, removed: bool):
    """The swapped partial (nothing for a removed row) plus the messages, out of band."""
    container = None if removed else containers_with_details().filter(pk=container_id).first()
    partial = "_container_state.html" if request.headers.get("HX-Target", "").startswith("container-state-") \
        else "_container_row.html"
    return render(request, "_action_response.html", {
        "partial": partial, "row": container_row(container) if container else None,
    })


def _next_url(request) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return reverse("container-list")
