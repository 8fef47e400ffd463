"""Issue 20, item 7: /metrics in production needs BAYPORT_METRICS_TOKEN (or an explicit
BAYPORT_METRICS_PUBLIC=true), and scrapes within BAYPORT_METRICS_CACHE_SECONDS cost one
collection (each counts every running job's ledger)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from tests.conftest import make_settings
from tests.support import InlineQueue

DB_PASSWORD = "pw-Db-5ecret-0123"


def _production(tmp_path: Path, **overrides: Any) -> Settings:
    # An explicit database URL is what production asks for; SQLite keeps the test small.
    return make_settings(
        tmp_path / "bayport",
        environment="production",
        database_url=f"sqlite:///{tmp_path / 'prod.db'}",
        **overrides,
    )


def test_production_refuses_to_start_without_the_metrics_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BAYPORT_METRICS_TOKEN") as refused:
        Settings(
            environment="production",
            secret_key=Fernet.generate_key().decode(),
            database_url=f"postgresql+psycopg://bayport:{DB_PASSWORD}@db/bayport",
            bootstrap_access_key="bp_" + "k" * 40,
        )
    # The refusal names the setting, never the values it was given.
    assert DB_PASSWORD not in str(refused.value) and "k" * 40 not in str(refused.value)
    # Open on purpose, or behind a token: it starts.
    assert _production(tmp_path, metrics_public=True).metrics_public
    settings = _production(tmp_path, metrics_token="scrape-0123456789")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    try:
        client = TestClient(create_app(container))
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-0123456788"})
        assert wrong.status_code == 401 and "BAYPORT_METRICS_TOKEN" in wrong.text
        good = client.get("/metrics", headers={"Authorization": "Bearer scrape-0123456789"})
        assert good.status_code == 200 and "bayport_jobs" in good.text
    finally:
        container.db.dispose()


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[Container, list[str]]]:
    """A container whose DB statements on import jobs are counted (the collection's)."""
    settings = make_settings(
        tmp_path / "bayport",
        metrics_token="scrape-0123456789",
        metrics_cache_seconds=1.0,
        broker_url="amqp://guest@127.0.0.1:1//",  # no Redis: the DB part alone
    )
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "import_job" in statement:
            seen.append(statement)

    event.listen(container.db.engine, "before_cursor_execute", count)
    yield container, seen
    event.remove(container.db.engine, "before_cursor_execute", count)
    container.db.dispose()


def test_scrapes_within_the_cache_window_run_the_collection_once(
    counted: tuple[Container, list[str]],
) -> None:
    container, seen = counted
    client = TestClient(create_app(container))
    auth = {"Authorization": "Bearer scrape-0123456789"}
    first = client.get("/metrics", headers=auth)
    assert first.status_code == 200
    per_collection = len(seen)
    assert per_collection >= 1
    for _ in range(20):  # twenty scrapers at once
        again = client.get("/metrics", headers=auth)
        assert again.status_code == 200 and again.content == first.content
    assert len(seen) == per_collection, "a scrape within the cache window collected again"
    # An unauthenticated scrape neither collects nor gets the cached text.
    assert client.get("/metrics").status_code == 401 and len(seen) == per_collection
    time.sleep(1.1)  # the window has passed: the next scrape collects afresh
    assert client.get("/metrics", headers=auth).status_code == 200
    assert len(seen) == 2 * per_collection
