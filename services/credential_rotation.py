"""Secret key rotation: re-seal every stored provider credential under the newest key
(`bayport rotate-secrets`), while the service runs.

Each row is re-sealed in its own short transaction, as a compare-and-set on the sealed bytes
it read: a config created, changed or deleted meanwhile is never overwritten with stale
credentials, and no lock is held across rows. Rows already under the newest key are left
alone, so a run is idempotent and an interrupted run is resumed by running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlmodel import col, select

from crypto.secretbox import SecretBox, SecretBoxError
from metadata.db import Database
from metadata.models import StorageConfig

# A row rewritten by someone else between our read and our write is read again this often.
_ATTEMPTS = 3


@dataclass
class RotationReport:
    """What a pass did. `resealed` counts what a dry run would re-seal."""

    examined: int = 0
    resealed: int = 0
    current: int = 0  # already under the newest key: left alone
    busy: int = 0  # kept changing under us: still under an old key, for the next run
    unreadable: list[str] = field(default_factory=list)  # "<workspace id>/<name>": no key opens
    dry_run: bool = False

    @property
    def remaining(self) -> int:
        """Rows still sealed under an old key after this pass (not counting unreadable)."""
        return self.busy + (self.resealed if self.dry_run else 0)


def rotate_credentials(
    db: Database,
    box: SecretBox,
    *,
    batch_size: int = 100,
    dry_run: bool = False,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-seal every storage config's credentials under `box`'s newest key, in id order,
    `batch_size` rows read at a time; `progress` is called after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(dry_run=dry_run)
    after = ""
    while True:
        with db.uow() as uow:
            batch = uow.session.exec(
                select(
                    StorageConfig.id,
                    StorageConfig.workspace_id,
                    StorageConfig.name,
                    StorageConfig.credentials_encrypted,
                )
                .where(col(StorageConfig.id) > after)
                .order_by(col(StorageConfig.id))
                .limit(batch_size)
            ).all()
        if not batch:
            return report
        for config_id, workspace_id, name, sealed in batch:
            report.examined += 1
            _reseal(db, box, config_id, f"{workspace_id}/{name}", sealed, report)
        after = batch[-1][0]
        if progress is not None:
            progress(report)


def _reseal(
    db: Database, box: SecretBox, config_id: str, label: str, sealed: bytes, report: RotationReport
) -> None:
    for _ in range(_ATTEMPTS):
        if box.is_current(sealed):
            report.current += 1
            return
        try:
            resealed = box.rotate(sealed)
        except SecretBoxError:
            report.unreadable.append(label)
            return
        if report.dry_run:
            report.resealed += 1
            return
        with db.uow() as uow:
            result = uow.session.execute(
                update(StorageConfig)
                .where(
                    col(StorageConfig.id) == config_id,
                    col(StorageConfig.credentials_encrypted) == sealed,
                )
                .values(credentials_encrypted=resealed)
            )
            written = cast(CursorResult[Any], result).rowcount
            uow.commit()
        if written == 1:
            report.resealed += 1
            return
        # Changed (or deleted) since we read it: look again.
        with db.uow() as uow:
            now = uow.session.exec(
                select(StorageConfig.credentials_encrypted).where(
                    col(StorageConfig.id) == config_id
                )
            ).first()
        if now is None:
            return  # deleted: nothing to re-seal
        sealed = now
    report.busy += 1
