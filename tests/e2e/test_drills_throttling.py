"""Drills: shared throttling and rate caps, on a real stack (API + two worker processes, eight
copies each at a time) importing from our OSS test server.

The server plays the provider: in quota mode it lets at most QUOTA requests a second through
per access key and refuses the rest with 503 QpsLimitExceeded, counting them; it also counts
the requests and bytes it served per second, which is how the caps are checked — from the
provider's side, not Bayport's.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cli.client import BayportClient
from devstack.services import start_valkey
from storage_adapters.base import ObjectStore
from tests.drills import verify_import
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.oss_server import OssTestServer, Traffic

QUOTA = 20  # requests a second per access key, as a provider account's QPS limit
THROTTLE_OBJECTS = 200
CAP_OBJECTS = 80


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own (overriding the session's): test sessions running side
    by side on one Redis may pick the same database, and another session's workers would
    take these jobs' tasks (then recovered only after the lease, minutes later)."""
    try:
        service = start_valkey(data_dir=tmp_path_factory.mktemp("valkey"))
    except Exception as exc:
        from tests.conftest import unavailable

        unavailable(f"valkey would not start: {exc}")
    with service:
        yield service.url


@pytest.fixture
def oss(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private OSS test server (its quota and traffic counts are this test's alone), with a
    source and a destination bucket."""
    ak, sk = "test" + secrets.token_hex(4), secrets.token_hex(16)
    with OssTestServer(tmp_path / "oss", ak, sk) as server:
        info: dict[str, Any] = {
            "endpoint": server.endpoint,
            "access_key": ak,
            "secret_key": sk,
            "server": server,
            "source_bucket": f"src-{uuid.uuid4().hex[:8]}",
            "dest_bucket": f"dst-{uuid.uuid4().hex[:8]}",
        }
        make_oss_bucket(info, info["source_bucket"])
        make_oss_bucket(info, info["dest_bucket"])
        yield info


@pytest.fixture
def drill_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # The stack passes its environment to the workers. A single call gets attempts enough
    # to outlast the quota without shared throttling too.
    monkeypatch.setenv("BAYPORT_RETRY_ATTEMPTS", "12")
    monkeypatch.setenv("BAYPORT_RETRY_MAX_WAIT", "5")
    return monkeypatch


def fill(store: ObjectStore, n: int, size: int) -> None:
    def put(i: int) -> None:
        store.put(f"data/{i:05d}.bin", (f"{i:05d}".encode() * (size // 5 + 1))[:size])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))


def add_configs(client: BayportClient, oss: dict[str, Any], **source_caps: Any) -> None:
    common = {
        "provider": "oss",
        "endpoint": oss["endpoint"],
        "accesskey_id": oss["access_key"],
        "accesskey_secret": oss["secret_key"],
    }
    client.create_storage_config(
        name="user-oss", bucket_name=oss["source_bucket"], **common, **source_caps
    )
    client.create_storage_config(name="datasets", bucket_name=oss["dest_bucket"], **common)
    client.create_dataset("Cats", config_name="datasets", path="cats")


def run_job(
    client: BayportClient,
    server: OssTestServer,
    segment: str,
    *,
    config_name: str = "user-oss",
    **options: Any,
) -> tuple[dict[str, Any], Traffic, float]:
    """Import data/ into `segment`; the job, the server's traffic meanwhile, and the job's
    wall seconds (from its start: a worker just started takes a while to take it)."""
    server.take_traffic()
    job = client.submit(
        {
            "dataset": "Cats",
            "segment": segment,
            "source": {"config_name": config_name, "data_prefix": "data"},
            "options": {"concurrency": 8, "shard_size": 25, **options},
        }
    )
    done = client.wait(job["id"], timeout=240)
    wall = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["started_at"])
    return done, server.take_traffic(), wall.total_seconds()


def test_shared_throttling_sends_fewer_requests_into_a_quota(
    stack_factory: Any,
    postgres_database: str,
    oss: dict[str, Any],
    drill_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server: OssTestServer = oss["server"]
    source = oss_store(oss, oss["source_bucket"])
    fill(source, THROTTLE_OBJECTS, 2048)
    drill_env.setenv("BAYPORT_SHARED_THROTTLE", "false")
    with stack_factory(database_url=postgres_database, workers=2) as stack:
        client = BayportClient(stack.url, stack.access_key)
        add_configs(client, oss)
        server.set_quota(QUOTA)
        alone, alone_traffic, alone_wall = run_job(client, server, "alone")
        # The same import again, the workers sharing one rate per account through Redis.
        stack.stop_workers()
        stack.env["BAYPORT_SHARED_THROTTLE"] = "true"
        stack.start_worker(processes=2, log_path=tmp_path / "worker.log")
        shared, shared_traffic, shared_wall = run_job(client, server, "shared")
        server.set_quota(None)
    for job in (alone, shared):
        assert job["state"] == "succeeded", job
        assert (job["counts"]["copied"], job["counts"]["failed"]) == (THROTTLE_OBJECTS, 0)
    served = sum(shared_traffic.requests.values())
    print(
        f"\nquota {QUOTA}/s, {THROTTLE_OBJECTS} objects, 2 workers x 8: refused "
        f"{alone_traffic.refused} without shared throttling ({alone_wall:.1f} s), "
        f"{shared_traffic.refused} with it ({shared_wall:.1f} s, {served} served)"
    )
    assert alone_traffic.refused > 100  # the quota did bite: the drill tests something
    assert shared_traffic.refused * 2 < alone_traffic.refused  # clearly fewer: under half
    verdict = verify_import(
        source=source,
        data_prefix="data/",
        dest=oss_store(oss, oss["dest_bucket"]),
        dest_prefix="cats/shared/",
        database_url=postgres_database,
        job_id=shared["id"],
    )
    faults = f"quota {QUOTA} req/s: {shared_traffic.refused} refused (vs {alone_traffic.refused})"
    print(verdict.row("shared throttling", faults, shared_wall))
    assert verdict.ok, verdict


def worst_second(traffic: Traffic, access_key: str, *, of: str = "requests") -> int:
    counts = traffic.per_second(access_key, of=of)
    assert counts, "the server saw no traffic"
    return max(counts)


def test_caps_hold_across_workers(
    stack_factory: Any,
    postgres_database: str,
    oss: dict[str, Any],
    drill_env: pytest.MonkeyPatch,
) -> None:
    server: OssTestServer = oss["server"]
    ak = oss["access_key"]
    source = oss_store(oss, oss["source_bucket"])
    size = 16 * 1024
    fill(source, CAP_OBJECTS, size)
    rps, bps = 20, 256 * 1024
    with stack_factory(database_url=postgres_database, workers=2) as stack:
        client = BayportClient(stack.url, stack.access_key)
        add_configs(client, oss)
        # Uncapped first: how fast this machine goes, so the caps below are seen to bite.
        free, free_traffic, free_wall = run_job(client, server, "free")
        by_requests, requests_traffic, requests_wall = run_job(
            client, server, "rps", max_requests_per_second=rps
        )
        by_bytes, bytes_traffic, bytes_wall = run_job(
            client, server, "bps", max_bytes_per_second=bps
        )
        # A storage config's cap: every job reading with it, whatever its manifest says.
        client.create_storage_config(
            name="capped-oss",
            provider="oss",
            endpoint=oss["endpoint"],
            bucket_name=oss["source_bucket"],
            accesskey_id=ak,
            accesskey_secret=oss["secret_key"],
            max_requests_per_second=rps,
        )
        shown = client.request("GET", "/v1/storage-configs/capped-oss")
        assert shown["max_requests_per_second"] == rps
        assert shown["max_bytes_per_second"] is None
        by_config, config_traffic, config_wall = run_job(
            client, server, "config", config_name="capped-oss"
        )
    for job in (free, by_requests, by_bytes, by_config):
        assert job["state"] == "succeeded", job
        assert (job["counts"]["copied"], job["counts"]["failed"]) == (CAP_OBJECTS, 0)
    free_rps = worst_second(free_traffic, ak)
    job_rps = worst_second(requests_traffic, ak)
    config_rps = worst_second(config_traffic, ak)
    job_bps = worst_second(bytes_traffic, ak, of="bytes")
    print(
        f"\nuncapped: up to {free_rps} requests/s ({free_wall:.1f} s); job cap {rps}/s: up "
        f"to {job_rps}/s ({requests_wall:.1f} s); config cap {rps}/s: up to {config_rps}/s "
        f"({config_wall:.1f} s); job cap {bps // 1024} KiB/s: up to {job_bps // 1024} KiB/s "
        f"({bytes_wall:.1f} s)"
    )
    # The uncapped import goes well over the cap, the capped ones stay within it (a GCRA
    # lets one request of burst through; the server's seconds are wall-clock ones).
    assert free_rps > rps * 1.5
    assert job_rps <= rps * 1.2 + 2
    assert config_rps <= rps * 1.2 + 2
    # Only the server-side copies move bytes: each is charged its object's size (and to the
    # source config's cap too: a copy reads its bucket).
    assert job_bps <= bps * 1.2 + size
    assert sum(bytes_traffic.bytes.values()) >= CAP_OBJECTS * size
