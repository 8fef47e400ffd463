"""Across providers, as a user drives it: OSS bucket -> dataset on Azure, through the API and a
real worker process."""

from __future__ import annotations

import uuid
from typing import Any

from cli.client import BayportClient
from devstack.sample import make_label, make_png, populate
from tests.azure_fixtures import azure_store, make_container
from tests.oss_fixtures import make_oss_bucket, oss_store

N = 25


def test_oss_bucket_into_an_azure_dataset(
    stack_factory: Any, oss_server: dict[str, Any], azurite: dict[str, str]
) -> None:
    bucket, container = f"oss-{uuid.uuid4().hex[:10]}", f"az-{uuid.uuid4().hex[:10]}"
    make_oss_bucket(oss_server, bucket)
    make_container(azurite, container)
    populate(oss_store(oss_server, bucket), N)
    with stack_factory() as stack:
        client = BayportClient(stack.url, stack.access_key)
        client.create_storage_config(
            name="user-oss",
            provider="oss",
            endpoint=oss_server["endpoint"],
            bucket_name=bucket,
            accesskey_id=oss_server["access_key"],
            accesskey_secret=oss_server["secret_key"],
        )
        client.create_storage_config(
            name="datasets",
            provider="azure",
            account_name=azurite["account_name"],
            account_key=azurite["account_key"],
            container_name=container,
            endpoint=azurite["endpoint"],
        )
        client.create_dataset("Cats", config_name="datasets", path="cats")
        job = client.submit(
            {
                "dataset": "Cats",
                "source": {
                    "config_name": "user-oss",
                    "data_prefix": "data/images",
                    "label_prefix": "data/labels",
                    "label_type": "classification",
                },
                "options": {"concurrency": 8, "shard_size": 10},
            }
        )
        done = client.wait(job["id"], timeout=120)
        assert done["state"] == "succeeded", done
        assert (done["counts"]["copied"], done["counts"]["failed"]) == (N, 0)
        dest = azure_store(azurite, container)
        data = client.segment_data("Cats", "default")
        assert len(data) == N
        for i, item in enumerate(data, start=1):
            assert dest.get_bytes(f"cats/default/{i:05d}.png", max_size=1 << 20) == make_png(i)
            assert item["label"] == {"CLASSIFICATION": make_label(i)}
            assert item["checksum"].startswith("md5:")
