from . import roles


def user_role(request) -> dict:
    """``role``, ``can_change`` and ``is_admin`` for every page: which actions to offer (the services decide each)."""
    user = getattr(request, "user", None)
    role = roles.role_of(user)
    return {"role": role, "can_change": roles.can_change(user), "is_admin": role == roles.ADMIN,
            "page_host": host_name(request.get_host())}


def host_name(host: str) -> str:
    """The name or address in a Host header, without its port: where published ports are reached."""
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
