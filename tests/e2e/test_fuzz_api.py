"""Fuzzing the HTTP API from its own OpenAPI spec (schemathesis): whatever a client sends,
every operation answers with a 2xx, 3xx or 4xx, never a 5xx.

Bounded for CI: a fixed number of examples per operation, derandomized (the same inputs on
every run), no deadline. The workspace holds a storage config, a dataset with a segment, an
import job and a schedule, so operations on existing resources are reached too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api.app import create_app
from bootstrap import Container, build_container
from metadata.db import migrate
from tests.conftest import make_settings
from tests.support import InlineQueue, new_workspace

EXAMPLES = 15


@pytest.fixture(params=["sqlite", "postgres"])
def fuzzed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    database: dict[str, Any] = {}
    if request.param == "postgres":  # stricter than SQLite: no NUL in text, for one
        database["database_url"] = request.getfixturevalue("postgres_database")
    settings = make_settings(
        tmp_path / "bayport",
        api_rate_limit="",  # thousands of requests a minute, on purpose
        local_roots=[str(tmp_path / "allowed")],
        **database,
    )
    migrate(settings.resolved_database_url)
    container: Container = build_container(settings, enqueuer=InlineQueue())
    workspace, key = new_workspace(container, "fuzz")
    app = create_app(container)
    # The workspace's local configs lie in its own folder of the roots: <root>/<its id>.
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    _seed(client, tmp_path / "allowed" / workspace.id)
    yield schemathesis.openapi.from_asgi("/openapi.json", app), key
    container.db.dispose()


def _seed(client: TestClient, workspace_folder: Path) -> None:
    folder = workspace_folder / "user"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    for path, body in (
        ("/v1/storage-configs", {"name": "user", "provider": "local", "bucket_name": str(folder)}),
        ("/v1/datasets", {"name": "Cats", "config_name": "user"}),
        ("/v1/imports", {"dataset": "Cats", "source": {"config_name": "user"}}),
        (
            "/v1/schedules",
            {
                "name": "nightly",
                "cron": "0 3 * * *",
                "manifest": {"dataset": "Cats", "segment": "s", "source": {"config_name": "user"}},
            },
        ),
    ):
        r = client.post(path, json=body)
        assert r.status_code < 300, (path, r.text)


def test_no_operation_answers_5xx(fuzzed: tuple[Any, str]) -> None:
    """Every operation, with valid (positive) and invalid (negative) inputs."""
    schema, key = fuzzed
    headers = {"Authorization": f"Bearer {key}"}
    problems: list[str] = []
    operations = 0
    calls = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # server-sent events stream until the job ends: not for fuzzing
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                calls[0] += 1
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except Exception as exc:  # collect every operation's failure, then fail
                inner = getattr(exc, "exceptions", None) or [exc]
                said = "; ".join(f"{type(e).__name__}: {e}" for e in inner)
                problems.append(f"{operation.method.upper()} {operation.path} ({mode}): {said}")
    print(f"\nfuzzed {operations} operations with {calls[0]} requests")
    assert operations >= 25
    assert not problems, "\n\n".join(problems)
