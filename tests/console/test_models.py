"""What the database itself guarantees: predefined networks, unique names."""

import re

import pytest
from django.db import IntegrityError
from django.utils import timezone

from console.models import Container, Network


def test_the_predefined_networks_exist_from_the_start(db):
    networks = {n.name: n for n in Network.objects.filter(predefined=True)}
    assert {name: n.driver for name, n in networks.items()} == {"bridge": "bridge", "host": "host", "none": "null"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", n.id) for n in networks.values())


def test_two_containers_cannot_share_a_name(db):
    Container.objects.create(id="a" * 64, name="web", host="h", image_ref="busybox", created=timezone.now())
    with pytest.raises(IntegrityError):
        Container.objects.create(id="b" * 64, name="web", host="h", image_ref="busybox", created=timezone.now())
