"""The seed's example, written with the real `tensorbay` SDK (1.24.2), unchanged but for the
URL, against a running Bayport (API over HTTPS + a Celery worker process) with an S3 server
(rclone serve s3), the OSS test server and Azurite; then the buckets and the ledger checked
independently of the SDK."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from devstack.sample import make_label, make_png
from storage_adapters.base import ObjectStore
from tests.seed_buckets import seed_buckets
from tests.tensorbay_sdk import sdk_python

N = 12  # images (and labels) per bucket
SCRIPT = Path(__file__).with_name("tensorbay_seed.py")


def _keys(store: ObjectStore) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = store.list_page("", cursor=cursor)
        keys += [o.key for o in page.objects]
        cursor = page.cursor
        if cursor is None:
            return keys


def test_the_seeds_sdk_script_runs_unchanged_against_bayport(
    stack_factory: Any,
    rclone_s3: dict[str, str],
    oss_server: dict[str, Any],
    azurite: dict[str, str],
    tmp_path: Path,
) -> None:
    python = sdk_python()
    seeded = seed_buckets(rclone_s3, oss_server, azurite, tag="tb", n=N)
    stores = seeded.stores
    s3_bucket, oss_bucket = seeded.names["s3"], seeded.names["oss"]
    container = seeded.names["azure"]
    before = {provider: sorted(_keys(store)) for provider, store in stores.items()}

    config = {
        "oss": {
            "config_name": "seed-oss",
            "dataset": "CatsOSS",
            "file_path": "",
            "endpoint": oss_server["endpoint"],
            "accesskey_id": oss_server["access_key"],
            "accesskey_secret": oss_server["secret_key"],
            "bucket_name": oss_bucket,
        },
        "s3": {
            "config_name": "seed-s3",
            "dataset": "CatsS3",
            "file_path": "",
            "endpoint": rclone_s3["endpoint"],
            "accesskey_id": rclone_s3["access_key"],
            "accesskey_secret": rclone_s3["secret_key"],
            "bucket_name": s3_bucket,
        },
        "azure": {
            "config_name": "seed-azure",
            "dataset": "CatsAzure",
            "file_path": "",
            "account_type": "Global",
            "account_name": azurite["account_name"],
            "account_key": azurite["account_key"],
            "container_name": container,
        },
    }
    config_file = tmp_path / "seed.json"
    config_file.write_text(json.dumps(config))
    # The SDK sends no endpoint for Azure: the operator names the account's URL.
    azure_urls = f"{azurite['account_name']}={azurite['endpoint']}"
    with stack_factory(tls=True, env={"BAYPORT_AZURE_ACCOUNT_URLS": azure_urls}) as stack:
        assert stack.ca_file is not None
        env = {
            **os.environ,
            "TENSORBAY_URL": stack.url + "/",
            "TENSORBAY_ACCESS_KEY": "Accesskey-" + stack.access_key,
            "REQUESTS_CA_BUNDLE": str(stack.ca_file),
        }
        run = subprocess.run(
            [str(python), str(SCRIPT), str(config_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
        database_url = stack.settings.resolved_database_url
    result = json.loads(run.stdout.strip().splitlines()[-1].removeprefix("RESULT "))

    assert {"seed-oss", "seed-s3", "seed-azure"} <= {c["name"] for c in result["storage_configs"]}
    secrets = [oss_server["secret_key"], rclone_s3["secret_key"], azurite["account_key"]]
    assert not any(secret in run.stdout for secret in secrets)

    engine = create_engine(database_url)
    try:
        for provider, store in stores.items():
            got = result["datasets"][provider]
            # In place: the buckets hold what they held, nothing copied or moved.
            assert sorted(_keys(store)) == before[provider]
            rows = got["segments"]["train"]
            assert [r["path"] for r in rows] == [f"{i:05d}.png" for i in range(1, N + 1)]
            for i, row in enumerate(rows, start=1):
                image = store.get_bytes(f"data/images/{i:05d}.png", max_size=1 << 20)
                assert image == make_png(i)
                assert (row["size"], row["md5"]) == (len(image), hashlib.md5(image).hexdigest())
                assert row["label"] == {"CLASSIFICATION": make_label(i)}
            categories = Counter(make_label(i)["category"] for i in range(1, N + 1))
            stats = got["label_statistics"]["CLASSIFICATION"]
            assert stats["quantity"] == N
            assert {c["name"]: c["quantity"] for c in stats["categories"]} == categories
            assert set(got["catalog"]["CLASSIFICATION"]) >= {"categories", "attributes"}

            # The ledger, read from the DB: every object registered where it is, its label
            # stored, and the jobs the registrations were gathered into all succeeded.
            with engine.connect() as db:
                dataset_id, head = db.execute(
                    text("SELECT id, head_commit_id FROM dataset WHERE name = :n"),
                    {"n": config[provider]["dataset"]},
                ).one()
                assert head == got["commit_id"]
                ledger = db.execute(
                    text(
                        "SELECT remote_path, source_key, dest_key, outcome, label, checksum, "
                        "size FROM ledger_entry WHERE dataset_id = :d ORDER BY remote_path"
                    ),
                    {"d": dataset_id},
                ).all()
                jobs = db.execute(
                    text(
                        "SELECT state, in_place, registered, copied, failed FROM import_job "
                        "WHERE dataset_id = :d"
                    ),
                    {"d": dataset_id},
                ).all()
            assert len(ledger) == N
            for i, entry in enumerate(ledger, start=1):
                assert entry.remote_path == f"{i:05d}.png"
                assert entry.source_key == entry.dest_key == f"data/images/{i:05d}.png"
                assert entry.outcome == "registered" and entry.checksum
                assert entry.size == len(make_png(i))
                label = entry.label if isinstance(entry.label, dict) else json.loads(entry.label)
                assert label == {"CLASSIFICATION": make_label(i)}
            assert all(j.state == "succeeded" and j.in_place and j.copied == 0 for j in jobs)
            assert sum(j.registered for j in jobs) == N and sum(j.failed for j in jobs) == 0
            print(f"{provider}: {N} registrations gathered into {len(jobs)} import jobs")
    finally:
        engine.dispose()
