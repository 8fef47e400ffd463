"""Log masking is per record: a storage config's secrets are masked in the records of the
work that uses the config, so a tenant whose "secret" is an everyday word (Traceback) blinds
no one else's logs, while a real secret of the config in play is masked in its records,
exception text included."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bayport import logs
from bootstrap import Container, build_container
from metadata.db import migrate
from stores.resolver import ConfigStores
from tests.conftest import make_settings
from tests.support import InlineQueue, add_config, new_workspace

log = logging.getLogger("bayport.test.sec_logs")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Container, io.StringIO]]:
    settings = make_settings(tmp_path / "bayport", log_level="DEBUG")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    out = io.StringIO()
    handler = logs.configure_logging(settings, stream=out)
    yield container, out
    logging.getLogger().removeHandler(handler)
    container.db.dispose()


def _config(container: Container, name: str, secret: str) -> object:
    workspace, _ = new_workspace(container, name)
    return add_config(
        container.ctx,
        container.box,
        workspace_id=workspace.id,
        name=name,
        bucket=name,
        credentials={"accesskey_id": "id-" + name, "accesskey_secret": secret},
    )


def _fail(message: str) -> None:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        log.exception("a shard failed")


def test_a_tenants_common_word_secret_blinds_no_other_tenants_logs(
    world: tuple[Container, io.StringIO],
) -> None:
    container, out = world
    stores = container.ctx.stores
    assert isinstance(stores, ConfigStores)
    real = "sk-" + secrets.token_hex(20)
    tenant_a = _config(container, "alice", "Traceback")
    tenant_a_real = _config(container, "alice2", real)
    with logs.log_context(job_id="job-a"):
        stores.for_config(tenant_a)  # type: ignore[arg-type]
        stores.for_config(tenant_a_real)  # type: ignore[arg-type]
        log.warning("alice's request failed with key %s", real)
        _fail(f"signature mismatch for {real}")
    with logs.log_context(job_id="job-b"):
        log.info("bob's Traceback word stays")
        _fail("bob's own error")
    with logs.log_context(job_id="job-a-again"):
        # Alice's next task gets her cached store: its secret is masked in this task too.
        stores.for_config(tenant_a_real)  # type: ignore[arg-type]
        _fail(f"denied again: {real}")
    text = out.getvalue()
    # Tenant A's "secret" Traceback masks nothing: B's records keep the word.
    assert "bob's Traceback word stays" in text, text
    a_part, b_part = text.split("bob's Traceback word stays")
    # ... nor B's tracebacks, nor A's own.
    assert "Traceback (most recent call last)" in b_part
    assert "RuntimeError: bob's own error" in b_part
    assert "Traceback (most recent call last)" in a_part
    # Tenant A's real secret is masked in A's records: the message and the exception text,
    # in a later task using A's cached store too.
    assert real not in text
    assert "alice's request failed with key ***" in a_part
    assert "signature mismatch for ***" in a_part
    assert "denied again: ***" in b_part


@pytest.mark.parametrize("value", ["Traceback", "Exception", "password", "sixchr", "with space"])
def test_short_or_common_values_are_never_masks(value: str) -> None:
    logs.redact(value)
    with logs.log_context(job_id="j"):
        logs.redact(value)
        assert logs.scrub(f"a {value} here") == f"a {value} here"
    assert logs.scrub(f"a {value} here") == f"a {value} here"


def test_the_sets_of_masks_are_capped() -> None:
    with logs.log_context(job_id="many-configs"):
        many = [f"k{n:04d}-" + secrets.token_hex(8) for n in range(300)]
        logs.redact(*many)
        assert logs.scrub(many[0]) == logs.MASK
        assert logs.scrub(many[-1]) == many[-1]  # past the scope's cap (256)
    # Outside any scope, the recent config secrets are masked: at most 1024 of them.
    unscoped = [f"u{n:05d}-" + secrets.token_hex(8) for n in range(1100)]
    logs.redact(*unscoped)
    assert logs.scrub(unscoped[-1]) == logs.MASK
    assert logs.scrub(unscoped[0]) == unscoped[0]
