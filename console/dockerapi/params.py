"""Query parameters read as moby reads them (``httputils.BoolValue``, ``filters.FromJSON``)."""

from __future__ import annotations

import json

from .errors import bad_request

_FALSE = {"", "0", "no", "false", "none"}


def boolean(value: str | None, default: bool = False) -> bool:
    """"" 0 no false none (any case) are false, anything else true; missing is ``default``."""
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def integer(name: str, value: str | None, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise bad_request(f"invalid value for {name}: {value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise bad_request(f"invalid value for {name}: {number} is below {minimum}")
    if maximum is not None and number > maximum:
        raise bad_request(f"invalid value for {name}: {number} is above {maximum}")
    return number


def filters(value: str | None) -> dict[str, list[str]]:
    """``{"status":["exited"]}`` or the older ``{"status":{"exited":true}}``, as name -> values."""
    if not value:
        return {}
    try:
        raw = json.loads(value)
    except ValueError as error:
        raise bad_request(f"invalid filter: {error}") from None
    if not isinstance(raw, dict):
        raise bad_request("invalid filter: expected a JSON object of name -> values")
    result: dict[str, list[str]] = {}
    for key, values in raw.items():
        if isinstance(values, dict):
            result[key] = [k for k, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            result[key] = list(values)
        elif isinstance(values, str):
            result[key] = [values]
        else:
            raise bad_request(f"invalid filter: values of {key!r} must be strings")
    return result


def check_filter_names(given: dict[str, list[str]], accepted: set[str]) -> None:
    for key in given:
        if key not in accepted:
            raise bad_request(f"invalid filter '{key}'")


_CTRL = {**{chr(c): c - ord("a") + 1 for c in range(ord("a"), ord("z") + 1)},
         "@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def key_sequence(value: str) -> bytes:
    """``ctrl-p,ctrl-q`` as the bytes a terminal sends (moby/term's ToBytes); ValueError for anything else.

    Each comma-separated key is one character, or ``ctrl-`` and one of a-z @ [ \\ ] ^ _.
    """
    codes = bytearray()
    for key in value.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
            continue
        lowered = key.lower()
        if not lowered.startswith("ctrl-") or lowered[5:] not in _CTRL:
            raise ValueError(f"Unknown character: '{key}'")
        codes.append(_CTRL[lowered[5:]])
    return bytes(codes)


def detach_keys(value: str | None, words: str = "detach keys") -> bytes:
    """The detach sequence a client asked for; b"" when none (the default applies). A bad one is a 400."""
    if not value:
        return b""
    try:
        return key_sequence(value)
    except ValueError:
        raise bad_request(f"Invalid {words} ({value}) provided") from None
