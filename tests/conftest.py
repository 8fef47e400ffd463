"""Fixtures for every suite: settings on a temporary data dir, a migrated SQLite DB."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from storage_adapters.memory import MemoryBackend
from tests.support import InlineQueue, new_workspace

IN_CI = bool(os.environ.get("CI"))
# Tests count their metrics apart from a developer's own Bayport on the same Redis.
TEST_METRICS_NAMESPACE = f"bayport-test-{os.getpid()}"

pytest_plugins = ["tests.servers", "tests.oss_fixtures", "tests.azure_fixtures"]


def unavailable(what: str) -> None:
    """A server a test needs is missing: fail in CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{what} (CI must have it: the test script starts it)")
    pytest.skip(what)  # only outside CI: in CI the line above fails instead


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "secret_key": Fernet.generate_key().decode(),
        "retry_initial_wait": 0.01,
        "retry_max_wait": 0.05,
        "retry_attempts": 4,
        "metrics_namespace": TEST_METRICS_NAMESPACE,
        # The test servers (S3, OSS, Azurite) listen on 127.0.0.1, a loopback address
        # storage configs may name only when the operator allows it.
        "allowed_private_endpoints": ["127.0.0.1"],
        # Counted per client address, which every TestClient shares ("testclient") in one
        # Redis: a test of these limits sets them.
        "api_ip_rate_limit": "",
        "api_auth_failure_limit": "",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "bayport")


@pytest.fixture
def queue() -> InlineQueue:
    return InlineQueue()


@pytest.fixture
def container(settings: Settings, queue: InlineQueue) -> Iterator[Container]:
    migrate(settings.resolved_database_url)
    built = build_container(settings, enqueuer=queue)
    yield built
    built.db.dispose()


@pytest.fixture
def workspace_id(container: Container) -> str:
    workspace, _key = new_workspace(container, "test")
    return workspace.id


@pytest.fixture(autouse=True)
def _fresh_memory_buckets() -> Iterator[None]:
    yield
    MemoryBackend.forget_named()
