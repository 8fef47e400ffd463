"""The TensorBay SDK's import pattern against Bayport: one `PUT multi/cloud-callback` per
object from 8 threads (as `upload_dataset(dataset, jobs=8)` sends them), then a commit, next
to Bayport's own in-place import of the same objects.

One `rclone serve s3` holds N images and their classification labels. Bayport runs as it is
deployed: `bayport api` processes of their own (--api-processes, the threads spread over
them), a real Celery worker, SQLite or PostgreSQL. The SDK's requests are made with
`requests` (the SDK's own client) over keep-alive sessions, one per thread, each body as the
SDK builds it (the label inside). Measured: the calls' rate and latency, how long
the commit then waits for the imports, objects/s from the first call to the commit, and how
many import jobs the calls were gathered into. The reference is the same objects registered
by a manifest import (`POST /v1/imports`, in place) into another dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.harness import DEFAULT_BROKER, new_table
from cli.client import BayportClient
from cli.stack import local_stack
from devstack.sample import image_key, make_label, populate
from devstack.services import start_rclone_s3
from storage_adapters.base import StorageSpec
from storage_adapters.registry import open_store

BASE = "/gatewayv2/tensorbay-open-api/v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=2000, help="images (and labels)")
    parser.add_argument("--jobs", type=int, default=8, help="client threads (the SDK's jobs)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="`bayport api` processes taking the calls"
    )
    parser.add_argument("--broker-url", default=DEFAULT_BROKER)
    parser.add_argument("--database-url", default=None, help="default: SQLite")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace, console: Console) -> int:
    import requests

    n = args.objects
    with tempfile.TemporaryDirectory(prefix="bayport-bench-tb-") as tmp:
        root = Path(tmp)
        (root / "s3" / "source").mkdir(parents=True)
        key, secret = "bench", secrets.token_urlsafe(24)
        with start_rclone_s3(root / "s3", access_key=key, secret_key=secret) as s3:
            creds = {"accesskey_id": key, "accesskey_secret": secret}
            store = open_store(StorageSpec("s3", "source", endpoint=s3.url, credentials=creds))
            console.print(f"writing {n} images and labels to rclone serve s3 ...")
            populate(store, n, threads=32)
            overrides = {"BAYPORT_BROKER_URL": args.broker_url, "BAYPORT_LOG_LEVEL": "WARNING"}
            if args.database_url:
                overrides["BAYPORT_DATABASE_URL"] = args.database_url
            with local_stack(
                data_dir=root / "bayport",
                overrides=overrides,
                worker_processes=args.workers,
                allow_endpoints=[s3.url],
            ) as stack:
                apis = [stack.start_api() for _ in range(args.api_processes)]
                api_urls = [url for _, url in apis]
                session = requests.Session()
                session.headers["X-Token"] = "ACCESSKEY-" + stack.access_key

                def call(method: str, path: str, **kw: Any) -> Any:
                    response = session.request(method, stack.url + BASE + path, timeout=60, **kw)
                    if response.status_code not in (200, 201):
                        raise RuntimeError(
                            f"{method} {path}: {response.status_code} {response.text}"
                        )
                    return response.json()

                call(
                    "POST",
                    "/storage-configs/s3",
                    json={
                        "name": "src",
                        "filePath": "",
                        "endpoint": s3.url,
                        "bucketName": "source",
                        "accesskeyId": key,
                        "accesskeySecret": secret,
                    },
                )
                dataset_id = call(
                    "POST", "/datasets", json={"name": "Sdk", "type": 0, "configName": "src"}
                )["id"]
                ds = f"/datasets/{dataset_id}"
                number = call(
                    "POST", f"{ds}/drafts", json={"branchName": "main", "title": "bench"}
                )["draftNumber"]
                call("POST", f"{ds}/segments", json={"name": "train", "draftNumber": number})
                labels = [make_label(i) for i in range(1, n + 1)]
                local = threading.local()

                def register(i: int) -> float:
                    if not hasattr(local, "session"):
                        local.session = requests.Session()
                        local.url = api_urls[threading.get_ident() % len(api_urls)]
                        local.session.headers["X-Token"] = session.headers["X-Token"]
                    body = {
                        "segmentName": "train",
                        "objects": [
                            {
                                "cloudPath": image_key(i),
                                "remotePath": f"{i:05d}.png",
                                "label": {"CLASSIFICATION": labels[i - 1]},
                            }
                        ],
                        "deleteSource": False,
                        "draftNumber": number,
                    }
                    started = time.perf_counter()
                    response = local.session.put(
                        local.url + BASE + f"{ds}/multi/cloud-callback", json=body, timeout=60
                    )
                    took = time.perf_counter() - started
                    if response.status_code not in (200, 201):
                        raise RuntimeError(
                            f"cloud-callback: {response.status_code} {response.text}"
                        )
                    return took

                console.print(f"{n} cloud-callback calls from {args.jobs} threads ...")
                api_pids = [proc.pid for proc, _ in apis]
                api_cpu0, own_cpu0 = cpu_seconds(api_pids), time.process_time()
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.jobs) as pool:
                    latencies = sorted(pool.map(register, range(1, n + 1)))
                t_calls = time.perf_counter() - t0
                api_cpu = cpu_seconds(api_pids) - api_cpu0
                client_cpu = time.process_time() - own_cpu0
                commit_calls = 0
                while True:
                    commit_calls += 1
                    response = session.post(
                        stack.url + BASE + f"{ds}/commits",
                        json={"title": "bench", "draftNumber": number},
                        timeout=60,
                    )
                    if response.status_code == 503:
                        continue
                    if response.status_code != 200:
                        raise RuntimeError(f"commit: {response.status_code} {response.text}")
                    break
                t_commit = time.perf_counter() - t0
                commit = response.json()
                client = BayportClient(stack.url, stack.access_key)
                imports = client.request("GET", "/v1/imports", params={"limit": 1000})
                items = imports["items"] if isinstance(imports, dict) else imports
                sdk_jobs = [j for j in items if j.get("dataset") == "Sdk"]
                registered = sum(j["counts"]["registered"] for j in sdk_jobs)

                # The reference: the same objects by a manifest, in place.
                client.create_dataset("Manifest", config_name="src", path="data/")
                t1 = time.perf_counter()
                job = client.submit(
                    {
                        "dataset": "Manifest",
                        "source": {
                            "config_name": "src",
                            "data_prefix": "data/images",
                            "label_prefix": "data/labels",
                            "label_type": "classification",
                        },
                    }
                )
                done = client.wait(job["id"], timeout=600)
                t_manifest = time.perf_counter() - t1
                client.close()

    table = new_table(
        f"TensorBay SDK pattern: {n} objects, {args.jobs} client threads, "
        f"{args.api_processes} API processes, {args.workers} worker processes, "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}",
        ("measure", "value"),
        left=("measure",),
    )
    table.add_row("cloud-callback calls/s", f"{n / t_calls:,.0f}")
    table.add_row(
        "call latency p50 / p95 / max (ms)",
        " / ".join(f"{latencies[int(q * (n - 1))] * 1000:.1f}" for q in (0.5, 0.95, 1.0)),
    )
    table.add_row("mean call latency (ms)", f"{statistics.fmean(latencies) * 1000:.1f}")
    table.add_row(
        "CPU per call: API processes / client (ms)",
        f"{api_cpu / n * 1000:.1f} / {client_cpu / n * 1000:.1f}",
    )
    table.add_row("calls/s one API core could take", f"{n / api_cpu:,.0f}")
    table.add_row(
        "calls done → commit answered (s)",
        f"{t_commit - t_calls:.2f} ({commit_calls} commit calls)",
    )
    table.add_row("objects/s, first call → commit", f"{n / t_commit:,.0f}")
    table.add_row(
        "import jobs the calls were gathered into",
        f"{len(sdk_jobs)} (registered {registered}, failed {commit['failedObjects']})",
    )
    table.add_row(
        "reference: manifest import in place, objects/s",
        f"{done['counts']['registered'] / t_manifest:,.0f} ({done['state']})",
    )
    table.add_row(
        "SDK pattern ÷ manifest import",
        f"{(n / t_commit) / (done['counts']['registered'] / t_manifest):.2f}×",
    )
    console.print(table)
    console.print(
        json.dumps(
            {
                "calls_per_s": n / t_calls,
                "objects_per_s": n / t_commit,
                "jobs": len(sdk_jobs),
                "api_cpu_ms_per_call": api_cpu / n * 1000,
            }
        )
    )
    return 0 if registered == n else 1
