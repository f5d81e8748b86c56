"""Signals as Docker accepts them: "SIGTERM", "TERM", "term" or a number."""

from __future__ import annotations

import signal

from .errors import InvalidValue


def parse_signal(value: str | int) -> int:
    text = str(value).strip()
    if text.isdigit():
        if 0 < int(text) < signal.NSIG:
            return int(text)
        raise InvalidValue("signal", f"{text} is not a valid signal number")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidValue("signal", f"invalid signal: {value}") from None
