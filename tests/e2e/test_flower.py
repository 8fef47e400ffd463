"""Flower as the user watches an import with it: a real worker (task events on), a real
`bayport flower` behind basic auth, an import through the API, and then Flower's HTTP API
shows the job's plan and every shard of it, by job id and shard number, with readable
results. And `bayport standalone` serves Flower behind a login it prints once."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from cli.client import BayportClient
from cli.stack import free_port
from devstack.sample import populate
from tests.support import register_s3_pair, seed_manifest, wait_until

N, SHARD = 40, 16  # three shards: 16, 16, 8

MANIFEST = seed_manifest(shard_size=SHARD)


def _corrupt_credentials(database_url: str, config_name: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE storage_config SET credentials_encrypted = :v WHERE name = :n"),
                {"v": b"sealed-with-a-lost-key", "n": config_name},
            )
    finally:
        engine.dispose()


def _result(task: dict[str, Any]) -> str:
    """Flower shows a result as its repr: "'copied 16, skipped 0, failed 0'"."""
    return str(task["result"]).strip("'\"")


def test_flower_shows_each_task_of_a_job_by_job_and_shard(
    stack_factory: Any, s3_buckets: dict[str, Any], tmp_path: Path
) -> None:
    user, password = "watcher", secrets.token_urlsafe(16)
    flower_log = tmp_path / "flower.log"
    with stack_factory(workers=2) as stack:
        url = stack.start_flower(
            port=free_port(), basic_auth=f"{user}:{password}", log_path=flower_log
        )
        auth = (user, password)
        assert httpx.get(f"{url}/api/tasks").status_code == 401
        assert httpx.get(f"{url}/api/tasks", auth=(user, "not-it")).status_code == 401
        assert httpx.get(f"{url}/", auth=auth).status_code == 200

        # Flower sees the events sent after it listens: wait until the worker's heartbeat
        # (an event, every 2 s) has reached it.
        def worker_seen() -> bool:
            r = httpx.get(f"{url}/workers", params={"json": 1}, auth=auth)
            return any(w.get("status") for w in r.json()["data"])

        wait_until("Flower to hear the worker", worker_seen, timeout=20, interval=0.2)

        populate(s3_buckets["source"], N)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets)
        job_id = client.submit(MANIFEST)["id"]
        done = client.wait(job_id, timeout=30)
        assert done["state"] == "succeeded", done

        plan_name = f"bayport.plan_import job={job_id}"
        shard_names = {f"bayport.copy_shard job={job_id} shard={seq}" for seq in range(3)}

        def job_tasks() -> dict[str, dict[str, Any]] | None:
            r = httpx.get(f"{url}/api/tasks", auth=auth)
            r.raise_for_status()
            mine = {t["name"]: t for t in r.json().values() if job_id in (t["name"] or "")}
            ended = all(t["state"] == "SUCCESS" for t in mine.values())
            return mine if set(mine) == {plan_name, *shard_names} and ended else None

        try:
            tasks = wait_until(
                "Flower to show the job's tasks succeeded", job_tasks, timeout=30, interval=0.2
            )
        except AssertionError:
            shown = httpx.get(f"{url}/api/tasks", auth=auth).json()
            print(f"Flower showed {shown}\n---- flower log ----\n{flower_log.read_text()[-4000:]}")
            raise
        assert _result(tasks[plan_name]).startswith(f"job {job_id}: listed {N}, 3 shards")
        assert sorted(_result(tasks[n]) for n in shard_names) == [
            "copied 16, skipped 0, failed 0",
            "copied 16, skipped 0, failed 0",
            "copied 8, skipped 0, failed 0",
        ]
        # No task lost its display name (to a late `task-sent` event: workers/celery_app.py).
        names = [t["name"] for t in httpx.get(f"{url}/api/tasks", auth=auth).json().values()]
        assert all(" job=" in name for name in names), names
        # The messages hold ids only: the shard task's one argument is its shard id.
        assert all(t["kwargs"] in ("{}", None) for t in tasks.values())
        # Searching Flower for the job id finds the job's tasks and no other.
        r = httpx.get(f"{url}/api/tasks", params={"search": job_id}, auth=auth)
        assert {t["name"] for t in r.json().values()} == {plan_name, *shard_names}

        # A task that fails says why. Stored credentials no key can open (a secret key
        # rotated away) make the next job's planning fail.
        _corrupt_credentials(stack.settings.resolved_database_url, "user-bucket")
        failed_id = client.submit(MANIFEST)["id"]
        failed = client.wait(failed_id, timeout=20)
        why = "SecretBoxError: stored credentials cannot be decrypted"
        assert failed["state"] == "failed" and why in failed["error"], failed

        def plan_failed() -> dict[str, Any] | None:
            r = httpx.get(f"{url}/api/tasks", params={"state": "FAILURE"}, auth=auth)
            named = f"bayport.plan_import job={failed_id}"
            return next((t for t in r.json().values() if t["name"] == named), None)

        task = wait_until(
            "Flower to show the failed planning", plan_failed, timeout=30, interval=0.2
        )
        assert why in task["exception"], task["exception"]
    assert password not in flower_log.read_text()
    assert password not in (tmp_path / "worker.log").read_text()


def test_standalone_serves_flower_behind_the_login_it_prints(
    tmp_path: Path, redis_url: str
) -> None:
    port, flower_port = free_port(), free_port()
    env = {
        **os.environ,
        "BAYPORT_DATA_DIR": str(tmp_path / "data"),
        "BAYPORT_BROKER_URL": redis_url,
        "COLUMNS": "300",
    }
    env.pop("BAYPORT_FLOWER_BASIC_AUTH", None)
    command = ["standalone", "--port", str(port), "--flower-port", str(flower_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its worker and Flower in its process group
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("export ") or not line:
                break
        printed = "".join(lines)
        match = re.search(r"Flower \(task dashboard\): (\S+) user (\S+) password (\S+)", printed)
        assert match, printed
        url, user, password = match.groups()
        assert url == f"http://127.0.0.1:{flower_port}"
        assert printed.count(password) == 1

        def answers() -> bool:  # standalone does not wait for Flower before printing
            try:
                return httpx.get(f"{url}/healthcheck").status_code == 200
            except httpx.TransportError:
                return False

        wait_until("Flower to answer", answers, timeout=30, interval=0.2)
        assert httpx.get(f"{url}/api/workers").status_code == 401
        assert httpx.get(f"{url}/api/task/types", auth=(user, password)).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        # Whatever of its worker and Flower is left would go on taking the next tests'
        # tasks from the same broker: the whole group goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert password not in (tmp_path / "data" / "flower.log").read_text()
