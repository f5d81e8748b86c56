from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .models import Container


@login_required
def container_list(request):
    containers = Container.objects.select_related("image").prefetch_related("ports")[:500]
    return render(request, "containers.html", {"containers": containers})
