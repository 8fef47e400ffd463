"""One fresh bucket per provider (rclone's S3, the OSS test server, Azurite), each holding the
seed's layout (`data/images/…`, `data/labels/…`): what the TensorBay SDK e2e tests import."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from devstack.sample import populate
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store
from tests.azure_fixtures import azure_store, make_container
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.servers import make_bucket


@dataclass(frozen=True)
class SeedBuckets:
    names: dict[str, str]  # provider -> bucket (the container, for Azure)
    stores: dict[str, ObjectStore]


def seed_buckets(
    rclone_s3: dict[str, str],
    oss_server: dict[str, Any],
    azurite: dict[str, str],
    *,
    tag: str,
    n: int,
) -> SeedBuckets:
    """Buckets named `<tag>-s3-…`, `<tag>-oss-…`, `<tag>-az-…`, each with `n` images and labels."""
    unique = uuid.uuid4().hex[:8]
    names = {p: f"{tag}-{p[:3] if p != 'azure' else 'az'}-{unique}" for p in ("s3", "oss", "azure")}
    make_bucket(rclone_s3, names["s3"])
    make_oss_bucket(oss_server, names["oss"])
    make_container(azurite, names["azure"])
    credentials = {
        "accesskey_id": rclone_s3["access_key"],
        "accesskey_secret": rclone_s3["secret_key"],
    }
    stores: dict[str, ObjectStore] = {
        "s3": open_store(
            StorageSpec("s3", names["s3"], endpoint=rclone_s3["endpoint"], credentials=credentials)
        ),
        "oss": oss_store(oss_server, names["oss"]),
        "azure": azure_store(azurite, names["azure"]),
    }
    for store in stores.values():
        populate(store, n)
    return SeedBuckets(names=names, stores=stores)
