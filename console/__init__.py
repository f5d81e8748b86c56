"""Berth's console: the Django project and app over the runtime."""

from .celery import app as celery_app

__all__ = ["celery_app"]
