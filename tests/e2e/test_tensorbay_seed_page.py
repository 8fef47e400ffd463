"""The seed page's own SDK code (tests/e2e/tensorbay_seed_page.py), run with the real
`tensorbay` SDK against Bayport (API over HTTPS + a Celery worker process) on S3 (rclone
serve s3), the OSS test server and Azurite, each behind a proxy that counts the requests
Bayport makes, in the page's two modes:

- the config's filePath is a dataset path (`datasets/cats/`): "Files will be copied from
  original directory to the authorized cloud storage dataset path, thus the storage space
  will be doubled": every image is copied there, byte for byte;
- the config's filePath is the original folder (`data/images`): "set the authorized cloud
  storage dataset path the same as original directory could speed up the import action":
  nothing is copied (no write request reaches the server), every image is registered.

Either way the labels come back through the SDK, and `list_auth_data` takes paths in the
bucket whatever the config's filePath."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from devstack.sample import image_key, label_key, make_label, make_png
from storage_adapters.base import ObjectStore
from tests.contract import list_all
from tests.faultproxy import FaultPlan, FaultProxy
from tests.seed_buckets import seed_buckets
from tests.tensorbay_sdk import sdk_python

N = 5
SCRIPT = Path(__file__).with_name("tensorbay_seed_page.py")
PROVIDERS = ("s3", "oss", "azure")
MODES = {"copy": "datasets/cats/", "in_place": "data/images"}


def _keys(store: ObjectStore) -> list[str]:
    return sorted(list_all(store))


@pytest.fixture
def buckets(
    rclone_s3: dict[str, str], oss_server: dict[str, Any], azurite: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """One bucket per provider holding the seed's layout, each behind a counting proxy."""
    seeded = seed_buckets(rclone_s3, oss_server, azurite, tag="pg", n=N)
    stores = seeded.stores
    s3_bucket, oss_bucket = seeded.names["s3"], seeded.names["oss"]
    container = seeded.names["azure"]
    with ExitStack() as stack:
        proxies = {
            flavor: stack.enter_context(
                FaultProxy(upstream, flavor=flavor, plan=FaultPlan(rate=0.0))  # type: ignore[arg-type]
            )
            for flavor, upstream in (
                ("s3", rclone_s3["endpoint"]),
                ("oss", oss_server["endpoint"]),
                ("azure", azurite["endpoint"]),
            )
        }
        sdk_args = {
            "s3": {
                "endpoint": proxies["s3"].endpoint,
                "accesskey_id": rclone_s3["access_key"],
                "accesskey_secret": rclone_s3["secret_key"],
                "bucket_name": s3_bucket,
            },
            "oss": {
                "endpoint": proxies["oss"].endpoint,
                "accesskey_id": oss_server["access_key"],
                "accesskey_secret": oss_server["secret_key"],
                "bucket_name": oss_bucket,
            },
            "azure": {
                "account_type": "Global",
                "account_name": azurite["account_name"],
                "account_key": azurite["account_key"],
                "container_name": container,
            },
        }
        yield {
            "stores": stores,
            "proxies": proxies,
            "sdk_args": sdk_args,
            "azure_urls": f"{azurite['account_name']}={proxies['azure'].endpoint}",
            "secrets": [rclone_s3["secret_key"], oss_server["secret_key"], azurite["account_key"]],
        }


def test_the_seed_pages_code_copies_into_the_dataset_path_or_registers_in_place(
    stack_factory: Any, buckets: dict[str, Any]
) -> None:
    python = sdk_python()
    stores, proxies = buckets["stores"], buckets["proxies"]
    env_stack = {"BAYPORT_AZURE_ACCOUNT_URLS": buckets["azure_urls"]}
    with stack_factory(tls=True, env=env_stack) as stack:
        assert stack.ca_file is not None
        database_url = stack.settings.resolved_database_url
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for mode, file_path in MODES.items():
            for provider in PROVIDERS:
                before, writes = _keys(stores[provider]), proxies[provider].writes()
                config = {
                    "name": f"page-{provider}-{mode}".replace("_", "-"),
                    "file_path": file_path,
                    **buckets["sdk_args"][provider],
                }
                env = {
                    **os.environ,
                    "TENSORBAY_URL": stack.url + "/",
                    "TENSORBAY_ACCESS_KEY": "Accesskey-" + stack.access_key,
                    "REQUESTS_CA_BUNDLE": str(stack.ca_file),
                    "SEED_PROVIDER": provider,
                    "SEED_CONFIG": json.dumps(config),
                    "SEED_DATASET": f"Page{provider}{mode}".replace("_", ""),
                }
                run = subprocess.run(
                    [str(python), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
                )
                assert run.returncode == 0, f"{mode} {provider}: {run.stderr[-6000:]}"
                assert not any(secret in run.stdout + run.stderr for secret in buckets["secrets"])
                result = json.loads(run.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
                result["written"] = proxies[provider].writes() - writes
                result["before"], result["after"] = before, _keys(stores[provider])
                result["dataset"] = env["SEED_DATASET"]
                results[(mode, provider)] = result

    engine = create_engine(database_url)
    try:
        for (mode, provider), got in results.items():
            where = f"{mode} on {provider}"
            # list_auth_data took paths in the bucket, whatever the config's filePath.
            assert got["listed"]["images"] == [image_key(i) for i in range(1, N + 1)], where
            assert got["listed"]["labels"] == [label_key(i) for i in range(1, N + 1)], where
            # Read back through the SDK: every image, byte-identical, with its label.
            rows = got["rows"]
            assert [(r["segment"], r["path"]) for r in rows] == [
                ("default", f"{i:05d}.png") for i in range(1, N + 1)
            ], where
            for i, row in enumerate(rows, start=1):
                assert row["size"] == len(make_png(i)), where
                assert row["label"] == {"CLASSIFICATION": make_label(i)}, where
            with engine.connect() as db:
                ledger = db.execute(
                    text(
                        "SELECT l.source_key, l.dest_key, l.outcome FROM ledger_entry l "
                        "JOIN dataset d ON d.id = l.dataset_id WHERE d.name = :n "
                        "ORDER BY l.remote_path"
                    ),
                    {"n": got["dataset"]},
                ).all()
            assert [r.source_key for r in ledger] == [image_key(i) for i in range(1, N + 1)]
            store = stores[provider]
            if mode == "copy":
                # Keys of the config, whose filePath is the dataset path.
                assert [r.dest_key for r in ledger] == [
                    f"default/{i:05d}.png" for i in range(1, N + 1)
                ], where
                copies = [f"datasets/cats/default/{i:05d}.png" for i in range(1, N + 1)]
                assert {r.outcome for r in ledger} == {"copied"}, where
                # The storage doubled: the originals stay, a copy of each in the dataset path.
                assert got["after"] == sorted(got["before"] + copies), where
                for i, key in enumerate(copies, start=1):
                    assert store.get_bytes(key, max_size=1 << 20) == make_png(i), where
                assert got["written"] >= N, where
            else:
                assert [r.dest_key for r in ledger] == [f"{i:05d}.png" for i in range(1, N + 1)]
                assert {r.outcome for r in ledger} == {"registered"}, where
                assert got["after"] == got["before"], where
                assert got["written"] == 0, f"{where}: {proxies[provider].seen}"
    finally:
        engine.dispose()
