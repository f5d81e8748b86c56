"""Who may change what: the roles of the console's users.

A user's role is the highest of the Berth groups they belong to; a
superuser is an admin; anyone else (no group) is a viewer, so a new account
can look but not touch until an admin says otherwise. The check is made in
``operations.operation``, the block every changing service runs in, so the
pages, the websockets and the services all obey it, and a refusal leaves an
audit row like any other outcome.

What each role may do is the table ``MINIMUM_ROLE`` below, plus what a
container's create asks for (``check_create``): an operator runs containers
but not with the host's files, the host's network or extra capabilities.

The Docker API socket is root-equivalent (as Docker's is): its calls carry
no user and are not limited here; access to it is by file permission. The
audit log still says who it was (the peer's uid and pid).
"""

from __future__ import annotations

from .errors import Forbidden

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = [VIEWER, OPERATOR, ADMIN]
GROUP_OF = {role: f"berth-{role}" for role in ROLES}
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# action -> the least role that may do it. Viewers change nothing; an action not named here
# (every "network.*", "image.*", "user.*" among them) is for admins only.
MINIMUM_ROLE = {
    "container.create": OPERATOR,    # and check_create: no bind mounts, host network or capabilities
    "container.start": OPERATOR,
    "container.stop": OPERATOR,
    "container.restart": OPERATOR,
    "container.kill": OPERATOR,
    "container.pause": OPERATOR,
    "container.unpause": OPERATOR,
    "container.remove": OPERATOR,
    "container.rename": OPERATOR,
    "container.exec": OPERATOR,      # the console's shell and the API's exec
    "volume.create": OPERATOR,
    "volume.remove": OPERATOR,
}

# What only an admin may ask of a container at create.
HOST_PATHS = "bind-mount host paths"
HOST_NETWORK = "use the host's network"
CAPABILITIES = "add capabilities"


class PermissionDenied(Forbidden):
    """The user's role does not allow the action."""


def role_of(user) -> str | None:
    """The user's role; None for nobody in particular (the API socket, the system)."""
    if user is None:
        return None
    if not user.is_authenticated:
        return VIEWER  # an anonymous visitor that reached a service by mistake changes nothing either
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in reversed(ROLES):
        if GROUP_OF[role] in names:
            return role
    return VIEWER


def can_change(user) -> bool:
    """Whether the pages should offer the user actions at all (the services decide each one)."""
    role = role_of(user)
    return role is None or role != VIEWER


def minimum_role(action: str) -> str:
    return MINIMUM_ROLE.get(action, ADMIN)


def allows(user, action: str) -> bool:
    role = role_of(user)
    return role is None or _RANK[role] >= _RANK[minimum_role(action)]


def check(user, action: str) -> None:
    """Raise PermissionDenied if ``user`` may not do ``action`` ("container.start", ...)."""
    if not allows(user, action):
        raise PermissionDenied(f"permission denied: {_name(user)} is {_article(role_of(user))} and cannot {action}")


def check_create(user, host_config: dict, mounts, network_mode: str, find_container) -> None:
    """Raise PermissionDenied if ``user`` may not create a container with this plan.

    ``mounts`` are ``volume_services.plan_mounts``'s plans (binds from Binds,
    Mounts and VolumesFrom alike); ``network_mode`` is the plan's
    (``container:<id>`` for a shared namespace, whose owner's mode counts).
    """
    if role_of(user) in (None, ADMIN):
        return
    asked = []
    if any(mount.type == "bind" for mount in mounts):
        asked.append(HOST_PATHS)
    if _uses_host_network(network_mode, find_container):
        asked.append(HOST_NETWORK)
    if host_config.get("CapAdd"):
        asked.append(CAPABILITIES)
    if asked:
        raise PermissionDenied(f"permission denied: {_name(user)} is {_article(role_of(user))} "
                               f"and cannot {' or '.join(asked)}; only an admin can")


def _uses_host_network(network_mode: str, find_container) -> bool:
    if network_mode == "host":
        return True
    if network_mode.startswith("container:"):
        # Joining a host-mode container's namespace is joining the host's.
        owner = find_container(network_mode.split(":", 1)[1])
        return owner.host_config.get("NetworkMode") == "host"
    return False


def _name(user) -> str:
    return user.get_username() or "an anonymous visitor"


def _article(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def grant(user, role: str) -> None:
    """Put ``user`` in exactly one Berth role group.

    An admin also gets the Django admin (staff and superuser); anyone else
    loses it, so a demoted superuser is demoted for real.
    """
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    user.groups.remove(*Group.objects.filter(name__in=GROUP_OF.values()))
    group, _ = Group.objects.get_or_create(name=GROUP_OF[role])
    user.groups.add(group)
    user.is_staff = user.is_superuser = role == ADMIN
    user.save(update_fields=["is_staff", "is_superuser"])
