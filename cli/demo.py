"""`bayport demo`: the seed's example end to end on embedded defaults, verified byte by byte."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devstack.sample import image_key, label_key, make_label, populate, seed_manifest
from devstack.services import start_rclone_s3
from storage_adapters.base import StorageSpec
from storage_adapters.registry import open_store

SOURCE_BUCKET = "seed-bucket"
DATASET_BUCKET = "bayport-datasets"


def run_demo(*, objects: int, data_dir: Path | None, console: Console) -> int:
    from cli.client import BayportClient
    from cli.jobs import watch_job
    from cli.stack import local_stack

    with tempfile.TemporaryDirectory(prefix="bayport-demo-") as tmp:
        root = data_dir or Path(tmp)
        s3_root = root / "s3"
        for bucket in (SOURCE_BUCKET, DATASET_BUCKET):
            (s3_root / bucket).mkdir(parents=True, exist_ok=True)
        ak, sk = "demo" + secrets.token_hex(4), secrets.token_hex(16)
        with start_rclone_s3(s3_root, access_key=ak, secret_key=sk) as s3:
            console.print(f"local S3 server (rclone serve s3) at {s3.url}")
            creds = {"accesskey_id": ak, "accesskey_secret": sk}
            source = open_store(
                StorageSpec("s3", SOURCE_BUCKET, endpoint=s3.url, credentials=creds)
            )
            dest = open_store(StorageSpec("s3", DATASET_BUCKET, endpoint=s3.url, credentials=creds))
            populate(source, objects)
            console.print(
                f"sample bucket: {objects} images under data/images/, labels under data/labels/"
            )

            with local_stack(
                data_dir=root / "bayport",
                worker_log=root / "worker.log",
                allow_endpoints=[s3.url],  # our own S3 server, on this machine
            ) as stack:
                console.print(f"Bayport API at {stack.url}")
                client = BayportClient(stack.url, stack.access_key)
                for name, bucket in (("user-bucket", SOURCE_BUCKET), ("datasets", DATASET_BUCKET)):
                    client.create_storage_config(
                        name=name,
                        provider="s3",
                        endpoint=s3.url,
                        bucket_name=bucket,
                        accesskey_id=ak,
                        accesskey_secret=sk,
                    )
                client.create_dataset("Cats", config_name="datasets")
                manifest = seed_manifest()
                started = time.monotonic()
                job = client.submit(manifest)
                code = watch_job(client, job["id"], interval=0.2)
                seconds = time.monotonic() - started
                data = client.segment_data("Cats", "default")
                mismatches = _verify(source, dest, data, objects)
                again = client.wait(client.submit(manifest)["id"])

        table = Table(title="bayport demo: the seed's example, S3 bucket -> dataset Cats/default")
        for column in (
            "objects",
            "seconds",
            "objects/s",
            "labels stored",
            "byte-identical",
            "re-run copied",
            "re-run skipped",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            str(objects),
            f"{seconds:.1f}",
            f"{objects / seconds:.0f}",
            str(sum(1 for d in data if d["label"])),
            "yes" if not mismatches else "NO",
            str(again["counts"]["copied"]),
            str(again["counts"]["skipped"]),
        )
        console.print(table)
        for problem in mismatches[:10]:
            console.print(f"[red]{problem}[/]")
        ok = code == 0 and not mismatches and again["counts"]["copied"] == 0
        console.print("[green]demo succeeded[/]" if ok else "[red]demo FAILED[/]")
        return 0 if ok else 1


def _verify(source: object, dest: object, data: list[dict[str, object]], n: int) -> list[str]:
    """Every image at the destination, byte-identical, with its label: else the problems."""
    problems = []
    by_path = {str(d["remote_path"]): d for d in data}
    if len(by_path) != n:
        problems.append(f"the segment holds {len(by_path)} objects, expected {n}")
    for i in range(1, n + 1):
        item = by_path.get(f"{i:05d}.png")
        if item is None:
            problems.append(f"{i:05d}.png is missing from the segment")
            continue
        original = source.get_bytes(image_key(i), max_size=1 << 24)  # type: ignore[attr-defined]
        copied = dest.get_bytes(f"default/{i:05d}.png", max_size=1 << 24)  # type: ignore[attr-defined]
        if original != copied:
            problems.append(f"{i:05d}.png differs at the destination")
        expected = {"CLASSIFICATION": make_label(i)}
        if item["label"] != expected:
            problems.append(f"{label_key(i)}: stored label {json.dumps(item['label'])}")
    return problems
