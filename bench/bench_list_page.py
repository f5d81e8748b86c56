"""Server time of the containers list with 2,000 containers on record.

The list is paginated (newest first, 50 a page), so its cost should not grow
with the number of containers. This renders the page through Django's whole
stack (middleware, session, queries, templates) in this process, against a
SQLite file of its own with 50 and then 2,000 containers (each with a
published port and an endpoint on a network), and reports the medians and
their ratio; the target is 300 ms at 2,000.

No runtime, no worker: only rows, and a Redis of its own (the page reads the latest resource
samples from it, as in production). Run:  .venv/bin/python -m bench.bench_list_page [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from .common import RESULTS, exclusive

LEVELS = (50, 2000)


def start_redis(directory: Path) -> subprocess.Popen:
    """A Redis of this benchmark's own on a free port, its URL in REDIS_URL."""
    from .bench_log_latency import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    return process


def configure(directory: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'bench.sqlite3'}"
    os.environ["BERTH_ROOT"] = str(directory)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(total: int) -> None:
    """Containers up to ``total``, each with a port and an endpoint, in bulk."""
    from django.utils import timezone

    from console.models import Container, Endpoint, Network, PortMapping

    network, _ = Network.objects.get_or_create(id="b" * 64, defaults={
        "name": "bench", "subnet": "10.200.0.0/16", "gateway": "10.200.0.1"})
    have = Container.objects.count()
    start = timezone.now() - timedelta(days=1)
    rows = [Container(id=f"{n:064x}", name=f"bench-{n}", host="bench", image_ref="busybox", state="running",
                      path="httpd", args=["-f"], created=start + timedelta(seconds=n),
                      started_at=start + timedelta(seconds=n)) for n in range(have, total)]
    Container.objects.bulk_create(rows, batch_size=500)
    PortMapping.objects.bulk_create([PortMapping(container=c, host="bench", host_port=20000 + n, container_port=80)
                                     for n, c in enumerate(rows, have)], batch_size=500)
    Endpoint.objects.bulk_create([Endpoint(container=c, network=network, endpoint_id=f"{n:064x}",
                                           ip_address=f"10.200.{n // 250}.{n % 250 + 2}", prefix_length=16)
                                  for n, c in enumerate(rows, have)], batch_size=500)


def time_page(client, path: str, runs: int) -> float:
    times = []
    for _ in range(runs + 1):
        began = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
    return statistics.median(times[1:])  # the first warms the template cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with exclusive():
        results = measure(args.runs)
    print(f"{'page':<12} " + " ".join(f"{level:>10}" for level in LEVELS) + "   ratio")
    for page in results[LEVELS[0]]:
        values = [results[level][page] for level in LEVELS]
        print(f"{page:<12} " + " ".join(f"{v * 1000:>8.1f}ms" for v in values) + f"   {values[-1] / values[0]:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "list_page.json").write_text(json.dumps(
        {str(level): {k: round(v * 1000, 2) for k, v in r.items()} for level, r in results.items()}, indent=2) + "\n")


def measure(runs: int) -> dict:
    """Seconds (median) of each page at each level of containers on record."""
    directory = Path(tempfile.mkdtemp(prefix="berth-bench-list-"))
    redis = None
    try:
        redis = start_redis(directory)
        configure(directory)
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(get_user_model().objects.create_superuser("bench", password="bench-pass"))
        results = {}
        for level in LEVELS:
            fill(level)
            results[level] = {"first page": time_page(client, "/", runs),
                              "name filter": time_page(client, "/?name=bench-1", runs),
                              "last page": time_page(client, f"/?page={level // 50}", runs)}
        return results
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
