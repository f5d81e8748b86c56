"""Durations and container states in the words ``docker ps`` uses; shared by the API and the pages."""

from __future__ import annotations

from datetime import datetime, timezone


def human_duration(seconds: float) -> str:
    """The wording of Docker's ``units.HumanDuration``: "Less than a second", "5 seconds", "About an hour"."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def container_status(state: str, exit_code: int, started_at: datetime | None, finished_at: datetime | None,
                     now: datetime | None = None) -> str:
    """The STATUS column of ``docker ps``: "Up 5 seconds", "Exited (0) 3 seconds ago", "Created"."""
    now = now or datetime.now(timezone.utc)
    if state in ("running", "paused"):
        up = "Up " + human_duration((now - started_at).total_seconds() if started_at else 0)
        return up + " (Paused)" if state == "paused" else up
    if state == "restarting":
        since = human_duration((now - finished_at).total_seconds()) if finished_at else "Less than a second"
        return f"Restarting ({exit_code}) {since} ago"
    if state == "removing":
        return "Removal In Progress"
    if state == "dead":
        return "Dead"
    if started_at is None:
        return "Created"
    if finished_at is None:
        return ""
    return f"Exited ({exit_code}) {human_duration((now - finished_at).total_seconds())} ago"
