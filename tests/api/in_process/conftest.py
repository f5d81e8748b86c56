"""API tests over the console's services in this process (fake networking, channels in memory):
the console tests' fixtures, for the tests of this folder only. Not in tests/api/conftest.py,
where the autouse in-memory channel layer would reach the live CLI tests, which need Redis's."""

from tests.console.conftest import (  # noqa: F401 - fixtures of this folder's tests
    busybox,
    fake_network_names,
    host,
    host_state,
    in_memory_channels,
    networking,
    predefined_networks,
)
