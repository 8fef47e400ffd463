"""Drill: the API process is killed after accepting an import, the client retries the same
submission (same Idempotency-Key) against the restarted API and against a second API
replica, concurrently: one job, every object imported exactly once (tests/drills.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.client import BayportClient
from cli.stack import LocalStack, free_port
from devstack.sample import populate
from tests.drills import verify_import
from tests.support import register_s3_pair, seed_manifest

N = 300
MANIFEST: dict[str, Any] = seed_manifest(shard_size=50, concurrency=8)


def _start_api(stack: LocalStack, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`bayport api` as its own process on the stack's DB and broker."""
    out = open(log, "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--no-migrate"],
        env=stack.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the API process did not start")


def _post(url: str, key: str, idempotency_key: str, manifest: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/imports",
        json=manifest,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
        timeout=30,
    )


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_api_restart_and_duplicate_submissions_make_one_job(
    db: str, request: pytest.FixtureRequest, stack_factory: Any, s3_buckets: dict[str, Any]
) -> None:
    database_url = None if db == "sqlite" else request.getfixturevalue("postgres_database")
    tmp = Path(request.getfixturevalue("tmp_path"))
    started = time.monotonic()
    with stack_factory(database_url=database_url) as stack:
        source, dest = s3_buckets["source"], s3_buckets["dest"]
        populate(source, N)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets)

        port, log = free_port(), tmp / "api.log"
        api = _start_api(stack, port, log)
        replica = f"http://127.0.0.1:{port}"
        key = f"drill-{uuid.uuid4().hex}"
        try:
            first = _post(replica, stack.access_key, key, MANIFEST)
            assert first.status_code == 202, first.text
            job_id = first.json()["id"]
            # The API process dies (SIGKILL: no cleanup) before the client saw the answer.
            os.kill(api.pid, signal.SIGKILL)
            api.wait(timeout=10)
            api = _start_api(stack, port, log)
            # The client retries on the restarted API and, at the same moment, through the
            # other replica (the stack's own API): both get the first job back.
            answers: list[httpx.Response] = []

            def retry(url: str) -> None:
                answers.append(_post(url, stack.access_key, key, MANIFEST))

            threads = [threading.Thread(target=retry, args=(u,)) for u in (replica, stack.url)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
            assert {r.json()["id"] for r in answers} == {job_id}
            assert all(r.headers.get("Idempotent-Replayed") == "true" for r in answers)
            # The same key for another manifest is refused; nothing new is made.
            other = _post(replica, stack.access_key, key, {**MANIFEST, "segment": "other"})
            assert other.status_code == 422 and key in other.json()["detail"]
        finally:
            api.kill()
            api.wait(timeout=10)

        done = client.wait(job_id, timeout=120)
        assert done["state"] == "succeeded", done
        assert done["counts"]["copied"] == N
        jobs = client.request("GET", "/v1/imports")["items"]
        assert [j["id"] for j in jobs] == [job_id]
        verdict = verify_import(
            source=source,
            data_prefix="data/images/",
            dest=dest,
            dest_prefix="default/",
            database_url=database_url or stack.settings.resolved_database_url,
            job_id=job_id,
        )
        wall = time.monotonic() - started
        print(
            "\n"
            + verdict.row(
                f"API restart + duplicate submissions ({db})",
                "API SIGKILLed after accepting; same key re-sent 2x at once (restarted API "
                "+ a replica), once with another manifest",
                wall,
            )
        )
        assert verdict.ok, str(verdict)
