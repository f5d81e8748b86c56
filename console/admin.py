"""The Django admin: users and groups as Django offers them; Berth's own rows to look at only.

Containers, networks and volumes change through the services (which run
the host's tasks and write the audit log), never by editing rows; the audit
log itself cannot be edited from the console at all.
"""

from django.contrib import admin

from .models import Container, Network, Operation, Volume


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and details, without add, change or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ["created", "user", "source", "origin", "action", "target_name", "state"]
    list_filter = ["source", "state", "action"]
    search_fields = ["action", "target_name", "target_id", "origin", "user__username"]
    date_hierarchy = "created"


@admin.register(Container)
class ContainerAdmin(ReadOnlyAdmin):
    list_display = ["name", "short_id", "image_ref", "state", "host", "created"]
    list_filter = ["state", "host"]
    search_fields = ["name", "id", "image_ref"]


@admin.register(Network)
class NetworkAdmin(ReadOnlyAdmin):
    list_display = ["name", "driver", "subnet", "gateway", "bridge_name", "internal"]
    search_fields = ["name", "id"]


@admin.register(Volume)
class VolumeAdmin(ReadOnlyAdmin):
    list_display = ["name", "driver", "host", "anonymous", "created"]
    search_fields = ["name"]
