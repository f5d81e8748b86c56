"""Networks and volumes as the API reads them, straight from the models (changes go through the services)."""

from __future__ import annotations


class ModelStore:
    def network_by_name(self, name: str):
        from console.models import Network

        return Network.objects.filter(name=name).first()

    def list_networks(self, filters: dict | None = None) -> list:
        from console.network_services import list_networks

        return list_networks(filters)

    def get_network(self, reference: str):
        """By exact id, exact name, or unique id prefix; None when nothing (or several) match."""
        from console.models import Network

        found = Network.objects.filter(id=reference).first() or Network.objects.filter(name=reference).first()
        if found is None and reference:
            candidates = list(Network.objects.filter(id__startswith=reference)[:2])
            found = candidates[0] if len(candidates) == 1 else None
        return found

    def list_volumes(self) -> list:
        from console.models import Volume

        return list(Volume.objects.order_by("name"))

    def get_volume(self, name: str):
        from console.models import Volume

        return Volume.objects.filter(name=name).first()
