"""The networks every host has from the start: bridge, host and none (Docker's three)."""

import secrets

from django.db import migrations

PREDEFINED = [
    # The default bridge's subnet is chosen by the networking issue (one that overlaps no route).
    {"name": "bridge", "driver": "bridge", "bridge_name": "berth0",
     "options": {"com.docker.network.bridge.default_bridge": "true",
                 "com.docker.network.bridge.name": "berth0"}},
    {"name": "host", "driver": "host"},
    {"name": "none", "driver": "null"},
]


def create_networks(apps, schema_editor):
    Network = apps.get_model("console", "Network")
    for network in PREDEFINED:
        fields = dict(network)
        name = fields.pop("name")
        if not Network.objects.filter(name=name).exists():
            Network.objects.create(id=secrets.token_hex(32), name=name, predefined=True, **fields)


def remove_networks(apps, schema_editor):
    Network = apps.get_model("console", "Network")
    Network.objects.filter(predefined=True, name__in=[n["name"] for n in PREDEFINED]).delete()


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]
    operations = [migrations.RunPython(create_networks, remove_networks)]
