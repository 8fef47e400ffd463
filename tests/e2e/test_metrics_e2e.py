"""/metrics with a real worker: task durations counted by the worker processes (Redis), object
counts equal to the ledger's, an empty queue once the job is done."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cli.client import BayportClient
from devstack.sample import populate
from tests.e2e.test_import_e2e import MANIFEST
from tests.support import register_s3_pair

N = 40


def test_metrics_after_a_real_import(stack_factory, s3_buckets) -> None:  # type: ignore[no-untyped-def]
    with stack_factory() as stack:
        populate(s3_buckets["source"], N)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets)
        job = client.submit(MANIFEST)
        done = client.wait(job["id"], timeout=120)
        assert done["state"] == "succeeded", done
        text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    pair = (("dest_provider", "s3"), ("outcome", "copied"), ("source_provider", "s3"))
    assert samples[("bayport_objects_total", pair)] == done["counts"]["copied"] == N
    shards = done["shards_total"]
    copy = (("task", "bayport.copy_shard"),)
    assert samples[("bayport_task_duration_seconds_count", copy)] == shards
    assert samples[("bayport_task_duration_seconds_sum", copy)] > 0
    assert samples[("bayport_task_failures_total", copy)] == 0
    plan = (("task", "bayport.plan_import"),)
    assert samples[("bayport_task_duration_seconds_count", plan)] >= 1
    assert samples[("bayport_queue_depth", (("queue", "bayport"),))] == 0
    assert samples[("bayport_jobs", (("state", "succeeded"),))] == 1
