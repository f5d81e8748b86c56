"""Legacy links (``--link NAME[:ALIAS]``): /etc/hosts lines and environment variables.

``HostConfig.Links`` is stored as inspect shows it, ``/target:/name/alias``;
what the client sent (``target[:alias]``) is read too. A target keeps its
address from create to remove, so what is computed at create stays true::

    [web 10.0.0.3] <-- --link web:db --  [app]   /etc/hosts: 10.0.0.3 db
                                                 env: DB_NAME=/app/db DB_PORT_80_TCP_ADDR=10.0.0.3 ...
"""

from __future__ import annotations

import re

from runtime.errors import NoSuchContainer

from .models import Container

SKIPPED_ENV = ("HOME", "PATH", "HOSTNAME")


def parse(link: str) -> tuple[str, str]:
    """``target[:alias]`` or ``/target:/name/alias`` -> (target, alias)."""
    target, _, alias = link.partition(":")
    target = target.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else target
    if not target or not alias:
        from .docker_config import invalid

        raise invalid(f"invalid link format: {link}", "links")
    return target, alias


def check(links: list[str] | None, find_container) -> list[tuple[Container, str]]:
    """Every target must exist (Docker resolves them at create)."""
    found = []
    for link in links or []:
        target, alias = parse(link)
        try:
            found.append((find_container(target), alias))
        except NoSuchContainer:
            raise NoSuchContainer(target) from None
    return found


def normalised(container: Container, targets: list[tuple[Container, str]]) -> list[str] | None:
    if not targets:
        return None
    return [f"/{target.name}:/{container.name}/{alias}" for target, alias in targets]


def _targets(container) -> list[tuple[Container, str]]:
    found = []
    for link in (container.host_config or {}).get("Links") or []:
        target, alias = parse(link)
        row = Container.objects.filter(name=target).first() or Container.objects.filter(pk=target).first()
        if row is not None:
            found.append((row, alias))
    return found


def check_running(container, is_running) -> None:
    """At start, as moby: every target must be running (``is_running(container_id)``)."""
    from .errors import NetworkingFailed

    for target, alias in _targets(container):
        if not is_running(target.id):
            raise NetworkingFailed(f"Cannot link to a non running container: /{target.name} AS /{container.name}/{alias}")


def _address(target: Container) -> str:
    endpoint = target.endpoints.exclude(ip_address=None).order_by("id").first()
    return endpoint.ip_address if endpoint is not None else ""


def link_hosts(container) -> list[str]:
    """``name:ip`` lines for the alias, the target's name and its hostname."""
    if container.pk is None:
        return []
    lines = []
    for target, alias in _targets(container):
        address = _address(target)
        if not address:
            continue
        for name in dict.fromkeys([alias, target.name, (target.config or {}).get("Hostname") or target.id[:12]]):
            lines.append(f"{name}:{address}")
    return lines


def _prefix(alias: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", alias).upper()


def link_env(container) -> list[str]:
    """Docker's link variables: ``ALIAS_NAME``, ``ALIAS_PORT[_80_TCP[_ADDR|_PORT|_PROTO]]``, ``ALIAS_ENV_*``."""
    if container.pk is None:
        return []
    env = []
    for target, alias in _targets(container):
        prefix, address = _prefix(alias), _address(target)
        env.append(f"{prefix}_NAME=/{container.name}/{alias}")
        ports = sorted((target.config or {}).get("ExposedPorts") or {},
                       key=lambda p: (int(p.partition("/")[0]), p.partition("/")[2]))
        if address:
            for index, port in enumerate(ports):
                number, _, protocol = port.partition("/")
                protocol = protocol or "tcp"
                key = f"{prefix}_PORT_{number}_{protocol.upper()}"
                if index == 0:
                    env.append(f"{prefix}_PORT={protocol}://{address}:{number}")
                env += [f"{key}={protocol}://{address}:{number}", f"{key}_ADDR={address}",
                        f"{key}_PORT={number}", f"{key}_PROTO={protocol}"]
        for entry in (target.config or {}).get("Env") or []:
            name, _, value = entry.partition("=")
            if name not in SKIPPED_ENV:
                env.append(f"{prefix}_ENV_{name}={value}")
    return env
