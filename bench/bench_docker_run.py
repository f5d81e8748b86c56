"""`docker run --rm busybox true` through Berth's socket, against Docker's when a daemon is at hand.

The same docker CLI drives both, alternating run by run, and the whole CLI
process is timed (what a user waits for). Berth must be running
(`scripts/setup`); its socket is BERTH_DOCKER_SOCKET or /run/berth/docker.sock.
Docker is the yardstick, never a dependency: when Debian's `docker.io` is
installed, this starts its own dockerd on a socket and data root of its own
(no bridge, no iptables changes), imports the same busybox layer Berth uses,
and stops that dockerd by its PID at the end.

    .venv/bin/python -m bench.bench_docker_run [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

from runtime.baseimage import busybox_layer
from runtime.mounts import mount_points, unmount

DOCKER_CLI = shutil.which("docker") or "/usr/local/bin/docker"
TARGET_RATIO = 0.25


def timed_run(socket_path: str) -> float:
    env = dict(os.environ, DOCKER_HOST=f"unix://{socket_path}")
    began = time.perf_counter()
    subprocess.run([DOCKER_CLI, "run", "--rm", "busybox", "true"], env=env, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


class Dockerd:
    """A throwaway Docker daemon of this benchmark's own."""

    def __init__(self):
        self.root = Path("/tmp") / f"berth-bench-dockerd-{secrets.token_hex(4)}"
        self.socket = str(self.root / "docker.sock")
        self.process = None

    def start(self) -> None:
        self.root.mkdir(mode=0o700)
        log = open(self.root / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", f"unix://{self.socket}",
             "--bridge", "none", "--iptables=false", "--ip-masq=false", "--storage-driver", "overlay2"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dockerd did not start; see {self.root / 'dockerd.log'}")
            time.sleep(0.2)
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        subprocess.run([DOCKER_CLI, "import", "--change", 'CMD ["sh"]', "-", "busybox:latest"],
                       input=busybox_layer(), env=env, check=True, stdout=subprocess.DEVNULL)

    def _answers(self) -> bool:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        return subprocess.run([DOCKER_CLI, "version"], env=env, capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for point in sorted(mount_points(self.root), reverse=True):
            unmount(point)
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    berth_socket = os.environ.get("BERTH_DOCKER_SOCKET", "/run/berth/docker.sock")
    dockerd = Dockerd() if shutil.which("dockerd") else None
    berth, docker = [], []
    try:
        if dockerd:
            dockerd.start()
        timed_run(berth_socket)  # warm both: first runs pay for cold caches
        if dockerd:
            timed_run(dockerd.socket)
        for _ in range(options.runs):
            berth.append(timed_run(berth_socket))
            if dockerd:
                docker.append(timed_run(dockerd.socket))
    finally:
        if dockerd:
            dockerd.stop()
    result = {"runs": options.runs, "berth_median_s": statistics.median(berth)}
    print(f"docker run --rm busybox true, median of {options.runs}")
    print(f"  Berth   {result['berth_median_s']:.3f} s")
    if docker:
        result["docker_median_s"] = statistics.median(docker)
        result["ratio_berth_to_docker"] = result["berth_median_s"] / result["docker_median_s"]
        print(f"  Docker  {result['docker_median_s']:.3f} s")
        print(f"  ratio   {result['ratio_berth_to_docker']:.2f}  (target <= {TARGET_RATIO})")
    else:
        print("  Docker  not measured: no dockerd here (apt-get install docker.io to add the yardstick)")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "docker_run.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
