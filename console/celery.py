"""The Celery app: one queue per host (``host.<name>``), the worker there the only caller of runtime/."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("berth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["console"])


def host_queue(host: str) -> str:
    return f"host.{host}"
