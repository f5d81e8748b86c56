"""The networks pages: the list with a create form, a network with its containers, and remove.

The create form is turned into the Docker API's ``POST /networks/create``
body, so the service checks it as the API does and its messages are the
API's; each is shown next to the field it is about::

    name, subnet, gateway, bridge name, internal  ->  {"Name", "IPAM": {"Config": [{"Subnet", "Gateway"}]},
                                                       "Options": {"com.docker.network.bridge.name"}, "Internal"}
"""

from functools import partial

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from runtime.errors import BerthError

from .. import network_services, roles
from ..models import Container, Endpoint, Network
from . import common

IPAM_PREFIX = "invalid network config:\n"
# Which field a problem the service reports is about, by the words moby uses for it.
FIELD_OF_PROBLEM = [
    ("invalid subnet", "subnet"), ("invalid ip-range", "subnet"), ("Pool overlaps", "subnet"),
    ("invalid gateway", "gateway"), ("bridge name", "bridge_name"),
    ("network name", "name"), ("network with name", "name"),
]


class NetworkForm(forms.Form):
    # Nothing is required here: the service says what is missing, in the API's words.
    name = forms.CharField(required=False)
    subnet = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "172.30.0.0/16"}))
    gateway = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "172.30.0.1"}))
    bridge_name = forms.CharField(label="Bridge name", required=False,
                                  widget=forms.TextInput(attrs={"placeholder": "br-<id>"}))
    internal = forms.BooleanField(label="Internal (no outbound traffic)", required=False)

    def clean(self):
        data = super().clean()
        if data.get("gateway", "").strip() and not data.get("subnet", "").strip():
            # The docker CLI's check: the API cannot take a gateway without its subnet.
            self.add_error("gateway", "every ip-range or gateway must have a corresponding subnet")
        return data

    def api_body(self) -> dict:
        data = {key: value.strip() if isinstance(value, str) else value for key, value in self.cleaned_data.items()}
        body = {"Name": data["name"], "Driver": Network.DRIVER_BRIDGE, "Internal": data["internal"]}
        pool = {key: value for key, value in (("Subnet", data["subnet"]), ("Gateway", data["gateway"])) if value}
        if pool:
            body["IPAM"] = {"Driver": "default", "Config": [pool]}
        if data["bridge_name"]:
            body["Options"] = {network_services.BRIDGE_NAME_OPTION: data["bridge_name"]}
        return body


def _get_network(network_id: str) -> Network:
    network = Network.objects.filter(pk=network_id).first()
    if network is None:
        raise Http404("No such network")
    return network


def _containers_without_endpoints(network: Network):
    """Host- and none-mode containers have no endpoint: they belong to the predefined network of their mode."""
    if not network.predefined or network.is_bridge:
        return Container.objects.none()
    return Container.objects.filter(host_config__NetworkMode=network.name)


def _network_rows() -> list[dict]:
    counts = dict(Endpoint.objects.values_list("network").annotate(n=Count("container", distinct=True)))
    return [{
        "network": network,
        "containers": counts.get(network.id, 0) or _containers_without_endpoints(network).count(),
    } for network in network_services.list_networks()]


def _render_list(request, form=None, status=200):
    return render(request, "networks.html", {"rows": _network_rows(), "form": form or NetworkForm()},
                  status=status)


def _render_network(request, network: Network, status=200):
    endpoints = Endpoint.objects.filter(network=network).select_related("container").order_by("container__name")
    return render(request, "network.html", {
        "network": network, "endpoints": endpoints,
        "shared": _containers_without_endpoints(network).order_by("name"),
    }, status=status)


def _refusal(request, action: str, network: Network | None = None, name: str = ""):
    """The list with the form as posted, or the network's page, refused when the user may not do ``action``."""
    if network is None:
        page = partial(_render_list, request, NetworkForm(request.POST))
    else:
        page = partial(_render_network, request, network)
    return common.refusal(request, action, page, target=network, name=name)


def add_service_errors(form: NetworkForm, error: BerthError) -> None:
    """The service's message, split into its problems, each next to the field it names."""
    message = str(error)
    problems = message.removeprefix(IPAM_PREFIX).split("\n") if message.startswith(IPAM_PREFIX) else [message]
    for problem in problems:
        problem = problem.strip().removeprefix("* ")
        if problem:
            field = next((name for words, name in FIELD_OF_PROBLEM if words in problem), None)
            form.add_error(field, problem)


@login_required
def network_list(request):
    return _render_list(request)


@login_required
@require_POST
def network_create(request):
    if refused := _refusal(request, "network.create", name=request.POST.get("name", "")):
        return refused
    form = NetworkForm(request.POST)
    if form.is_valid():
        try:
            network = network_services.create_network(form.api_body(), user=request.user, source="web")
        except roles.PermissionDenied as error:
            return common.refused(request, error, partial(_render_list, request, form))
        except BerthError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created network {network.name} ({network.subnet}).")
            return redirect("network-detail", network.id)
    return _render_list(request, form)


@login_required
def network_detail(request, network_id):
    return _render_network(request, _get_network(network_id))


@login_required
@require_POST
def network_remove(request, network_id):
    network = _get_network(network_id)
    if refused := _refusal(request, "network.remove", network):
        return refused
    try:
        network_services.remove_network(network.id, user=request.user, source="web")
    except roles.PermissionDenied as error:
        return common.refused(request, error, partial(_render_network, request, network))
    except BerthError as error:
        messages.error(request, str(error))
        return redirect("network-detail", network.id)
    messages.success(request, f"Removed network {network.name}.")
    return redirect("network-list")


urlpatterns = [
    path("networks/", network_list, name="network-list"),
    path("networks/create/", network_create, name="network-create"),
    path("networks/<str:network_id>/", network_detail, name="network-detail"),
    path("networks/<str:network_id>/remove/", network_remove, name="network-remove"),
]
websocket_urlpatterns = []
