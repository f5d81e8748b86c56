"""Errors of the console's own rules, beside the runtime's (``runtime.errors``).

Both travel from the worker as data (``tasks.error_to_data``) and are raised
again by class name; the Docker API maps Forbidden to 403 and every other
BerthError by its base class.
"""

from runtime.errors import BerthError


class Forbidden(BerthError):
    """Allowed to nobody, whatever the input: removing a predefined network, a network in use..."""


class NetworkingFailed(BerthError):
    """A start whose network could not be set up (a host port taken, say); nothing of it is left.

    Docker answers these with a 500 and leaves the container created, exit code 128.
    """

    exit_code = 128
