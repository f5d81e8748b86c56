"""A start that hands in the network the networking layer prepared (NetworkSpec, resolvers)."""

import os

import pytest

from runtime import NETWORK_HOST, NetworkSpec
from runtime.errors import InvalidValue, StartFailed


def test_a_namespace_made_after_create_is_joined_at_start_with_its_addresses_and_resolvers(engine, run, netns):
    planned = NetworkSpec(mode="netns", netns_path=netns + "-not-yet")
    container = run("sleep", "1000", start=False, network=planned)
    engine.start(container.id, network=NetworkSpec(mode="netns", netns_path=netns, addresses=["10.9.0.2"]),
                 dns=["10.9.0.1"])
    started = engine.get(container.id)
    assert os.stat(f"/proc/{started.state.pid}/ns/net").st_ino == os.stat(netns).st_ino
    directory = engine.state.container_dir(container.id)
    assert f"10.9.0.2\t{container.id[:12]}" in (directory / "hosts").read_text()
    assert (directory / "resolv.conf").read_text().startswith("nameserver 10.9.0.1\n")
    assert started.spec.network.netns_path == netns and started.spec.dns == ["10.9.0.1"]


def test_a_missing_namespace_fails_the_start_and_leaves_the_container_created(engine, run, netns):
    container = run("true", start=False, network=NetworkSpec(mode="netns", netns_path=netns + "-gone"))
    with pytest.raises(StartFailed, match="does not exist"):
        engine.start(container.id)
    failed = engine.get(container.id)
    assert (failed.state.status, failed.state.exit_code) == ("created", 128)
    assert "does not exist" in failed.state.error


def test_a_container_does_not_move_into_the_hosts_network_at_start(engine, run):
    container = run("true", start=False)
    with pytest.raises(InvalidValue):
        engine.start(container.id, network=NetworkSpec(mode=NETWORK_HOST))


def test_a_failure_before_pid_1_is_recorded_as_dockers_start_failure(engine, run):
    container = run("true", start=False)
    engine.record_failed_start(container.id, StartFailed("failed to set up container networking: x", 128))
    failed = engine.get(container.id)
    assert (failed.state.status, failed.state.exit_code, failed.state.error) == (
        "created", 128, "failed to set up container networking: x")
