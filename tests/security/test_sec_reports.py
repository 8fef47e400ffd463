"""Reports and downloads a browser or spreadsheet opens: a key named like a formula is text
in the CSV report, a downloaded file is an attachment never sniffed into a page, and every
API answer says nosniff."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bootstrap import Container, build_container
from devstack.sample import make_png
from metadata.db import migrate
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tensorbay_api import PREFIX
from tests.conftest import make_settings
from tests.support import InlineQueue, add_seed_configs, api_client, new_workspace

EVIL = '=HYPERLINK("http://evil","x").png'
FORMULAS = [EVIL, "+1+2.png", "-3.png", "@SUM(A1).png", "  =1+1.png"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Container, InlineQueue, TestClient]]:
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    workspace, key = new_workspace(container)
    add_seed_configs(container.ctx, container.box, workspace_id=workspace.id)
    client = api_client(container, key)
    r = client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
    assert r.status_code == 201, r.text
    yield container, queue, client
    container.db.dispose()
    MemoryBackend.forget_named()


def _import(world: Any) -> str:
    container, queue, client = world
    store = open_store(StorageSpec(provider="memory", bucket="user"))
    for i, name in enumerate(FORMULAS, start=1):
        store.put(name, make_png(i))
    r = client.post(
        "/v1/imports",
        json={"dataset": "Cats", "source": {"config_name": "user-bucket", "data_prefix": ""}},
    )
    assert r.status_code == 202, r.text
    queue.drain(container.ctx)
    job_id: str = r.json()["id"]
    assert client.get(f"/v1/imports/{job_id}").json()["counts"]["copied"] == len(FORMULAS)
    return job_id


def test_a_key_named_like_a_formula_is_text_in_the_csv_report(world: Any) -> None:
    _, _, client = world
    job_id = _import(world)
    r = client.get(f"/v1/imports/{job_id}/report", params={"format": "csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(FORMULAS)
    cells = [value for row in rows for value in row.values() if value]
    # No cell a spreadsheet would run: each starts with a quote where it started with a
    # formula character (after spaces).
    for cell in cells:
        assert not cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert {row["source_key"] for row in rows} == {"'" + name for name in FORMULAS}
    # The JSON report keeps the keys as they are.
    r = client.get(f"/v1/imports/{job_id}/report", params={"format": "json"})
    assert {row["source_key"] for row in json.loads(r.text)} == set(FORMULAS)


def test_a_downloaded_file_is_an_attachment_never_sniffed(world: Any) -> None:
    container, _, client = world
    folder = container.settings.resolved_default_storage_dir
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    name = 'evil "page";\r\n.html'
    (folder / "pages" / "evil.html").write_bytes(b"<script>alert(document.cookie)</script>")
    for key, quoted in (("pages/evil.html", "evil.html"),):
        token = container.box.seal(
            {"config": "", "root": "", "key": key, "expires": str(int(time.time()) + 60)}
        )
        r = client.get(f"{PREFIX}/_files/{token.decode()}")
        assert r.status_code == 200, r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment;"), disposition
        assert f"filename*=UTF-8''{quoted}" in disposition
    from tensorbay_api.files import attachment

    header = attachment(f"a/{name}")
    assert "\r" not in header and "\n" not in header
    assert header.count('"') == 2  # the plain filename's own quotes only
    assert "filename*=UTF-8''evil%20%22page%22%3B%0D%0A.html" in header


def test_every_api_answer_says_nosniff(world: Any) -> None:
    _, _, client = world
    for path in ("/v1/datasets", "/v1/imports/nope/report", "/healthz"):
        r = client.get(path)
        assert r.headers.get("x-content-type-options") == "nosniff", (path, r.status_code)
