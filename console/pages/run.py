"""The run page: ``docker run -d`` as a form.

A valid form becomes Docker's create body (``console.run_form``), created and
started through the same services as the API; the new container's page opens.
A refusal comes back next to the field it is about, in the API's words. A
start that fails leaves the container created, as Docker does (an
``--rm`` one is removed by the start service).
"""

from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_http_methods

from runtime.errors import BerthError

from .. import network_services, roles, run_form, services
from ..models import Container
from . import common

DEFAULT_PORT_ROWS = 3


def _choices() -> dict:
    return {
        "images": services.list_images(),
        "networks": network_services.list_networks(),
        "containers": Container.objects.order_by("name").only("name"),
    }


def _port_rows(request) -> int:
    try:
        return int(request.GET.get("ports", DEFAULT_PORT_ROWS))
    except ValueError:
        return DEFAULT_PORT_ROWS


def _page(request, form, ports, status=200, created=None):
    return render(request, "run.html", {
        "form": form, "ports": ports, "next_port_index": ports.total_form_count(), "created": created,
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def run_container(request):
    if request.method == "GET":
        ports = run_form.port_formset(_port_rows(request))(prefix="ports")
        return _page(request, run_form.RunForm(**_choices()), ports)
    form = run_form.RunForm(request.POST, **_choices())
    ports = run_form.port_formset(0)(request.POST, prefix="ports")
    if refused := common.refusal(request, "container.create", partial(_page, request, form, ports),
                                 name=request.POST.get("name", "")):
        return refused
    if not (form.is_valid() and ports.is_valid()):
        return _page(request, form, ports)
    return _create_and_start(request, form, ports)


def _create_and_start(request, form, ports):
    """``docker run -d``: create, then start; a refusal of either goes next to its field."""
    body = run_form.create_body(form.cleaned_data, ports.port_bindings())
    try:
        container = services.create_container(body, name=form.cleaned_data["name"] or None, user=request.user,
                                              source="web")
    except roles.PermissionDenied as error:
        return common.refused(request, error, partial(_page, request, form, ports))
    except BerthError as error:
        run_form.place_error(form, ports, error)
        return _page(request, form, ports)
    try:
        services.start_container(container.id, user=request.user, source="web")
    except BerthError as error:
        run_form.place_error(form, ports, error)
        left = Container.objects.filter(pk=container.id).first()  # gone if it was --rm
        return _page(request, form, ports, created=left)
    for warning in getattr(container, "warnings", None) or []:
        messages.warning(request, warning)
    return redirect("container-detail", container_id=container.id)


@login_required
@require_GET
def port_row(request):
    """One more empty port row for htmx (the page's ``?ports=N`` link does the same without JavaScript)."""
    try:
        index = max(0, min(int(request.GET.get("index", "0")), run_form.MAX_PORT_ROWS - 1))
    except ValueError:
        index = 0
    port = run_form.PortForm(prefix=f"ports-{index}", initial={"protocol": "tcp"})
    return render(request, "_run_port_added.html", {"port": port, "next_port_index": index + 1})


urlpatterns = [
    path("run/", run_container, name="container-run"),
    path("run/port-row/", port_row, name="container-run-port-row"),
]
websocket_urlpatterns = []
