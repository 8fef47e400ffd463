"""A segment's COCO file, read once by the planning: each image's label stored for the
shard copiers, indexed on disk so memory stays flat."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from importer.context import ImportContext
from importer.jobs import JobPlace
from labels.formats.coco import CocoIndex
from metadata.queries import labels as labels_q
from storage_adapters.base import ObjectStore
from storage_adapters.errors import ErrorKind, StorageError


def load_coco_labels(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """Read the segment's COCO file once, streamed (to a temporary file, indexed on disk),
    and store each image's label for the shard copiers. Memory stays flat in its size."""
    coco_key = place.manifest.source.coco_file
    assert coco_key is not None
    cap = ctx.settings.max_coco_size
    with tempfile.TemporaryDirectory(prefix="bayport-coco-") as tmp:
        path = Path(tmp) / "coco.json"

        def too_big(size: str) -> StorageError:
            return StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"the COCO file is {size} bytes, more than the {cap} bytes allowed "
                "(BAYPORT_MAX_COCO_SIZE): no object of the job was labelled from it",
                key=coco_key,
                transient=False,
            )

        def download() -> None:
            size = source.head(coco_key).size
            if size > cap:  # refused by its size, before reading it
                raise too_big(str(size))
            written = 0
            with path.open("wb") as out:
                for chunk in source.open(coco_key):
                    written += len(chunk)
                    if written > cap:  # the store said less than it sends
                        raise too_big(f"at least {written}")
                    out.write(chunk)

        ctx.retry.call(download)
        with ctx.db.uow() as uow:
            labels_q.clear_import_labels(uow.session, job_id=place.job.id)
            uow.commit()
        with CocoIndex.build(lambda: path.open("rb"), Path(tmp) / "coco.db") as index:
            batch: list[tuple[str, dict[str, Any] | None]] = []
            for name, label in index.labels():
                batch.append((name, label or None))
                if len(batch) >= 1000:
                    _store_labels(ctx, place.job.id, batch)
                    batch = []
            _store_labels(ctx, place.job.id, batch)


def _store_labels(
    ctx: ImportContext, job_id: str, batch: list[tuple[str, dict[str, Any] | None]]
) -> None:
    with ctx.db.uow() as uow:
        labels_q.add_import_labels(uow.session, job_id=job_id, labels=batch)
        uow.commit()
