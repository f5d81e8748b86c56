"""The few runc commands Berth needs, each one process.

runc keeps its state under its own ``--root`` inside the state root, so
Berth's containers never mix with another runc user's on the same host.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .errors import BerthError

RUNC = "/usr/sbin/runc"


class RuncError(BerthError):
    pass


class Runc:
    def __init__(self, root: Path, binary: str = RUNC):
        self.root = Path(root)
        self.binary = binary

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), capture_output=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise RuncError(message(done.stderr) or f"runc {args[0]} failed with {done.returncode}")
        return done

    def exists(self, container_id: str) -> bool:
        return (self.root / container_id / "state.json").exists()

    def start(self, container_id: str) -> None:
        self.run("start", container_id)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        self.run("kill", *(["--all"] if all_processes else []), container_id, str(signal))

    def pause(self, container_id: str) -> None:
        self.run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self.run("resume", container_id)

    def delete(self, container_id: str) -> None:
        """Forget a container (killing what is left of it); gone already is fine."""
        if self.exists(container_id):
            done = self.run("delete", "--force", container_id, check=False)
            if done.returncode != 0 and self.exists(container_id):
                raise RuncError(message(done.stderr))

    def state(self, container_id: str) -> dict | None:
        done = self.run("state", container_id, check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())


def message(stderr: bytes) -> str:
    """runc logs JSON or logfmt lines; keep the human part of the last one."""
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    try:
        return json.loads(last).get("msg", last)
    except ValueError:
        marker = 'msg="'
        if marker in last:
            return last.split(marker, 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
        return last
