import shlex

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from . import services
from .models import Container


def _row(container: Container) -> dict:
    return {
        "container": container,
        "command": shlex.join([container.path, *container.args]) if container.path else "",
        "status": services.describe_status(container),
        "ports": services.describe_ports(container),
    }


@login_required
def container_list(request):
    containers = Container.objects.select_related("image").prefetch_related("ports")[:500]
    return render(request, "containers.html", {"rows": [_row(c) for c in containers]})
