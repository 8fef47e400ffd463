"""Keys and paths: '..', '.', absolute paths and control characters are refused where a user
names them (422 naming the field) and fail the one object a source lists them for; any other
Unicode key is imported as it is."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from api.schemas import DatasetCreate, S3ConfigCreate
from bootstrap import Container
from importer import service
from importer.manifest import ImportManifest
from importer.object_list import object_list_problem
from importer.planner import UNSAFE_KEY
from importer.rules import key_problem
from metadata.models import ImportJob, LedgerEntry
from storage_adapters.base import StorageSpec
from storage_adapters.registry import open_store
from tests.support import InlineQueue, add_config, add_dataset

UNSAFE = [
    "a/../b",
    "..",
    "../escape",
    "a/./b",
    ".",
    "/etc/passwd",
    "nul\x00byte",
    "bell\x07",
    "new\nline",
    "cr\rlf",
    "tab\there",
    "del\x7f",
    "c1\x85next-line",
    "c1\x9bcsi",
    "lone\ud800surrogate",
    "x" * 1025,
]
SAFE = [
    "a/b.png",
    "猫/画像 1.png",
    "🐱/😀.jpg",
    "café.png",
    unicodedata.normalize("NFD", "café.png"),
    "a..b/c..",  # dots inside a name are fine
    ".hidden/.x",
    "with space/and+plus=&?#%.png",
    "é" * 512,  # 1024 UTF-8 bytes
]


@pytest.mark.parametrize("key", UNSAFE)
def test_unsafe_keys_have_a_reason(key: str) -> None:
    assert key_problem(key)


@pytest.mark.parametrize("key", SAFE)
def test_other_unicode_keys_are_fine(key: str) -> None:
    assert key_problem(key) is None


def _manifest(**source: Any) -> dict[str, Any]:
    return {"dataset": "Cats", "source": {"config_name": "src", **source}}


def _error_locs(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in exc.errors()]


@pytest.mark.parametrize("field", ["data_prefix", "label_prefix"])
@pytest.mark.parametrize("value", ["a/../b", "..", "x/./y", "a\x00b", "a\nb", "a\x85b", "a\x7f"])
def test_manifest_prefixes_refuse_unsafe_paths(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImportManifest.model_validate(_manifest(**{field: value}))
    assert ("source", field) in _error_locs(info.value)


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"object_list": "lists/../x.csv"}, "object_list"),
        ({"object_list": "lists/\x00.csv"}, "object_list"),
        ({"object_list": "lists/"}, "object_list"),
        ({"label_format": "coco", "coco_file": "../coco.json"}, "coco_file"),
        ({"label_format": "coco", "coco_file": "a\x1bb.json"}, "coco_file"),
        (
            {"mask_prefix": "m/../n", "mask_type": "SEMANTIC_MASK"},
            "mask_prefix",
        ),
    ],
)
def test_manifest_keys_refuse_unsafe_paths(source: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImportManifest.model_validate(_manifest(**source))
    assert ("source", field) in _error_locs(info.value)


@pytest.mark.parametrize("segment", ["..", "a/b", "a\x00", "/x", "猫"])
def test_segment_names_are_plain(segment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImportManifest.model_validate({**_manifest(), "segment": segment})
    assert ("segment",) in _error_locs(info.value)


def test_prefixes_keep_their_unicode_and_drop_outer_slashes() -> None:
    m = ImportManifest.model_validate(
        _manifest(data_prefix="/猫/画像/", label_prefix="ラベル", object_list="/l/🐱.csv")
    )
    assert (m.source.data_prefix, m.source.label_prefix) == ("猫/画像/", "ラベル/")
    assert m.source.object_list == "l/🐱.csv"


@pytest.mark.parametrize("value", ["a/../b", "a\x00b", "a\tb", "./x"])
def test_dataset_path_and_config_file_path_refuse_unsafe_paths(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        DatasetCreate.model_validate({"name": "Cats", "path": value})
    assert ("path",) in _error_locs(info.value)
    config = {
        "name": "c",
        "provider": "s3",
        "bucket_name": "bucket",
        "accesskey_id": "id",
        "accesskey_secret": "secret",
        "file_path": value,
    }
    with pytest.raises(ValidationError) as info:
        S3ConfigCreate.model_validate(config)
    assert ("file_path",) in _error_locs(info.value)


def test_object_list_rows_refuse_unsafe_keys_and_label_keys() -> None:
    assert object_list_problem("d/猫.png", "d/") is None
    assert "control characters" in (object_list_problem("d/a\x85.png", "d/") or "")
    assert "'..'" in (object_list_problem("d/../x.png", "d/") or "")
    assert "label_key" in (object_list_problem("d/a.png", "d/", label_key="../l.json") or "")
    assert "label_key" in (object_list_problem("d/a.png", "d/", label_key="l\n.json") or "")
    assert object_list_problem("d/a.png", "d/", label_key="l/猫.json") is None


# --- a source that lists unsafe keys ----------------------------------------------------

GOOD_KEYS = [
    "ok.png",
    "猫/画像 1.png",
    "🐱/😀.png",
    "café.png",  # NFC
    unicodedata.normalize("NFD", "café.png"),  # NFD: another key
]
BAD_KEYS = [
    "../../../escape.png",
    "a/../../escape-too.png",
    "a/./b.png",
    "bell\x07.png",
    "line\nbreak.png",
    "c1\x85.png",
]


def test_unsafe_listed_keys_fail_alone_and_nothing_is_written_outside_the_root(
    container: Container, workspace_id: str, queue: InlineQueue, tmp_path: Path
) -> None:
    ctx = container.ctx
    source = open_store(StorageSpec(provider="memory", bucket="unsafe-source"))
    for i, key in enumerate(GOOD_KEYS + BAD_KEYS):
        source.put(f"data/{key}", f"object {i}".encode())
    add_config(ctx, container.box, workspace_id=workspace_id, name="src", bucket="unsafe-source")
    # The dataset lives in Bayport's default storage: a local folder.
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=None)
    manifest = ImportManifest.model_validate(_manifest(data_prefix="data/"))
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest)
    queue.drain(ctx)

    with ctx.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
        rows = {r.source_key: r for r in uow.session.exec(select(LedgerEntry)).all()}
    assert done is not None
    assert done.state == "partially_failed", done.error
    assert (done.listed, done.copied, done.failed) == (
        len(GOOD_KEYS) + len(BAD_KEYS),
        len(GOOD_KEYS),
        len(BAD_KEYS),
    )
    for key in BAD_KEYS:
        row = rows[f"data/{key}"]
        assert (row.outcome, row.error_code) == ("failed", UNSAFE_KEY)
        assert row.error_message and repr(f"data/{key}") in row.error_message
    dest_root = container.settings.resolved_default_storage_dir
    for i, key in enumerate(GOOD_KEYS):
        row = rows[f"data/{key}"]
        assert row.outcome == "copied"
        assert (dest_root / row.dest_key).read_bytes() == f"object {i}".encode()
    # Both spellings of café.png arrived, as two files.
    names = {p.name for p in dest_root.rglob("*.png")}
    assert {"café.png", unicodedata.normalize("NFD", "café.png")} <= names
    # Nothing landed outside the dataset storage's folder, nor any unsafe name inside it.
    outside = [p for p in tmp_path.rglob("escape*") if dest_root not in p.parents]
    assert outside == []
    assert not any(n.startswith(("bell", "line", "c1", "escape")) for n in names)
    assert not (dest_root.parent / "escape.png").exists()

    # A retry of the failed objects refuses them again, and copies nothing twice.
    retried = service.retry_import(ctx, workspace_id=workspace_id, job_id=job.id)
    queue.drain(ctx)
    with ctx.db.uow() as uow:
        again = uow.session.get(ImportJob, retried.id)
        failures = uow.session.exec(
            select(LedgerEntry).where(LedgerEntry.outcome == "failed")
        ).all()
    assert again is not None and again.state == "partially_failed"
    assert (again.run, again.copied, again.failed) == (2, len(GOOD_KEYS), len(BAD_KEYS))
    assert {r.error_code for r in failures} == {UNSAFE_KEY}
    assert len(failures) == len(BAD_KEYS)
