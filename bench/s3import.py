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
import json
import os
import secrets
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.harness import (
    S3Server,
    add_broker_argument,
    add_database_argument,
    bayport_stack,
    check_cell,
    children_cpu,
    count_keys,
    new_table,
    rclone_binary,
    rclone_env,
    register_s3_configs,
    s3_client,
    tail,
    timed,
)
from bench.procstat import process_cpu_seconds, tree_cpu_seconds
from cli.client import BayportClient
from devstack.sample import image_key, label_key, make_label
from devstack.services import start_rclone_s3

IMAGE_SIZE = 16 * 1024
SOURCE, DATASETS, DEST2 = "source", "datasets", "dest2"


@dataclass(frozen=True)
class Run:
    tool: str
    objects: int
    seconds: float
    cpu: float
    server_cpu: float
    problem: str | None = None


def populate(client: Any, n: int, *, threads: int = 32) -> None:
    """Images 1..n (16 KiB of random bytes) and their classification labels into SOURCE."""

    def put(i: int) -> None:
        client.put_object(Bucket=SOURCE, Key=image_key(i), Body=os.urandom(IMAGE_SIZE))
        label = json.dumps(make_label(i)).encode()
        client.put_object(Bucket=SOURCE, Key=label_key(i), Body=label)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(1, n + 1)))


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
    log = work / "worker.log"
    with bayport_stack(
        work / "bayport",
        broker_url=args.broker_url,
        database_url=args.database_url,
        workers=args.workers,
        log=log,
        allow_endpoints=[s3.endpoint],  # our own local S3 server
    ) as stack:
        client = BayportClient(stack.url, stack.access_key)
        register_s3_configs(client, s3, {"bench-source": SOURCE, "bench-datasets": DATASETS})
        client.create_dataset("Bench", config_name="bench-datasets")
        db = stack.settings.resolved_database_url.split("://")[0]
        console.print(f"bayport: {args.workers} worker processes, {db}, broker {args.broker_url}")

        worker = stack.workers[0].pid
        with timed(lambda: tree_cpu_seconds(worker), lambda: process_cpu_seconds(s3.pid)) as span:
            job = client.submit(manifest(args.concurrency))
            try:
                done = client.wait(job["id"], timeout=max(600.0, args.objects / 10), interval=0.2)
            except TimeoutError:
                done = client.job(job["id"])
        client.close()
    counts = done["counts"]
    problem = None
    if done["state"] != "succeeded" or counts["copied"] != args.objects:
        problem = (
            f"job {done['state']}: copied {counts['copied']:,} of {args.objects:,}, "
            f"failed {counts['failed']:,}"
        )
        console.print(f"[red]{problem}[/]; the worker log ends:\n{tail(log)}")
    return Run("bayport", counts["copied"], span.seconds, span.cpu, span.server_cpu, problem)


# --- rclone copy ------------------------------------------------------------------------


def run_rclone_copy(s3: S3Server, objects: int, concurrency: int, console: Console) -> Run:
    command = [
        rclone_binary(), "--config", os.devnull, "copy",
        f"bench:{SOURCE}/data/images", f"bench:{DEST2}/data/images",
        "--transfers", str(concurrency), "--checkers", str(concurrency),
    ]  # fmt: skip
    console.print("reference: " + " ".join(command[1:]))
    with timed(children_cpu, lambda: process_cpu_seconds(s3.pid)) as span:
        proc = subprocess.run(
            command, env=rclone_env(s3), capture_output=True, text=True, check=False
        )
    copied = count_keys(s3_client(s3), DEST2, "data/images/")
    problem = None
    if proc.returncode != 0 or copied != objects:
        problem = f"rclone exited {proc.returncode}, {copied:,} of {objects:,} objects"
        console.print(f"[red]{problem}[/]\n{proc.stderr[-3000:]}")
    return Run("rclone copy", copied, span.seconds, span.cpu, span.server_cpu, problem)


# --- the whole benchmark ----------------------------------------------------------------


def render(runs: list[Run], console: Console) -> None:
    table = new_table(
        "Server-side import of 16 KiB objects through rclone serve s3",
        ("tool", "objects", "seconds", "objects/s", "CPU-s / 1k obj", "server CPU-s / 1k", "check"),
        left=("tool", "check"),
    )
    for r in runs:
        per_k = 1000 / max(r.objects, 1)
        table.add_row(
            r.tool,
            f"{r.objects:,}",
            f"{r.seconds:.1f}",
            f"{r.objects / r.seconds:,.0f}",
            f"{r.cpu * per_k:.2f}",
            f"{r.server_cpu * per_k:.2f}",
            check_cell(r.problem, word="WARNING"),
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
    add_database_argument(parser)
    add_broker_argument(parser)


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
            with timed() as filled:
                populate(client, args.objects, threads=args.concurrency)
            console.print(
                f"populated {args.objects:,} images + labels in "
                f"{filled.seconds:.1f}s at {s3.endpoint}"
            )
            runs = [run_bayport(s3, work, args, console)]
            runs.append(run_rclone_copy(s3, args.objects, args.concurrency, console))
    render(runs, console)
    return 0 if all(r.problem is None for r in runs) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.s3import", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
