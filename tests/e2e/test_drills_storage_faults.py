"""Drill: storage faults. Every storage request of an import goes through a fault-injecting
proxy (tests/faultproxy.py) that spoils about 10% of them: 503 SlowDown/ServerBusy, 500,
connection resets before and during the answer, slow answers, truncated bodies. The import
runs as a user drives it (API + a real Celery worker process) and must end with no failed
object, every object at the destination once and byte-identical (tests/drills.py), and the
retries counted in /metrics.

Same-provider pairs copy server-side (both configs behind one proxy: one account); the
cross-provider pair streams, so truncated downloads meet the copier's checks. It also carries
a few objects of 12-16 MiB with the multipart threshold and part size at their 5 MiB minimum:
streamed multipart copies whose parts, ranged reads and completes meet the faults one by one
(each request is retried alone; a broken read resumes where it broke).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.client import BayportClient
from devstack.sample import image_key, label_key, make_label, populate
from storage_adapters.base import ObjectStore
from tests.azure_fixtures import azure_store, make_container
from tests.drills import verify_import
from tests.faultproxy import FAULT_KINDS, FaultPlan, FaultProxy
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.servers import make_bucket, s3_store
from tests.support import seed_manifest

RATE = 0.1
# source provider, destination provider, objects (each with its label). Sized so the four
# drills take about two minutes together on a 2-core machine, filling and checking the
# buckets included (the check reads every object twice, one at a time).
DRILLS = {
    "s3": ("s3", "s3", 2000),
    "oss": ("oss", "oss", 1000),
    "azure": ("azure", "azure", 600),
    "azure->s3": ("azure", "s3", 600),
}
# Objects of 12-16 MiB added to a drill's small ones (each copied as 3-4 streamed parts).
LARGE = {"azure->s3": 4}
MiB = 1024 * 1024
MANIFEST = seed_manifest(shard_size=100, concurrency=16)


@dataclass
class Bucket:
    """One bucket on one of the test servers, reached directly (for setup and the check)
    and through a proxy (for Bayport)."""

    provider: str
    upstream: str  # the server's endpoint
    name: str
    store: ObjectStore  # direct, never through the proxy
    credentials: dict[str, str]

    def config(self, name: str, proxy: FaultProxy) -> dict[str, Any]:
        """The storage config Bayport gets: this bucket, through `proxy`."""
        field = "container_name" if self.provider == "azure" else "bucket_name"
        return {
            "name": name,
            "provider": self.provider,
            "endpoint": proxy.endpoint,
            field: self.name,
            **self.credentials,
        }


@pytest.fixture(scope="module")
def redis_url(redis_url: str) -> Iterator[str]:
    """The suite's Redis on a database no other test session's workers listen on. A drill
    runs long enough that another session picking the same database by chance (the suite's
    fixture draws one of 1-14) would take its tasks; 15 is never drawn, so it is claimed
    here when it is free, else the drawn one stays."""
    import redis

    claim = "bayport-test:claimed-by"
    url = urlsplit(redis_url)._replace(path="/15").geturl()
    client = redis.Redis.from_url(url)
    try:
        free = client.dbsize() == 0 and client.set(claim, os.getpid(), nx=True, ex=3600)
    except redis.RedisError:
        free = False
    if not free:
        client.close()
        yield redis_url
        return
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def _bucket(request: pytest.FixtureRequest, provider: str) -> Bucket:
    name = f"drill-{uuid.uuid4().hex[:10]}"
    if provider == "s3":
        s3: dict[str, str] = request.getfixturevalue("rclone_s3")
        make_bucket(s3, name)
        creds = {"accesskey_id": s3["access_key"], "accesskey_secret": s3["secret_key"]}
        return Bucket("s3", s3["endpoint"], name, s3_store(s3, name), creds)
    if provider == "oss":
        oss: dict[str, Any] = request.getfixturevalue("oss_server")
        make_oss_bucket(oss, name)
        creds = {"accesskey_id": oss["access_key"], "accesskey_secret": oss["secret_key"]}
        return Bucket("oss", oss["endpoint"], name, oss_store(oss, name), creds)
    azure: dict[str, str] = request.getfixturevalue("azurite")
    make_container(azure, name)
    creds = {"account_name": azure["account_name"], "account_key": azure["account_key"]}
    return Bucket("azure", azure["endpoint"], name, azure_store(azure, name), creds)


def _retries(metrics_text: str) -> dict[str, float]:
    """bayport_storage_retries by error kind, from a /metrics scrape."""
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "bayport_storage_retries_total"
    }


@pytest.mark.parametrize("drill", list(DRILLS))
def test_storage_faults_drill(
    drill: str, request: pytest.FixtureRequest, stack_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src_provider, dst_provider, small = DRILLS[drill]
    large = LARGE.get(drill, 0)
    n = small + large
    # The proxy's SlowDowns come at random, whatever the request rate: the shared throttle
    # would halve the account's rate at each and hold the drill near its floor (300 objects:
    # 98 s instead of 12 s). This drill is about retries; the throttle has its own.
    monkeypatch.setenv("BAYPORT_SHARED_THROTTLE", "false")
    if large:
        # The smallest multipart settings: the large objects go as 5 MiB streamed parts.
        monkeypatch.setenv("BAYPORT_MULTIPART_THRESHOLD", str(5 * MiB))
        monkeypatch.setenv("BAYPORT_MULTIPART_PART_SIZE", str(5 * MiB))
    source = _bucket(request, src_provider)
    dest = _bucket(request, dst_provider)
    populate(source.store, small)
    for i in range(small + 1, n + 1):
        source.store.put(image_key(i), os.urandom(12 * MiB + (i % 4) * MiB + i))
        source.store.put(label_key(i), json.dumps(make_label(i)).encode())
    seeds = iter(range(1, 10))
    with ExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}  # by upstream: one per server
        for bucket in (source, dest):
            if bucket.upstream not in proxies:
                proxy = FaultProxy(
                    bucket.upstream,
                    flavor=bucket.provider,  # type: ignore[arg-type]
                    plan=FaultPlan(rate=RATE, seed=next(seeds)),
                    enabled=False,
                )
                proxies[bucket.upstream] = stack.enter_context(proxy)
        run = stack.enter_context(stack_factory())
        client = BayportClient(run.url, run.access_key)
        client.create_storage_config(**source.config("user-bucket", proxies[source.upstream]))
        client.create_storage_config(**dest.config("datasets", proxies[dest.upstream]))
        client.create_dataset("Cats", config_name="datasets", path="cats")

        for proxy in proxies.values():
            proxy.enabled = True
        started = time.monotonic()
        done = client.wait(client.submit(MANIFEST)["id"], timeout=240)
        wall = time.monotonic() - started
        for proxy in proxies.values():
            proxy.enabled = False
        retries = _retries(httpx.get(f"{run.url}/metrics", timeout=10).text)
        database_url = run.settings.resolved_database_url

    injected = {kind: sum(p.counts()[kind] for p in proxies.values()) for kind in FAULT_KINDS}
    requests = sum(p.requests for p in proxies.values())
    verdict = verify_import(
        source=source.store,
        data_prefix="data/images/",
        dest=dest.store,
        dest_prefix="cats/default/",
        database_url=database_url,
        job_id=done["id"],
    )
    faults = f"{sum(injected.values())} of {requests} requests (" + ", ".join(
        f"{kind} {count}" for kind, count in injected.items()
    )
    print()
    print(verdict.row(f"storage faults, {drill}", f"{faults}); retries {retries}", wall))

    assert done["state"] == "succeeded", done
    assert (done["counts"]["copied"], done["counts"]["failed"]) == (n, 0), done["counts"]
    assert verdict.ok, str(verdict)
    assert verdict.objects == n
    if large:
        # The workers ran with these (rclone's ETags are whole-content MD5s either way, so
        # the destination cannot tell a multipart copy from a single one).
        assert run.settings.multipart_threshold == run.settings.multipart_part_size == 5 * MiB
    assert all(count > 0 for count in injected.values()), injected
    # Every kind of spoilt request was retried and counted. A 503 is only ever the proxy's;
    # one lands on a retry counted as rate_limited unless a second fault hid it (Azure's copy
    # reads its source through the proxy too: a 503 there comes back inside a cut answer).
    assert 0 < retries.get("rate_limited", 0) <= injected["slowdown_503"], (retries, injected)
    assert retries.get("unavailable", 0) > 0, retries
