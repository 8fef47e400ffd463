"""Objects/s of a 10,000 × 16 KiB server-side import against `rclone serve s3`, next to
`rclone copy` of the same images as the reference.

One S3 server (rclone serve s3 over a temporary folder) holds three buckets: `source` (N
images of 16 KiB random bytes plus N classification labels), `datasets` (Bayport's dataset
storage) and `dest2` (rclone copy's destination). Both storage configs share the endpoint and
keys, so Bayport copies with server-side CopyObject, as rclone copy does within one remote.

Bayport runs as a user runs it (cli.stack.local_stack: the API plus a real Celery worker with
--workers processes, a Redis broker, SQLite or --database-url). Wall seconds run from the
submit request to the first poll that sees the job final; CPU is the worker process tree's
user+system time (/proc) over that span. rclone copy's CPU is getrusage(RUSAGE_CHILDREN)
around it. The S3 server's own CPU is shown for both, since it shares the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.procstat import process_cpu_seconds, tree_cpu_seconds
from cli.client import BayportClient
from cli.stack import LocalStack, local_stack
from devstack.sample import image_key, label_key, make_label
from devstack.services import start_rclone_s3

IMAGE_SIZE = 16 * 1024
SOURCE, DATASETS, DEST2 = "source", "datasets", "dest2"
DEFAULT_BROKER = "redis://127.0.0.1:6379/15"  # a database number the test suites do not pick


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    pid: int


@dataclass(frozen=True)
class Run:
    tool: str
    objects: int
    seconds: float
    cpu: float
    server_cpu: float
    problem: str | None = None


def s3_client(s3: S3Server, *, pool: int = 32) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
        config=Config(
            max_pool_connections=pool,
            retries={"mode": "standard", "max_attempts": 5},
            s3={"addressing_style": "path"},
        ),
    )


def populate(client: Any, n: int, *, threads: int = 32) -> None:
    """Images 1..n (16 KiB of random bytes) and their classification labels into SOURCE."""

    def put(i: int) -> None:
        client.put_object(Bucket=SOURCE, Key=image_key(i), Body=os.urandom(IMAGE_SIZE))
        label = json.dumps(make_label(i)).encode()
        client.put_object(Bucket=SOURCE, Key=label_key(i), Body=label)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(1, n + 1)))


def count_keys(client: Any, bucket: str, prefix: str = "") -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


# --- Bayport ----------------------------------------------------------------------------


def manifest(concurrency: int) -> dict[str, Any]:
    return {
        "dataset": "Bench",
        "segment": "default",
        "source": {
            "config_name": "bench-source",
            "data_prefix": "data/images/",
            "label_prefix": "data/labels/",
            "label_type": "classification",
        },
        "options": {"concurrency": concurrency, "shard_size": 500},
    }


def run_bayport(s3: S3Server, work: Path, args: argparse.Namespace, console: Console) -> Run:
    overrides = {"BAYPORT_BROKER_URL": args.broker_url}
    log = work / "worker.log"
    with _fresh_database(args.database_url) as database_url:
        if database_url:
            overrides["BAYPORT_DATABASE_URL"] = database_url
        with local_stack(
            data_dir=work / "bayport",
            overrides=overrides,
            worker_processes=args.workers,
            worker_log=log,
            allow_endpoints=[s3.endpoint],  # our own local S3 server
        ) as stack:
            _wait_for_worker(stack, log)
            client = BayportClient(stack.url, stack.access_key)
            for name, bucket in (("bench-source", SOURCE), ("bench-datasets", DATASETS)):
                client.create_storage_config(
                    name=name,
                    provider="s3",
                    endpoint=s3.endpoint,
                    bucket_name=bucket,
                    accesskey_id=s3.access_key,
                    accesskey_secret=s3.secret_key,
                )
            client.create_dataset("Bench", config_name="bench-datasets")
            db = stack.settings.resolved_database_url.split("://")[0]
            console.print(
                f"bayport: {args.workers} worker processes, {db}, broker {args.broker_url}"
            )

            worker = stack.workers[0].pid
            cpu, server_cpu = tree_cpu_seconds(worker), process_cpu_seconds(s3.pid)
            started = time.perf_counter()
            job = client.submit(manifest(args.concurrency))
            try:
                done = client.wait(job["id"], timeout=max(600.0, args.objects / 10), interval=0.2)
            except TimeoutError:
                done = client.job(job["id"])
            seconds = time.perf_counter() - started
            cpu = tree_cpu_seconds(worker) - cpu
            server_cpu = process_cpu_seconds(s3.pid) - server_cpu
            client.close()
    counts = done["counts"]
    problem = None
    if done["state"] != "succeeded" or counts["copied"] != args.objects:
        problem = (
            f"job {done['state']}: copied {counts['copied']:,} of {args.objects:,}, "
            f"failed {counts['failed']:,}"
        )
        console.print(f"[red]{problem}[/]; the worker log ends:\n{_tail(log)}")
    return Run("bayport", counts["copied"], seconds, cpu, server_cpu, problem)


def _wait_for_worker(stack: LocalStack, log: Path, timeout: float = 60.0) -> None:
    """Until the worker answers a ping: its pool is up, so startup is not measured."""
    from workers.celery_app import make_celery

    app = make_celery(stack.settings)
    deadline = time.monotonic() + timeout
    try:
        while not app.control.ping(timeout=0.5):
            if stack.workers[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{_tail(log)}")
    finally:
        app.close()
    time.sleep(1.0)  # let the pool children finish their imports


@contextlib.contextmanager
def _fresh_database(url: str | None) -> Iterator[str | None]:
    """A throwaway database on the PostgreSQL server `url` names (dropped afterwards), so
    runs do not collide; None (SQLite in the stack's data dir) stays None."""
    if url is None or url.startswith("sqlite"):
        yield url
        return
    from sqlalchemy import create_engine, text

    name = f"bayport_bench_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- rclone copy ------------------------------------------------------------------------


def rclone_binary() -> str:
    beside = Path(sys.executable).parent / "rclone"
    return str(beside) if beside.exists() else shutil.which("rclone") or "rclone"


def run_rclone_copy(s3: S3Server, objects: int, concurrency: int, console: Console) -> Run:
    env = {
        **os.environ,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": s3.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": s3.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": s3.secret_key,
    }
    command = [
        rclone_binary(), "--config", os.devnull, "copy",
        f"bench:{SOURCE}/data/images", f"bench:{DEST2}/data/images",
        "--transfers", str(concurrency), "--checkers", str(concurrency),
    ]  # fmt: skip
    console.print("reference: " + " ".join(command[1:]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = process_cpu_seconds(s3.pid)
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    server_cpu = process_cpu_seconds(s3.pid) - server_cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    copied = count_keys(s3_client(s3), DEST2, "data/images/")
    problem = None
    if proc.returncode != 0 or copied != objects:
        problem = f"rclone exited {proc.returncode}, {copied:,} of {objects:,} objects"
        console.print(f"[red]{problem}[/]\n{proc.stderr[-3000:]}")
    return Run("rclone copy", copied, seconds, cpu, server_cpu, problem)


# --- the whole benchmark ----------------------------------------------------------------


def render(runs: list[Run], console: Console) -> None:
    table = Table(title="Server-side import of 16 KiB objects through rclone serve s3")
    table.add_column("tool")
    for column in ("objects", "seconds", "objects/s", "CPU-s / 1k obj", "server CPU-s / 1k"):
        table.add_column(column, justify="right")
    table.add_column("check")
    for r in runs:
        per_k = 1000 / max(r.objects, 1)
        table.add_row(
            r.tool,
            f"{r.objects:,}",
            f"{r.seconds:.1f}",
            f"{r.objects / r.seconds:,.0f}",
            f"{r.cpu * per_k:.2f}",
            f"{r.server_cpu * per_k:.2f}",
            "ok" if r.problem is None else f"[red]WARNING: {r.problem}[/]",
        )
    console.print(table)
    console.print(
        "Bayport does more per object than rclone copy: it also GETs and parses the object's "
        "label, stores it in the ledger, and records every object (ledger row, shard, job "
        "counts) in the metadata DB."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=10_000, help="images (and labels)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="copies in flight")
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL server to use (default: SQLite)"
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BAYPORT_BROKER_URL", DEFAULT_BROKER),
        help="Redis broker; started (valkey) when it does not answer",
    )


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="bayport-bench-s3-") as tmp:
        work = Path(tmp)
        access_key, secret_key = "bench" + secrets.token_hex(4), secrets.token_hex(16)
        with start_rclone_s3(work / "s3", access_key=access_key, secret_key=secret_key) as server:
            s3 = S3Server(server.url, access_key, secret_key, server.pid or 0)
            client = s3_client(s3)
            for bucket in (SOURCE, DATASETS, DEST2):
                client.create_bucket(Bucket=bucket)
            started = time.perf_counter()
            populate(client, args.objects, threads=args.concurrency)
            console.print(
                f"populated {args.objects:,} images + labels in "
                f"{time.perf_counter() - started:.1f}s at {s3.endpoint}"
            )
            runs = [run_bayport(s3, work, args, console)]
            runs.append(run_rclone_copy(s3, args.objects, args.concurrency, console))
    render(runs, console)
    return 0 if all(r.problem is None for r in runs) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.s3import", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
