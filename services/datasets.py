"""The dataset use cases both HTTP faces call: create a dataset on a storage config's
storage or on Bayport's own."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from importer.errors import Conflict, NotFound
from metadata import repository as repo
from metadata.db import Database
from metadata.models import Dataset, new_id


def create_dataset(
    *,
    workspace_id: str,
    db: Database,
    name: str,
    config_name: str | None = None,
    path: str | None = None,
) -> Dataset:
    """The new dataset: at `path` of `config_name`'s storage (its drafts' and imports'
    objects are copied there, or registered in place when they lie there already), or,
    without `config_name`, in a folder of its own of Bayport's storage. `path` normalized
    (importer/manifest.py's normalize_prefix) or None."""
    with db.uow() as uow:
        s = uow.session
        if repo.get_dataset(s, workspace_id=workspace_id, name=name):
            raise Conflict(f"dataset {name!r} already exists")
        dataset_id = new_id()
        if config_name is not None:
            config = repo.get_config(s, workspace_id=workspace_id, name=config_name)
            if config is None:
                raise NotFound(f"storage config {config_name!r} does not exist")
            config_id, dataset_path = config.id, path or ""
        else:
            # Bayport's own storage: each dataset gets a folder of its own.
            config_id, dataset_path = None, f"{workspace_id}/{dataset_id}/{path or ''}"
        dataset = Dataset(
            id=dataset_id,
            workspace_id=workspace_id,
            name=name,
            config_id=config_id,
            path=dataset_path,
        )
        s.add(dataset)
        try:
            uow.commit()
        except IntegrityError as exc:
            raise Conflict(f"dataset {name!r} already exists") from exc
    return dataset
