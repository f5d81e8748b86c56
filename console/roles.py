"""Who may change what: the roles of the console's users.

A user's role is the highest of the Berth groups they belong to; a
superuser is an admin; anyone else (no group) is a viewer, so a new account
can look but not touch until an admin says otherwise. The check is made in
``operations.operation``, the block every changing service runs in, so the
pages, the websockets and the services all obey it, and a refusal leaves an
audit row like any other outcome.

The Docker API socket is root-equivalent (as Docker's is): its calls carry
no user and are not limited here; access to it is by file permission.
"""

from __future__ import annotations

from .errors import Forbidden

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = [VIEWER, OPERATOR, ADMIN]
GROUP_OF = {role: f"berth-{role}" for role in ROLES}


class PermissionDenied(Forbidden):
    """The user's role does not allow the action."""


def role_of(user) -> str | None:
    """The user's role; None for nobody in particular (the API socket, the system)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
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


def check(user, action: str) -> None:
    """Raise PermissionDenied if ``user`` may not do ``action`` ("container.start", ...)."""
    role = role_of(user)
    if role == VIEWER:
        raise PermissionDenied(f"permission denied: {user.get_username()} is a viewer and cannot {action}")


def grant(user, role: str) -> None:
    """Put ``user`` in exactly one Berth role group."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    user.groups.remove(*Group.objects.filter(name__in=GROUP_OF.values()))
    group, _ = Group.objects.get_or_create(name=GROUP_OF[role])
    user.groups.add(group)
