"""``python manage.py dockerapi``: the Docker Engine API on a unix socket (BERTH_DOCKER_SOCKET)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from console import dockerapi


class Command(BaseCommand):
    help = "Serve the Docker Engine API (for the docker CLI and docker-py) on a unix socket."

    def add_arguments(self, parser):
        parser.add_argument("--socket", default=None,
                            help=f"socket path (default BERTH_DOCKER_SOCKET, now {settings.BERTH_DOCKER_SOCKET})")
        parser.add_argument("--mode", default="0660", help="permissions of the socket file, octal (default 0660)")

    def handle(self, *args, **options):
        path = options["socket"] or settings.BERTH_DOCKER_SOCKET
        mode = int(options["mode"], 8)
        dockerapi.run(path, mode, ready=lambda: self.stdout.write(f"Docker API listening on unix://{path}", ending="\n")
                      or self.stdout.flush())
