"""The shell scripts scripts/start relies on, run for real."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.helpers.waiting import wait_until


ROOT = Path(__file__).resolve().parents[1]


def test_supervise_starts_a_command_that_ended_again_and_stops_it_with_itself(tmp_path):
    runs = tmp_path / "runs"
    # Each run notes its pid, then waits; the first one ends by itself, as a crashed worker would.
    script = f'echo $$ >> {runs}; [ "$(wc -l < {runs})" -gt 1 ] && exec sleep 1000; exit 3'
    supervisor = subprocess.Popen([ROOT / "scripts" / "supervise", "sh", "-c", script],
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = wait_until(lambda: runs.exists() and runs.read_text().split()[1:2], 10, "no second run")
        second = int(pids[0])
        os.kill(supervisor.pid, signal.SIGTERM)
        assert supervisor.wait(10) == 0
        assert "ended with status 3; starting it again" in supervisor.stderr.read()
        wait_until(lambda: not Path(f"/proc/{second}").exists(), 10, "the command outlived its supervisor")
        assert len(runs.read_text().split()) == 2
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
