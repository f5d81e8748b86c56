"""Make the Image rows match this host's image store (after the set-up built busybox, say)."""

from django.core.management.base import BaseCommand

from console import services
from console.models import Image


class Command(BaseCommand):
    help = "Sync the database's images with the image store of this host (through its worker)."

    def handle(self, *args, **options):
        services.sync_images()
        self.stdout.write(f"{Image.objects.count()} image(s) on record.")
