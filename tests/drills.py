"""The independent check every drill ends with: is every source object at the destination
exactly once, byte-identical, with exactly one ledger row?

It reads the buckets and the metadata DB directly (not through Bayport's API or import
logic), so a bug in the importer cannot hide from it. Drills print the verdict as a row of
the closing note's table: drill, objects, faults injected, lost, duplicated, wall time.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from storage_adapters.base import ObjectStore


@dataclass
class Verdict:
    objects: int  # source objects under the data prefix
    lost: list[str] = field(default_factory=list)  # missing or different at the destination
    duplicated: list[str] = field(default_factory=list)  # >1 ledger row, or unasked-for copies
    unrecorded: list[str] = field(default_factory=list)  # at the destination, no ledger row
    not_copied: list[str] = field(default_factory=list)  # ledger outcome other than copied

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unrecorded or self.not_copied)

    def row(self, drill: str, faults: str, wall_seconds: float) -> str:
        """A row of the closing note's table (printed by the drill; pytest -s shows it)."""
        return (
            f"| {drill} | {self.objects} | {faults} | {len(self.lost)} | "
            f"{len(self.duplicated)} | {wall_seconds:.1f} s |"
        )

    def __str__(self) -> str:
        return (
            f"{self.objects} objects: lost {self.lost[:5]}, duplicated {self.duplicated[:5]}, "
            f"unrecorded {self.unrecorded[:5]}, not copied {self.not_copied[:5]}"
        )


def _all(store: ObjectStore, prefix: str) -> dict[str, int]:
    found: dict[str, int] = {}
    cursor = None
    while True:
        page = store.list_page(prefix, cursor=cursor)
        for info in page.objects:
            found[info.key] = info.size
        cursor = page.cursor
        if not cursor:
            return found


def _digest(store: ObjectStore, key: str, size: int) -> str:
    return hashlib.sha256(store.get_bytes(key, max_size=max(size, 1))).hexdigest()


def verify_import(
    *,
    source: ObjectStore,
    data_prefix: str,
    dest: ObjectStore,
    dest_prefix: str,
    database_url: str,
    job_id: str,
) -> Verdict:
    """Source objects under `data_prefix` against the destination objects under
    `dest_prefix` (the dataset path + segment + "/") and the ledger rows of `job_id`'s
    segment. Compares every object's bytes (SHA-256)."""
    wanted = {k[len(data_prefix) :]: size for k, size in _all(source, data_prefix).items()}
    landed = {k[len(dest_prefix) :]: size for k, size in _all(dest, dest_prefix).items()}
    verdict = Verdict(objects=len(wanted))
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            segment_id = conn.execute(
                text("SELECT segment_id FROM import_job WHERE id = :id"), {"id": job_id}
            ).scalar_one()
            rows = conn.execute(
                text("SELECT remote_path, outcome FROM ledger_entry WHERE segment_id = :s"),
                {"s": segment_id},
            ).all()
    finally:
        engine.dispose()
    per_path = Counter(path for path, _ in rows)
    outcomes = {path: outcome for path, outcome in rows}
    for rel, size in sorted(wanted.items()):
        same = landed.get(rel) == size and _digest(source, data_prefix + rel, size) == _digest(
            dest, dest_prefix + rel, size
        )
        if not same:
            verdict.lost.append(rel)
        if per_path[rel] > 1:
            verdict.duplicated.append(rel)
        if outcomes.get(rel) != "copied":
            verdict.not_copied.append(f"{rel}: {outcomes.get(rel)}")
    for rel in sorted(landed):
        if rel not in wanted:
            verdict.duplicated.append(rel)
        elif rel not in per_path:
            verdict.unrecorded.append(rel)
    return verdict
