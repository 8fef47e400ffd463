"""Storage configs: found by name, listed, and whether a dataset or a job still uses one.
Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from metadata.models import Dataset, ImportJob, StorageConfig


def get_config(session: Session, *, workspace_id: str, name: str) -> StorageConfig | None:
    return session.exec(
        select(StorageConfig).where(
            StorageConfig.workspace_id == workspace_id, StorageConfig.name == name
        )
    ).first()


def list_configs(session: Session, *, workspace_id: str) -> Sequence[StorageConfig]:
    return session.exec(
        select(StorageConfig)
        .where(StorageConfig.workspace_id == workspace_id)
        .order_by(col(StorageConfig.name))
    ).all()


def config_in_use(session: Session, *, config_id: str) -> int:
    n = session.exec(
        select(func.count()).select_from(Dataset).where(Dataset.config_id == config_id)
    ).one()
    jobs = session.exec(
        select(func.count()).select_from(ImportJob).where(ImportJob.source_config_id == config_id)
    ).one()
    return int(n) + int(jobs)


def config_names(session: Session, *, config_ids: Sequence[str]) -> dict[str, str]:
    """Each config's name by its id (one query for a listing of datasets)."""
    if not config_ids:
        return {}
    rows = session.exec(
        select(StorageConfig.id, StorageConfig.name).where(col(StorageConfig.id).in_(config_ids))
    ).all()
    return {config_id: name for config_id, name in rows}
