"""The dataset use cases both HTTP faces call: create a dataset on a storage config's
storage or on Bayport's own, list and get datasets, set and get a dataset's catalog.

Bayport's API names a dataset by its name, TensorBay's by its id: the functions that find
one take either (`name=` or `dataset_id=`), and another workspace's dataset is not found.

A catalog is stored in one canonical form whichever face set it (`catalog_json`), so each
face reads back what the other set, and the import's label checks (importer/
object_import.py) read that same form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from importer.errors import Conflict, NotFound
from labels.catalog import Catalog
from metadata.db import Database
from metadata.models import Dataset, new_id
from metadata.queries import datasets, storage_configs
from services.lookup import dataset_by_id, dataset_named, draft_of


@dataclass(frozen=True)
class DatasetView:
    """A dataset and what its answers name besides: its storage config's name (None on
    Bayport's own storage) and its segments' names, sorted."""

    dataset: Dataset
    config_name: str | None
    segments: list[str]


@dataclass(frozen=True)
class DatasetPage:
    datasets: list[DatasetView]
    total: int  # the datasets that matched, on every page


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
        if datasets.get_dataset(s, workspace_id=workspace_id, name=name):
            raise Conflict(f"dataset {name!r} already exists")
        dataset_id = new_id()
        if config_name is not None:
            config = storage_configs.get_config(s, workspace_id=workspace_id, name=config_name)
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


def list_datasets(
    *,
    workspace_id: str,
    db: Database,
    name: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> DatasetPage:
    """The workspace's datasets by name, from `offset`, at most `limit`; with `name`, the
    one of exactly that name (TensorBay's SDK takes the first dataset it gets)."""
    with db.uow() as uow:
        s = uow.session
        found = list(datasets.list_datasets(s, workspace_id=workspace_id))
        if name is not None:
            found = [d for d in found if d.name == name]
        end = None if limit is None else offset + limit
        return DatasetPage(datasets=_views(s, found[offset:end]), total=len(found))


def get_dataset(
    *, workspace_id: str, db: Database, name: str | None = None, dataset_id: str | None = None
) -> DatasetView:
    with db.uow() as uow:
        s = uow.session
        return _views(s, [_find(s, workspace_id, name, dataset_id)])[0]


def catalog_json(catalog: Catalog) -> dict[str, Any]:
    """A catalog's canonical stored form: TensorBay's catalog JSON, every member that is set
    and not null (a null member means what an absent one does: the SDK's `Catalog.loads`
    reads no null, and the label checks see the same catalog either way)."""
    return catalog.model_dump(mode="json", by_alias=True, exclude_none=True)


def set_catalog(
    catalog: Catalog,
    *,
    workspace_id: str,
    db: Database,
    name: str | None = None,
    dataset_id: str | None = None,
    draft_number: int | None = None,
) -> dict[str, Any]:
    """Make `catalog` the one the dataset's labels are checked against (objects imported
    after this); with `draft_number` (TensorBay's call names one), only while that draft
    is open. The catalog as stored (`catalog_json`)."""
    with db.uow() as uow:
        s = uow.session
        dataset = _find(s, workspace_id, name, dataset_id)
        if draft_number is not None:
            draft_of(s, dataset, draft_number)
        dataset.catalog = catalog_json(catalog)
        s.add(dataset)
        uow.commit()
        return dict(dataset.catalog)


def get_catalog(
    *, workspace_id: str, db: Database, name: str | None = None, dataset_id: str | None = None
) -> dict[str, Any]:
    """The dataset's catalog as stored; {} before one is set."""
    with db.uow() as uow:
        return dict(_find(uow.session, workspace_id, name, dataset_id).catalog or {})


def _find(s: Session, workspace_id: str, name: str | None, dataset_id: str | None) -> Dataset:
    if (name is None) == (dataset_id is None):
        raise TypeError("name a dataset by its name or by its id")
    if dataset_id is not None:
        return dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
    assert name is not None
    return dataset_named(s, workspace_id=workspace_id, name=name)


def _views(s: Session, found: Sequence[Dataset]) -> list[DatasetView]:
    config_ids = sorted({d.config_id for d in found if d.config_id})
    names = storage_configs.config_names(s, config_ids=config_ids)
    segments = datasets.segment_names_of(s, dataset_ids=[d.id for d in found])
    return [
        DatasetView(
            dataset=d,
            config_name=names.get(d.config_id) if d.config_id else None,
            segments=segments[d.id],
        )
        for d in found
    ]
