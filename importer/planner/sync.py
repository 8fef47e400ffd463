"""A sync's diff against the ledger: which listed objects to copy, relabel or leave as
they are, which are gone, and which label files changed since the ledger read them."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlmodel import Session

from importer.context import ImportContext, log
from importer.jobs import JobPlace
from importer.manifest import SourceSpec
from importer.planner.notes import LABEL_CHANGED
from importer.planner.walk import Walk
from importer.rules import PlannedObject, label_key_for, remote_path
from metadata.queries import ledger as ledger_q
from metadata.queries import notes
from metadata.queries._common import PRESENT_OUTCOMES
from storage_adapters.base import ObjectInfo, ObjectStore


@dataclass
class Verdict:
    """What a sync does with one listing page."""

    to_copy: list[PlannedObject] = field(default_factory=list)
    to_relabel: list[PlannedObject] = field(default_factory=list)
    unchanged: int = 0
    gone: list[str] = field(default_factory=list)  # remote paths no longer in the source
    without_etag: int = 0  # compared without an ETag on one side: copied again


def compare_with_ledger(
    s: Session,
    place: JobPlace,
    planned: list[PlannedObject],
    listed: Sequence[ObjectInfo],
    walk: Walk,
    coco_etag: str | None,
) -> Verdict:
    """Compare a page with the ledger, without a storage request. In order, the ledger's
    entries between the previous page's last key and this page's are walked in chunks:
    an entry of this source the page does not list is gone. Out of order, the page's keys
    are looked up one by one, and nothing is found gone."""
    spec = place.manifest.source
    prefix = spec.data_prefix
    src_id = place.source_config.id
    by_rel = {remote_path(o.key, prefix): o for o in planned}
    listed_rels = {remote_path(o.key, prefix) for o in listed}
    label_keys = [o.label_key for o in planned if o.label_key is not None]
    changed_labels = notes.notes_among(s, job_id=place.job.id, kind=LABEL_CHANGED, keys=label_keys)
    delete = place.manifest.options.delete
    verdict = Verdict()
    decided: set[str] = set()

    def judge(entry: ledger_q.LedgerFacts) -> None:
        rel = entry.remote_path
        if (
            entry.source_config_id != src_id
            or entry.source_key != prefix + rel
            or entry.outcome not in PRESENT_OUTCOMES
        ):
            return
        obj = by_rel.get(rel)
        if obj is None:
            if delete and walk.ordered and rel not in listed_rels:
                verdict.gone.append(rel)
            return
        decided.add(rel)
        if entry.source_etag is None or obj.etag is None:
            # Without an ETag on both sides, equal sizes prove nothing (None == None is no
            # comparison): the object is copied again, and the listing's lack is counted.
            verdict.to_copy.append(obj)
            verdict.without_etag += 1
        elif entry.source_etag != obj.etag or entry.size != obj.size:
            verdict.to_copy.append(obj)
        elif spec.coco_file is not None and entry.label_key in (spec.coco_file, None):
            # Labelled from the segment's COCO file: relabelled when the file changed.
            if entry.label_etag != coco_etag:
                verdict.to_relabel.append(obj.relabel())
            else:
                verdict.unchanged += 1
        elif (
            entry.label_key == obj.label_key
            or (entry.label_key is None and not entry.labelled and obj.label_key is not None)
            or (spec.mask_prefix is not None and entry.label_key == _mask_key(spec, obj.key))
        ):
            # Same label file, or none was found before: re-read it if it changed (or
            # appeared) since the ledger read it.
            if obj.label_key is not None and obj.label_key in changed_labels:
                verdict.to_relabel.append(obj.relabel())
            else:
                verdict.unchanged += 1
        else:
            verdict.to_copy.append(obj)  # paired with another label file now

    if walk.ordered:
        for entry in ledger_q.walk_ledger(
            s, segment_id=place.segment.id, after=walk.last, upto=walk.upto
        ):
            judge(entry)
    else:
        for found in ledger_q.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=list(by_rel)
        ).values():
            judge(ledger_q.LedgerFacts.of(found))
    verdict.to_copy.extend(o for rel, o in by_rel.items() if rel not in decided)
    return verdict


def _mask_key(spec: SourceSpec, key: str) -> str | None:
    """The mask file paired with `key` (the object's label file when it has no other); None
    when the source has no masks."""
    if spec.mask_prefix is None:
        return None
    return label_key_for(
        key,
        data_prefix=spec.data_prefix,
        label_prefix=spec.mask_prefix,
        label_suffix=spec.mask_suffix,
    )


def note_changed_labels(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """List the label folder beside the ledger (by label key, in order): a label file whose
    ETag differs from the one the ledger read, that is gone, or that appeared for an
    object imported without one is noted; the data listing then relabels those objects."""
    spec = place.manifest.source
    assert spec.label_prefix is not None
    src_id = place.source_config.id
    cursor: str | None = None
    last: str | None = None
    ordered = True
    total = 0
    while True:
        page = ctx.retry.call(functools.partial(source.list_page, spec.label_prefix, cursor=cursor))
        etags = {o.key: o.etag for o in page.objects if o.key.endswith(spec.suffix)}
        keys = [o.key for o in page.objects]
        seq = ([last] if last is not None else []) + keys
        ordered = ordered and all(a < b for a, b in itertools.pairwise(seq))
        upto = keys[-1] if keys and page.cursor is not None else None
        changed: list[str] = []
        seen: set[str] = set()
        with ctx.db.uow() as uow:
            s = uow.session
            entries: Iterable[ledger_q.LedgerFacts]
            if ordered:
                entries = ledger_q.walk_ledger(
                    s,
                    segment_id=place.segment.id,
                    after=last,
                    upto=upto,
                    by_label=True,
                    within=spec.label_prefix,
                )
            else:
                entries = map(
                    ledger_q.LedgerFacts.of,
                    ledger_q.ledger_entries_by_label(
                        s, segment_id=place.segment.id, label_keys=list(etags)
                    ),
                )
            for entry in entries:
                key = entry.label_key
                if key is None or entry.source_config_id != src_id:
                    continue
                if entry.outcome not in PRESENT_OUTCOMES:
                    continue
                seen.add(key)
                if key in etags:
                    if etags[key] != entry.label_etag:
                        changed.append(key)
                elif ordered and (entry.label_etag is not None or entry.labelled):
                    changed.append(key)  # the label file is gone
            changed.extend(k for k in etags if k not in seen)  # new: maybe an unlabelled object
            notes.add_job_notes(s, job_id=place.job.id, kind=LABEL_CHANGED, keys=changed)
            uow.commit()
        total += len(changed)
        if page.cursor is None:
            break
        cursor, last = page.cursor, keys[-1] if keys else last
    log.info(
        "job %s: %d label files new or changed since the ledger read them", place.job.id, total
    )
