"""The volumes page: named and anonymous volumes, which containers mount each, create and remove."""

from functools import partial

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from runtime.errors import BerthError, InvalidValue

from .. import roles, volume_services
from ..models import Mount, Volume
from . import common


class VolumeForm(forms.Form):
    name = forms.CharField(required=False, help_text="empty: a random name, as docker volume create")
    labels = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "key=value"}),
                             help_text="one key=value per line")

    def clean_labels(self) -> dict:
        # As `docker volume create --label`: "key" alone is a label with an empty value.
        labels = {}
        for line in self.cleaned_data["labels"].splitlines():
            key, _, value = line.strip().partition("=")
            if line.strip() and not key.strip():
                raise forms.ValidationError(f"invalid label {line.strip()!r}: the key is empty")
            if key.strip():
                labels[key.strip()] = value.strip()
        return labels

    def api_body(self) -> dict:
        return {"Name": self.cleaned_data["name"].strip(), "Driver": "local", "Labels": self.cleaned_data["labels"]}


def _volume_rows() -> list[dict]:
    mounts = Prefetch("mounts", queryset=Mount.objects.select_related("container").order_by("container__name"))
    volumes = Volume.objects.prefetch_related(mounts).order_by("name")
    return [{
        "volume": volume,
        # One container may mount a volume at two paths: list it once.
        "containers": list({mount.container.id: mount.container for mount in volume.mounts.all()}.values()),
    } for volume in volumes]


def _render_list(request, form=None, status=200):
    return render(request, "volumes.html", {"rows": _volume_rows(), "form": form or VolumeForm()}, status=status)




@login_required
def volume_list(request):
    return _render_list(request)


@login_required
@require_POST
def volume_create(request):
    if refused := common.refusal(request, "volume.create", partial(_render_list, request),
                                   name=request.POST.get("name", "")):
        return refused
    form = VolumeForm(request.POST)
    if form.is_valid():
        try:
            volume = volume_services.create_volume(form.api_body(), user=request.user, source="web")
        except roles.PermissionDenied as error:
            return common.refused(request, error, partial(_render_list, request, form))
        except InvalidValue as error:
            form.add_error("name", str(error))
        except BerthError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Created volume {volume.name}.")
            return redirect("volume-list")
    return _render_list(request, form)


@login_required
@require_POST
def volume_remove(request, name):
    if refused := common.refusal(request, "volume.remove", partial(_render_list, request), name=name):
        return refused
    try:
        volume_services.remove_volume(name, force=request.POST.get("force") == "on", user=request.user, source="web")
    except roles.PermissionDenied as error:
        return common.refused(request, error, partial(_render_list, request))
    except BerthError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Removed volume {name}.")
    return redirect("volume-list")


urlpatterns = [
    path("volumes/", volume_list, name="volume-list"),
    path("volumes/create/", volume_create, name="volume-create"),
    path("volumes/<str:name>/remove/", volume_remove, name="volume-remove"),
]
websocket_urlpatterns = []
