"""Errors as the Docker API reports them: an HTTP status and ``{"message": ...}``.

Handlers raise ``HTTPError`` for what they check themselves; the services and
the runtime raise ``runtime.errors`` types, mapped here as moby maps its own
(``api/server/httpstatus``): not found 404, conflict 409, invalid 400.
"""

from __future__ import annotations

import re

from runtime.errors import BerthError, Conflict, DiskFull, InvalidValue, NotFound, StartFailed, is_disk_full

from ..errors import Forbidden


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


def not_found(message: str) -> HTTPError:
    return HTTPError(404, message)


def conflict(message: str) -> HTTPError:
    return HTTPError(409, message)


def not_implemented(what: str) -> HTTPError:
    return HTTPError(501, f"not implemented yet: {what}")


def status_of(error: BaseException) -> tuple[int, str] | None:
    """(status, message) for an error the API knows how to report; None for a bug (500)."""
    if isinstance(error, HTTPError):
        return error.status, error.message
    if isinstance(error, NotFound):
        return 404, str(error)
    if isinstance(error, Forbidden):
        return 403, str(error)
    if isinstance(error, Conflict):
        return 409, str(error)
    if isinstance(error, InvalidValue):
        return 400, _invalid_value_message(error)
    if isinstance(error, StartFailed):
        return 400, start_failure_message(str(error))
    if isinstance(error, BerthError):
        return 500, str(error)
    if is_disk_full(error):  # a write of the API's own (an upload) on a full state root: moby's 500, in words
        return 500, str(DiskFull("cannot write to disk"))
    try:
        from django.core.exceptions import ValidationError
    except ImportError:  # pragma: no cover - Django is always there in the console
        ValidationError = ()
    if ValidationError and isinstance(error, ValidationError):
        return 400, "; ".join(error.messages)
    return None


def _invalid_value_message(error: InvalidValue) -> str:
    """The reason alone when it already names the field (Docker's own wording), else "invalid field: reason"."""
    reason = getattr(error, "reason", "")
    field = getattr(error, "field", "")
    if reason and field and field.lower() in reason.lower():
        return reason
    return str(error)


_LOGRUS = re.compile(r'level=error msg="((?:[^"\\]|\\.)*)"')


def start_failure_message(text: str) -> str:
    """A start failure as moby words it; the CLI maps "executable file not found" to exit 127
    and "permission denied" to 126 from this text."""
    match = _LOGRUS.search(text)
    inner = match.group(1).replace('\\"', '"').replace("\\\\", "\\") if match else text.strip()
    if inner.startswith("OCI runtime"):
        return inner
    return f"OCI runtime create failed: {inner}: unknown"