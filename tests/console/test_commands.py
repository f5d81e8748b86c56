"""Management commands: createadmin and syncimages."""

import io

from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from console.models import Image


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createadmin_generates_a_password_and_prints_it_once(db, monkeypatch):
    monkeypatch.delenv("BERTH_ADMIN_PASSWORD", raising=False)
    output = run("createadmin")
    password = output.rsplit("password: ", 1)[1].strip()
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff
    again = run("createadmin")
    assert password not in again and "unchanged" in again
    assert authenticate(username="admin", password=password) is not None


def test_createadmin_takes_the_password_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("BERTH_ADMIN_PASSWORD", "from-env-1")
    output = run("createadmin", "--username", "root")
    assert "from-env-1" not in output
    assert authenticate(username="root", password="from-env-1") is not None
    monkeypatch.setenv("BERTH_ADMIN_PASSWORD", "from-env-2")
    run("createadmin", "--username", "root")
    assert authenticate(username="root", password="from-env-2") is not None
    assert get_user_model().objects.count() == 1


def test_syncimages_puts_the_base_image_on_record(host):
    output = run("syncimages")
    assert "1 image(s)" in output
    assert Image.objects.get().tags.get().name == "busybox:latest"
