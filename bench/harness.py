"""What every benchmark repeats, in one place: a Bayport stack started and waited for, the S3
server's client and rclone's remote for it, the reference tools' binaries, a timed span with
the CPU spent in it, peak RSS around a block of this process, and the result tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.procstat import RssSampler, peak_rss_bytes, reset_peak_rss, rss_bytes
from cli.stack import LocalStack, local_stack

DEFAULT_BROKER = "redis://127.0.0.1:6379/15"  # a database number the test suites do not pick


# --- command line -----------------------------------------------------------------------


def add_broker_argument(parser: argparse.ArgumentParser, default: str = DEFAULT_BROKER) -> None:
    """--broker-url: $BAYPORT_BROKER_URL, else `default`; the stack starts Valkey when it
    does not answer."""
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BAYPORT_BROKER_URL", default),
        help="Redis broker; started (valkey) when it does not answer",
    )


def add_database_argument(
    parser: argparse.ArgumentParser, help: str = "PostgreSQL server to use (default: SQLite)"
) -> None:
    """--database-url: a PostgreSQL server for a throwaway database (see fresh_database)."""
    parser.add_argument("--database-url", default=None, help=help)


# --- the S3 server -----------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    pid: int


def s3_client(s3: S3Server, *, pool: int = 32) -> Any:
    """A boto3 client of `s3` (path-style, standard retries, `pool` connections)."""
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


def count_keys(client: Any, bucket: str, prefix: str = "") -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def register_s3_configs(client: Any, s3: S3Server, buckets: dict[str, str]) -> None:
    """Through the API (a cli.client.BayportClient): an s3 storage config a bucket on `s3`
    ({config name: bucket}), all on the same endpoint and keys, so that copies between
    them are server-side CopyObject."""
    for name, bucket in buckets.items():
        client.create_storage_config(
            name=name,
            provider="s3",
            endpoint=s3.endpoint,
            bucket_name=bucket,
            accesskey_id=s3.access_key,
            accesskey_secret=s3.secret_key,
        )


def rclone_env(s3: S3Server) -> dict[str, str]:
    """This process's environment plus an rclone remote `bench:` on `s3`."""
    return {
        **os.environ,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": s3.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": s3.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": s3.secret_key,
    }


# --- the stack --------------------------------------------------------------------------


@contextlib.contextmanager
def bayport_stack(
    data_dir: Path,
    *,
    broker_url: str,
    workers: int,
    log: Path,
    allow_endpoints: Sequence[str],
    database_url: str | None = None,
    overrides: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Bayport as `bayport standalone` runs it (cli.stack.local_stack: the API in this
    process, a real Celery worker with `workers` processes logging to `log`), on SQLite in
    `data_dir` or a throwaway database on `database_url`'s PostgreSQL server; yielded once
    the worker answers a ping, so startup is never timed."""
    settings = {"BAYPORT_BROKER_URL": broker_url, **(overrides or {})}
    with fresh_database(database_url) as url:
        if url:
            settings["BAYPORT_DATABASE_URL"] = url
        with local_stack(
            data_dir=data_dir,
            overrides=settings,
            worker_processes=workers,
            worker_log=log,
            allow_endpoints=list(allow_endpoints),
        ) as stack:
            wait_for_worker(stack, log)
            yield stack


def wait_for_worker(stack: LocalStack, log: Path, timeout: float = 60.0) -> None:
    """Until the worker answers a ping: its pool is up, so startup is not measured."""
    from taskqueue.app import make_celery

    app = make_celery(stack.settings)
    deadline = time.monotonic() + timeout
    try:
        while not app.control.ping(timeout=0.5):
            if stack.workers[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{tail(log)}")
    finally:
        app.close()
    time.sleep(1.0)  # let the pool children finish their imports


@contextlib.contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
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


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log, for a failure's message."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def tool_binary(name: str) -> str:
    """A reference tool's binary: the one installed beside this interpreter (the project's
    virtualenv) first, then PATH's."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def rclone_binary() -> str:
    return tool_binary("rclone")


# --- timing -----------------------------------------------------------------------------


def children_cpu() -> float:
    """User + system CPU of this process's reaped children (a reference tool run to its end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Span:
    """A timed block: wall seconds, the tool's and the servers' CPU seconds over it."""

    seconds: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0


@contextlib.contextmanager
def timed(
    tool_cpu: Callable[[], float] | None = None, server_cpu: Callable[[], float] | None = None
) -> Iterator[Span]:
    """Times the block; with `tool_cpu` / `server_cpu` (readings of CPU seconds used so far,
    e.g. a worker tree's or the S3 server's), also what each used over it. Filled in when
    the block ends, also when it raises."""
    span = Span()
    cpu = tool_cpu() if tool_cpu else 0.0
    servers = server_cpu() if server_cpu else 0.0
    started = time.perf_counter()
    try:
        yield span
    finally:
        span.seconds = time.perf_counter() - started
        span.cpu = tool_cpu() - cpu if tool_cpu else 0.0
        span.server_cpu = server_cpu() - servers if server_cpu else 0.0


@dataclass
class Memory:
    """A block of this process measured: wall seconds and resident memory. `peak_rss` is
    the kernel's high-water mark (VmHWM) reset just before the block, or a 10 ms sampler's
    peak if higher; without the reset (an old kernel) the sampler's alone."""

    seconds: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    peak_rss: int = 0
    ru_maxrss: int = 0  # getrusage's, which Linux carries over from a parent: not shown


@contextlib.contextmanager
def peak_rss() -> Iterator[Memory]:
    """Measures the block's time and memory (see Memory). Meant for a fresh process
    (procstat.child_json), so that the peak is the block's and its setup's alone."""
    memory = Memory(rss_before=rss_bytes())
    reset = reset_peak_rss()
    sampler = RssSampler().start()
    started = time.perf_counter()
    yield memory
    memory.seconds = time.perf_counter() - started
    sampled = sampler.stop()
    memory.rss_after = rss_bytes()
    memory.ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB
    memory.peak_rss = max(peak_rss_bytes() if reset else 0, sampled)


# --- tables -----------------------------------------------------------------------------


def new_table(title: str, columns: Sequence[str], *, left: Collection[str] = ()) -> Table:
    """A result table: the columns named in `left` (names, tools, checks) read from the
    left, every other (a number) is right-justified."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def check_cell(problem: str | None, *, ok: str = "ok", word: str = "FAILED") -> str:
    """A table's check column: `ok`, or the problem in red after `word`."""
    return ok if problem is None else f"[red]{word}: {problem}[/]"
