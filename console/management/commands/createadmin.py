"""Create the admin user without questions; running it again is harmless.

The password comes from BERTH_ADMIN_PASSWORD, else one is generated and
printed once. An existing user keeps its password unless BERTH_ADMIN_PASSWORD
is set (then it is set to that).
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or update) the Berth admin user non-interactively."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        from_env = os.environ.get("BERTH_ADMIN_PASSWORD") or ""
        user, created = get_user_model().objects.get_or_create(username=username)
        if not created and not from_env:
            self.stdout.write(f"User {username} exists; its password is unchanged.")
            return
        password = from_env or secrets.token_urlsafe(12)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        if from_env:
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} user {username} with the password from BERTH_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Created user {username} with password: {password}")
