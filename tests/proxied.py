"""A fresh bucket on one provider's test server, whose store can be opened at any endpoint:
the server's own, or a fault-injecting proxy's in front of it (tests/faultproxy.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store
from tests.azure_fixtures import azure_spec, is_emulator, make_container
from tests.faultproxy import FaultPlan, FaultProxy
from tests.oss_fixtures import make_oss_bucket, oss_spec
from tests.servers import make_bucket


@dataclass
class Server:
    flavor: str
    endpoint: str
    spec: Callable[[str], StorageSpec]  # the bucket's spec for an endpoint
    opts: dict[str, Any]

    def store(self, endpoint: str | None = None) -> ObjectStore:
        return open_store(self.spec(endpoint or self.endpoint), timeout=10, **self.opts)


def new_bucket(request: pytest.FixtureRequest, flavor: str, prefix: str) -> Server:
    """A new bucket named `prefix-<random>` on the `flavor` ("s3" on rclone serve s3, "oss"
    on the OSS test server, "azure" on Azurite) server fixture."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
    if flavor == "s3":
        s3: dict[str, str] = request.getfixturevalue("rclone_s3")
        make_bucket(s3, bucket)
        creds = {"accesskey_id": s3["access_key"], "accesskey_secret": s3["secret_key"]}
        return Server(
            "s3",
            s3["endpoint"],
            lambda endpoint: StorageSpec("s3", bucket, endpoint=endpoint, credentials=creds),
            {},
        )
    if flavor == "oss":
        oss: dict[str, Any] = request.getfixturevalue("oss_server")
        make_oss_bucket(oss, bucket)
        return Server(
            "oss",
            oss["endpoint"],
            lambda endpoint: oss_spec({**oss, "endpoint": endpoint}, bucket),
            {},
        )
    azure: dict[str, str] = request.getfixturevalue("azurite")
    make_container(azure, bucket)
    return Server(
        "azure",
        azure["endpoint"],
        lambda endpoint: azure_spec({**azure, "endpoint": endpoint}, bucket),
        {"multipart_copy": not is_emulator(azure)},
    )


@contextlib.contextmanager
def proxied(server: Server, plan: FaultPlan) -> Iterator[tuple[FaultProxy, ObjectStore]]:
    """A fault-injecting proxy in front of `server` with `plan`, and the bucket's store
    opened through it."""
    with FaultProxy(server.endpoint, flavor=server.flavor, plan=plan) as proxy:  # type: ignore[arg-type]
        yield proxy, server.store(proxy.endpoint)
