"""Restart policies, as Docker's restart manager decides them: pure functions, no I/O.

``--restart`` is stored in HostConfig.RestartPolicy as ``{"Name", "MaximumRetryCount"}``.
The exit watcher asks ``should_restart`` after each exit of PID 1 and waits
``next_delay`` before starting it again::

    exit --> should_restart? --no--> stays exited
                 | yes
                 v
          "restarting", wait next_delay(previous, uptime) --> start (restart_count + 1)
"""

from __future__ import annotations

NO, ALWAYS, ON_FAILURE, UNLESS_STOPPED = "no", "always", "on-failure", "unless-stopped"
FIRST_DELAY = 0.1   # seconds before the first restart
MAX_DELAY = 60.0    # the back-off doubles up to this
STABLE_UPTIME = 10  # seconds up after which the back-off starts again from FIRST_DELAY


def policy_of(host_config: dict) -> tuple[str, int]:
    """(name, maximum retry count) of a container's HostConfig; ("no", 0) when it names none."""
    policy = host_config.get("RestartPolicy") or {}
    return policy.get("Name") or NO, int(policy.get("MaximumRetryCount") or 0)


def should_restart(policy: tuple[str, int], exit_code: int, restart_count: int, manually_stopped: bool) -> bool:
    """After PID 1 exited: start it again? A stop or kill by the user always wins over the policy."""
    name, maximum = policy
    if manually_stopped:
        return False
    if name in (ALWAYS, UNLESS_STOPPED):
        return True
    if name == ON_FAILURE:
        # MaximumRetryCount 0 means no limit, as in Docker.
        return exit_code != 0 and (maximum == 0 or restart_count < maximum)
    return False


def starts_with_worker(policy: tuple[str, int], manually_stopped: bool) -> bool:
    """When the worker starts: is a stopped container started again? ``always`` even after a manual
    stop (Docker ignores the stop once the daemon restarts); ``unless-stopped`` only without one."""
    name, _ = policy
    return name == ALWAYS or (name == UNLESS_STOPPED and not manually_stopped)


def next_delay(previous_delay: float | None, uptime: float) -> float:
    """Seconds to wait before this restart: 100 ms first, doubling to a minute; back to 100 ms once
    the container stayed up ``STABLE_UPTIME`` seconds (it was healthy, the crash is a new one)."""
    if previous_delay is None or uptime >= STABLE_UPTIME:
        return FIRST_DELAY
    return min(previous_delay * 2, MAX_DELAY)
