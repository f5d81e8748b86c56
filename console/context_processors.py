from . import roles


def user_role(request) -> dict:
    """``role`` and ``can_change`` for every page: whether to offer actions at all (services decide each)."""
    user = getattr(request, "user", None)
    return {"role": roles.role_of(user), "can_change": roles.can_change(user)}
