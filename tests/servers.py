"""Fixtures for the real servers the integration and end-to-end suites talk to.

Each uses the server the environment names (BAYPORT_TEST_REDIS_URL, BAYPORT_TEST_POSTGRES_URL,
BAYPORT_TEST_S3_ENDPOINT + keys) or starts one; when neither works it fails in CI and skips
only on a developer's machine.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack import services as local_services
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store


def _unavailable(what: str) -> None:
    from tests.conftest import unavailable

    unavailable(what)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = os.environ.get("BAYPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    started = None
    if not local_services.redis_reachable(base):
        try:
            started = local_services.start_valkey(data_dir=tmp_path_factory.mktemp("valkey"))
        except Exception as exc:
            _unavailable(f"no Redis at {base} and valkey would not start: {exc}")
        assert started is not None
        base = started.url
    # A database number of its own, claimed in database 0 so that test sessions running at
    # once on one Redis never share a queue (a worker of one would take the other's tasks),
    # and emptied, so a leftover task of an earlier run finds nothing here.
    import redis

    client = redis.Redis.from_url(urlsplit(base)._replace(path="/0").geturl())
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    numbers = list(range(1, 16))
    random.shuffle(numbers)
    db = next(
        (n for n in numbers if client.set(f"bayport-test:db:{n}", token, nx=True, ex=4 * 3600)),
        numbers[0],  # all claimed (stale claims expire): share one, as before
    )
    redis.Redis.from_url(urlsplit(base)._replace(path=f"/{db}").geturl()).flushdb()
    yield urlsplit(base)._replace(path=f"/{db}").geturl()
    with contextlib.suppress(redis.RedisError):
        if client.get(f"bayport-test:db:{db}") == token.encode():
            client.delete(f"bayport-test:db:{db}")
    client.close()
    if started:
        started.stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get(
        "BAYPORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    started = None
    if not local_services.postgres_reachable(url):
        try:
            url, started = local_services.ensure_postgres(tmp_path_factory.mktemp("pg"))
        except Exception as exc:
            _unavailable(f"no PostgreSQL at {url} and none could be started: {exc}")
    yield url
    if started:
        started.stop()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    name = f"bayport_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        try:
            # A natural-language collation, as production databases often have: key order
            # must not depend on it (the ledger's key columns are byte-ordered).
            conn.execute(
                text(
                    f'CREATE DATABASE "{name}" TEMPLATE template0 '
                    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                )
            )
        except DBAPIError:  # a server without ICU
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 server that checks SigV4: `rclone serve s3` on a temporary folder."""
    if os.environ.get("BAYPORT_TEST_S3_ENDPOINT"):
        yield {
            "endpoint": os.environ["BAYPORT_TEST_S3_ENDPOINT"],
            "access_key": os.environ["BAYPORT_TEST_S3_ACCESS_KEY"],
            "secret_key": os.environ["BAYPORT_TEST_S3_SECRET_KEY"],
            "root": "",
        }
        return
    root = tmp_path_factory.mktemp("rclone-s3")
    ak, sk = "test" + secrets.token_hex(4), secrets.token_hex(16)
    try:
        server = local_services.start_rclone_s3(root, access_key=ak, secret_key=sk)
    except Exception as exc:
        _unavailable(f"rclone serve s3 would not start: {exc}")
    with server:
        yield {"endpoint": server.url, "access_key": ak, "secret_key": sk, "root": str(root)}


def s3_store(server: dict[str, str], bucket: str) -> ObjectStore:
    creds = {"accesskey_id": server["access_key"], "accesskey_secret": server["secret_key"]}
    return open_store(StorageSpec("s3", bucket, endpoint=server["endpoint"], credentials=creds))


def make_bucket(server: dict[str, str], bucket: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=server["endpoint"],
        aws_access_key_id=server["access_key"],
        aws_secret_access_key=server["secret_key"],
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)


@pytest.fixture
def s3_buckets(rclone_s3: dict[str, str]) -> dict[str, Any]:
    """Two fresh buckets on the S3 server: the user's and the datasets'."""
    suffix = uuid.uuid4().hex[:10]
    names = {"source_bucket": f"user-{suffix}", "dest_bucket": f"datasets-{suffix}"}
    for bucket in names.values():
        make_bucket(rclone_s3, bucket)
    return {
        **rclone_s3,
        **names,
        "source": s3_store(rclone_s3, names["source_bucket"]),
        "dest": s3_store(rclone_s3, names["dest_bucket"]),
    }


@pytest.fixture
def stack_factory(redis_url: str, tmp_path: Path) -> Any:
    """Starts the whole product (API + a real Celery worker process) on a fresh DB."""
    from cli.stack import local_stack

    @contextlib.contextmanager
    def factory(
        *,
        database_url: str | None = None,
        workers: int = 2,
        tls: bool = False,
        env: dict[str, str] | None = None,
    ) -> Iterator[Any]:
        overrides = {
            "BAYPORT_BROKER_URL": redis_url,
            "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
            # Each stack counts its own metrics.
            "BAYPORT_METRICS_NAMESPACE": f"bayport-test-{uuid.uuid4().hex[:10]}",
            # The test servers listen on 127.0.0.1 (see make_settings).
            "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS": "127.0.0.1",
        }
        if database_url:
            overrides["BAYPORT_DATABASE_URL"] = database_url
        overrides.update(env or {})
        with local_stack(
            data_dir=tmp_path / "bayport",
            overrides=overrides,
            worker_processes=workers,
            worker_log=tmp_path / "worker.log",
            tls=tls,
        ) as stack:
            try:
                yield stack
            except BaseException:
                log = tmp_path / "worker.log"
                if log.exists():
                    print("---- worker log ----\n" + log.read_text()[-8000:])
                raise

    return factory


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own (valkey): no other test's worker takes its tasks or shares
    its rate limits, and MONITOR sees only this test's traffic."""
    try:
        server = local_services.start_valkey(data_dir=tmp_path / "valkey")
    except Exception as exc:
        _unavailable(f"valkey would not start: {exc}")
    with server:
        yield server.url
