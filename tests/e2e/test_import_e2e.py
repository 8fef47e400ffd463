"""The product as a user drives it: HTTP API -> a real Celery worker process -> an S3 server
(rclone serve s3, SigV4 checked) -> the ledger, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cli.client import BayportClient
from devstack.sample import image_key, label_key, make_label, make_png, populate
from storage_adapters.errors import StorageError
from tests.support import register_s3_pair, seed_manifest

N = 60

MANIFEST = seed_manifest(shard_size=16, concurrency=8)


def _ledger_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM ledger_entry")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_seed_example_end_to_end_and_rerun_copies_nothing(
    db: str, request, stack_factory, s3_buckets
) -> None:  # type: ignore[no-untyped-def]
    database_url = None if db == "sqlite" else request.getfixturevalue("postgres_database")
    with stack_factory(database_url=database_url) as stack:
        source, dest = s3_buckets["source"], s3_buckets["dest"]
        populate(source, N)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets, dataset_config="datasets")

        job = client.submit(MANIFEST)
        done = client.wait(job["id"], timeout=120)
        assert done["state"] == "succeeded", done
        c = done["counts"]
        assert (c["listed"], c["copied"], c["skipped"], c["failed"]) == (N, N, 0, 0)
        assert c["bytes_copied"] == sum(len(make_png(i)) for i in range(1, N + 1))

        data = client.segment_data("Cats", "default")
        assert [d["remote_path"] for d in data] == [f"{i:05d}.png" for i in range(1, N + 1)]
        for i, item in enumerate(data, start=1):
            assert dest.get_bytes(f"default/{i:05d}.png", max_size=1 << 20) == make_png(i)
            assert item["label"] == {"CLASSIFICATION": make_label(i)}
            assert item["checksum"].startswith(("md5:", "etag:"))
        url = database_url or stack.settings.resolved_database_url
        rows = _ledger_rows(url)
        assert rows == N

        again = client.wait(client.submit(MANIFEST)["id"], timeout=120)
        assert again["state"] == "succeeded"
        assert (again["counts"]["copied"], again["counts"]["skipped"]) == (0, N)
        assert _ledger_rows(url) == rows


def test_in_place_import_registers_without_moving_bytes(stack_factory, s3_buckets) -> None:  # type: ignore[no-untyped-def]
    with stack_factory() as stack:
        source = s3_buckets["source"]
        populate(source, N)
        keys_before = _all_keys(source)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets, dataset_config="user-bucket", path="data/images/")
        done = client.wait(client.submit(MANIFEST)["id"], timeout=120)
        assert done["state"] == "succeeded", done
        assert done["in_place"] is True
        c = done["counts"]
        assert (c["registered"], c["copied"], c["bytes_copied"]) == (N, 0, 0)
        assert _all_keys(source) == keys_before
        assert _all_keys(s3_buckets["dest"]) == []
        data = client.segment_data("Cats", "default")
        assert len(data) == N and data[0]["label"] == {"CLASSIFICATION": make_label(1)}


def test_bad_label_fails_alone_and_retry_after_the_fix_completes(stack_factory, s3_buckets) -> None:  # type: ignore[no-untyped-def]
    with stack_factory() as stack:
        source, dest = s3_buckets["source"], s3_buckets["dest"]
        populate(source, N)
        source.put(label_key(7), b"{corrupt")
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets, dataset_config="datasets")
        done = client.wait(client.submit(MANIFEST)["id"], timeout=120)
        assert done["state"] == "partially_failed", done
        assert (done["counts"]["copied"], done["counts"]["failed"]) == (N - 1, 1)
        failures = client.failures(done["id"])
        assert [(f["source_key"], f["error_code"]) for f in failures] == [
            (image_key(7), "label_invalid")
        ]
        assert "not valid JSON" in failures[0]["error_message"]
        with pytest.raises(StorageError):
            dest.head("default/00007.png")

        source.put(label_key(7), json.dumps(make_label(7)).encode())
        client.retry(done["id"])
        retried = client.wait(done["id"], timeout=120)
        assert (retried["state"], retried["run"], retried["counts"]["failed"]) == (
            "succeeded",
            2,
            0,
        )
        assert dest.get_bytes("default/00007.png", max_size=1 << 20) == make_png(7)
        assert len(client.segment_data("Cats", "default")) == N


def test_cli_submit_and_status(stack_factory, s3_buckets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with stack_factory() as stack:
        populate(s3_buckets["source"], 10)
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets, dataset_config="datasets")
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(
            "dataset: Cats\nsource:\n  config_name: user-bucket\n  data_prefix: data/images\n"
            "  label_prefix: data/labels\n  label_type: classification\n"
        )
        env = {**stack.env, "BAYPORT_API_URL": stack.url, "BAYPORT_ACCESS_KEY": stack.access_key}
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "submit", str(manifest), "--watch"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        job_id = out.stdout.strip().splitlines()[0]
        status = subprocess.run(
            [sys.executable, "-m", "cli.main", "status", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "succeeded" in status.stdout and "copied 10" in status.stdout, status.stdout

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "cli.main", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

        # The same Idempotency-Key twice: one job (the first one, already done).
        first = cli("submit", str(manifest), "--idempotency-key", "nightly-2026-11-24")
        again = cli("submit", str(manifest), "--idempotency-key", "nightly-2026-11-24")
        assert first.returncode == again.returncode == 0, first.stdout + again.stdout
        assert first.stdout.split()[0] == again.stdout.split()[0] != job_id
        ended = cli("cancel", job_id)
        said = " ".join(ended.stdout.split())  # (the console wraps long lines)
        assert ended.returncode == 2 and "already ended (succeeded)" in said, ended.stdout

        bad = tmp_path / "bad.yaml"
        bad.write_text("dataset: Cats\nsource:\n  data_prefix: x\n")
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "submit", str(bad)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and "config_name" in out.stdout, out.stdout


def _all_keys(store) -> list[str]:  # type: ignore[no-untyped-def]
    keys, cursor = [], None
    while True:
        page = store.list_page("", cursor=cursor)
        keys += [o.key for o in page.objects]
        if page.cursor is None:
            return keys
        cursor = page.cursor
