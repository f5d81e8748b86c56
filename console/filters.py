"""Docker's list filters, the two matching rules every list shares."""

from __future__ import annotations

import re


def name_matches(pattern: str, text: str) -> bool:
    """Docker matches name and id filters as regular expressions; a bad one as plain text."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def labels_match(wanted: list[str], labels: dict) -> bool:
    """Every ``key`` or ``key=value`` in ``wanted`` holds for ``labels``."""
    return all(k in labels and (not sep or labels[k] == v) for k, sep, v in (w.partition("=") for w in wanted))
