"""The layout the Helm chart and compose.yaml describe, run on this machine as separate OS
processes: `bayport migrate` once, then `bayport api --no-migrate`, two `bayport worker`
processes (each its own node name, one pool process each) and `bayport beat --lock`, all in
production mode on a throwaway PostgreSQL database and a Redis DB of their own, each with a
data dir of its own (as each would have its own machine). An import submitted over HTTP runs
end to end on both workers; the health commands the image and the chart's probes run answer
for each role; a second beat waits for the lock and takes over when the first stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet

from cli.client import BayportClient
from cli.stack import free_port
from devstack.sample import populate
from tests.drills import verify_import
from tests.support import register_s3_pair, seed_manifest, wait_until

N = 120  # images, each with a label file
SHARD_SIZE = 6  # -> 20 shards, for two workers to share
MANIFEST = seed_manifest(shard_size=SHARD_SIZE, concurrency=4)
LOCK_TTL = 6  # the beats' lock: renewed every 2 s, a waiting beat polls every 2 s
RECEIVED_SHARD = re.compile(r"Task bayport\.copy_shard job=(\w+) shard=(\d+)\[[\w-]+\] received")

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.timeout(240)]


@dataclass
class Fleet:
    """`bayport` processes started as a deployment would start them, each with its own data
    dir (its "machine") and log file; all stopped at the end."""

    env: dict[str, str]
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env_of(self, name: str) -> dict[str, str]:
        return {**self.env, "BAYPORT_DATA_DIR": str(self.root / name / "data")}

    def log(self, name: str) -> Path:
        return self.root / name / "out.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                env=self.env_of(name),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def run(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A short `bayport` command on `name`'s machine (a health check, the migration)."""
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env={**self.env_of(name), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self, name: str, timeout: float = 30) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def text(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, *names: str) -> None:
        for name in names:
            code = self.procs[name].poll()
            assert code is None, f"{name} exited ({code}):\n{self.text(name)[-3000:]}"


@pytest.fixture
def fleet(
    tmp_path: Path, redis_url: str, postgres_database: str, s3_buckets: dict[str, Any]
) -> Iterator[Fleet]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAYPORT_")},
        "BAYPORT_ENVIRONMENT": "production",
        "BAYPORT_DATABASE_URL": postgres_database,
        "BAYPORT_BROKER_URL": redis_url,
        "BAYPORT_SECRET_KEY": Fernet.generate_key().decode(),
        "BAYPORT_BOOTSTRAP_ACCESS_KEY": "bp_" + uuid.uuid4().hex,
        "BAYPORT_METRICS_TOKEN": "scrape-" + uuid.uuid4().hex,  # production requires it
        "BAYPORT_METRICS_NAMESPACE": f"bayport-test-{uuid.uuid4().hex[:10]}",
        "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS": "127.0.0.1",
        "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
        "BAYPORT_BEAT_REFRESH_SECONDS": "1",
    }
    running = Fleet(env=env, root=tmp_path)
    try:
        yield running
    except BaseException:
        for name in running.procs:
            print(f"---- {name} ----\n{running.text(name)[-4000:]}")
        raise
    finally:
        for name in running.procs:
            running.stop(name)


def test_api_two_workers_and_beat_as_separate_processes(
    fleet: Fleet, s3_buckets: dict[str, Any], postgres_database: str, redis_url: str
) -> None:
    # The migration, once, before the rest (the chart's hook, compose's one-shot service).
    migrated = fleet.run("migrate", "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "up to date" in migrated.stdout

    port = free_port()
    fleet.start("api", "api", "--host", "127.0.0.1", "--port", str(port), "--no-migrate")
    for name in ("worker-1", "worker-2"):
        fleet.start(name, "worker", "--processes", "1", "--name", f"{name}@%h")
    fleet.start("beat-1", "beat", "--lock", "--lock-ttl", str(LOCK_TTL))
    populate(s3_buckets["source"], N, prefix="data/")

    url = f"http://127.0.0.1:{port}"
    wait_until(
        "the API to answer /readyz",
        lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
        timeout=60,
        interval=0.3,
        ignoring=(httpx.HTTPError,),
    )
    assert httpx.get(f"{url}/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
    assert fleet.run("api", "health", "api", "--port", str(port), "--ready").returncode == 0

    # Each worker alive on its own machine: its heartbeat file, and a control ping of its
    # node through the broker. Both up before the import, so both can take shards.
    for name in ("worker-1", "worker-2"):
        wait_until(
            f"{name} to answer `bayport health worker --ping`",
            lambda n=name: (
                fleet.run(n, "health", "worker", "-n", f"{n}@%h", "--ping").returncode == 0
            ),
            timeout=60,
            interval=0.5,
        )
    beats = {n: fleet.root / n / "data" / "health" for n in ("worker-1", "worker-2")}
    touched = {n: _heartbeat(folder).stat().st_mtime for n, folder in beats.items()}
    stranger = fleet.run("worker-1", "health", "worker", "-n", "nobody@%h")
    assert stranger.returncode == 1 and "no heartbeat" in stranger.stdout

    client = BayportClient(url, fleet.env["BAYPORT_BOOTSTRAP_ACCESS_KEY"])
    register_s3_pair(client, s3_buckets)
    job = client.submit(MANIFEST)
    done = wait_until(
        "the import to end",
        lambda: (
            (j := client.job(job["id"]))["state"] in ("succeeded", "failed", "partially_failed")
            and j
        ),
        timeout=90,
        interval=0.3,
    )
    assert done["state"] == "succeeded", done
    assert done["counts"]["copied"] == N and done["counts"]["failed"] == 0
    verdict = verify_import(
        source=s3_buckets["source"],
        data_prefix="data/images/",
        dest=s3_buckets["dest"],
        dest_prefix="default/",
        database_url=postgres_database,
        job_id=job["id"],
    )
    assert verdict.ok and verdict.objects == N, str(verdict)
    # Both worker processes took shards, and every shard was taken once.
    taken = {
        name: [int(n) for j, n in RECEIVED_SHARD.findall(fleet.text(name)) if j == job["id"]]
        for name in ("worker-1", "worker-2")
    }
    assert all(taken.values()), taken
    shards = taken["worker-1"] + taken["worker-2"]
    assert sorted(shards) == list(range(N // SHARD_SIZE)), taken
    fleet.alive("api", "worker-1", "worker-2", "beat-1")

    # Beat holds the lock (its holder names its process) and is alive by its heartbeat.
    lock = redis.Redis.from_url(redis_url)
    key = f"{fleet.env['BAYPORT_METRICS_NAMESPACE']}:beat-lock"
    holder = (lock.get(key) or b"").decode()
    assert holder.split(":")[1] == str(fleet.procs["beat-1"].pid), holder
    assert "beat: holding the beat lock" in fleet.text("beat-1")
    assert fleet.run("beat-1", "health", "beat").returncode == 0

    # A second beat waits (alive, not scheduling) until the first stops, then takes over.
    fleet.start("beat-2", "beat", "--lock", "--lock-ttl", str(LOCK_TTL))
    wait_until(
        "the second beat to wait for the lock",
        lambda: "waiting for the beat lock" in fleet.text("beat-2"),
        timeout=30,
        interval=0.3,
    )
    assert "beat: Starting" not in fleet.text("beat-2")
    assert fleet.run("beat-2", "health", "beat").returncode == 0  # a standby is alive
    assert fleet.stop("beat-1") == 0
    assert (lock.get(key) or b"").decode() != holder  # released on the way out
    wait_until(
        "the second beat to take the lock",
        lambda: "beat: holding the beat lock" in fleet.text("beat-2"),
        timeout=LOCK_TTL * 2,
        interval=0.3,
    )
    taken_by = (lock.get(key) or b"").decode()
    assert taken_by.split(":")[1] == str(fleet.procs["beat-2"].pid), taken_by
    lock.close()

    # The workers' event loops kept touching their heartbeat files (every 5 s).
    for name, folder in beats.items():
        wait_until(
            f"{name}'s heartbeat file to be touched again",
            lambda f=folder, n=name: _heartbeat(f).stat().st_mtime > touched[n],
            timeout=12,
            interval=0.5,
        )

    # Warm shutdown: SIGTERM stops a worker cleanly.
    assert fleet.stop("worker-2") == 0
    fleet.alive("api", "worker-1", "beat-2")


def _heartbeat(folder: Path) -> Path:
    (path,) = folder.glob("worker-*.alive")
    return path
