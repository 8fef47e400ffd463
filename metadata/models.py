"""The metadata DB's tables: workspaces, keys, storage configs, datasets, jobs, the ledger."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

# Keys compare byte by byte (as providers list them) on PostgreSQL too, so that a sync can
# walk the ledger in the listing's order; SQLite's default (BINARY) already does.
KeyText = Text().with_variant(Text(collation="C"), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class JobState(enum.StrEnum):
    QUEUED = "queued"
    LISTING = "listing"
    COPYING = "copying"
    SUCCEEDED = "succeeded"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Copies done, but deletions above the job's limits were held back: nothing deleted.
    NEEDS_REVIEW = "needs_review"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.PARTIALLY_FAILED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.NEEDS_REVIEW,
    }
)


class Outcome(enum.StrEnum):
    """What the last job that touched a ledger entry did with it."""

    PENDING = "pending"
    COPIED = "copied"
    REGISTERED = "registered"  # in-place import: no bytes moved
    SKIPPED = "skipped"  # already at the destination, unchanged
    RELABELLED = "relabelled"  # the object unchanged, its label file changed: re-parsed
    DELETED = "deleted"  # a tombstone: gone from the source, deleted from the dataset
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        return self is not Outcome.PENDING


class Workspace(SQLModel, table=True):
    __tablename__ = "workspace"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class AccessKey(SQLModel, table=True):
    """An API key of one workspace, with a role, maybe an expiry, maybe revoked. Only its
    SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "access_key"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    key_sha256: str = Field(unique=True, max_length=64)
    # To tell keys apart: the prefix and the last 4 characters ("bp_…x7Qz"), no more.
    hint: str = Field(max_length=16)
    name: str = Field(default="", max_length=200)
    # "read" (GET/HEAD only), "write" (everything but managing keys), "admin" (all).
    role: str = Field(default="write", max_length=8)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    # Updated at most once a minute per API process (metadata/access_keys.py).
    last_used_at: datetime | None = None


class StorageConfig(SQLModel, table=True):
    __tablename__ = "storage_config"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    provider: str = Field(max_length=16)
    file_path: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    endpoint: str | None = Field(default=None, max_length=2000)
    region: str | None = Field(default=None, max_length=64)
    bucket_name: str = Field(max_length=1024)  # the container, for Azure
    account_type: str | None = Field(default=None, max_length=16)  # Azure: "China" | "Global"
    # Fernet token of a JSON object of the provider's credentials.
    credentials_encrypted: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # A masked form of the key id for display ("AKIA…WXYZ"): never the secret.
    credentials_hint: str = Field(default="", max_length=64)
    # Caps held across all workers for every request made with this config (None: none).
    max_requests_per_second: float | None = None
    max_bytes_per_second: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    """A dataset lives at `path` inside a storage config (or Bayport's default storage when
    `config_id` is None); an import copies objects under `path/<segment>/`."""

    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    config_id: str | None = Field(default=None, foreign_key="storage_config.id", max_length=32)
    path: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # TensorBay catalog JSON ({TYPE: {categories, attributes, ...}}); labels are checked
    # against it when present.
    catalog: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # TensorBay notes ({isContinuous, binPointCloudFields}), kept as sent.
    notes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The latest commit (a version's name: 32 hex digits), None before the first.
    head_commit_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class Segment(SQLModel, table=True):
    __tablename__ = "segment"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    dataset_id: str = Field(foreign_key="dataset.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)


class ImportJob(SQLModel, table=True):
    """One submitted manifest. Counts of copied/skipped/failed objects are derived from the
    ledger while the job runs and frozen into the row when it ends."""

    __tablename__ = "import_job"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    dataset_id: str = Field(foreign_key="dataset.id", index=True, max_length=32)
    segment_id: str = Field(foreign_key="segment.id", max_length=32)
    source_config_id: str = Field(foreign_key="storage_config.id", max_length=32)
    # The manifest as submitted: names and options only, never credentials.
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The schedule whose run this job is (None for a job submitted directly).
    schedule_id: str | None = Field(default=None, index=True, max_length=32)
    # The client's Idempotency-Key (unique per workspace) and a hash of what it sent with it.
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    # Planning's lease: the task planning this job refreshes it; a stale one is re-dispatched.
    heartbeat_at: datetime | None = None
    state: str = Field(default=JobState.QUEUED.value, max_length=20, index=True)
    in_place: bool = False
    # The destination segment folder held nothing when the job started: no object of this
    # run can already be there, so copies need no existence check.
    dest_was_empty: bool = False
    run: int = 1  # incremented by each retry of failed objects
    cancel_requested: bool = False
    listing_done: bool = False
    # Set by the one task that finishes the job (reports, then finalizes); a stale claim
    # (its worker died) may be taken over.
    finishing_at: datetime | None = None
    # Where listing resumes if the planning task is redelivered: the last key planned.
    list_cursor: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_shard_seq: int = 0
    shards_total: int = 0
    listed: int = 0
    bytes_listed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    planned: int = 0  # objects put into shards to copy (the rest were skipped)
    # Counted while listing, committed with the cursor (so exact under redelivery):
    unchanged: int = 0  # the ledger holds them unchanged: skipped without a write
    relabel_planned: int = 0  # unchanged objects whose label file changed
    delete_planned: int = 0  # ledger entries gone from the source (tombstoned unless held)
    # Why deletions were held back (above max_delete / max_delete_percent, or an empty
    # listing): the job ends needs_review and deletes nothing.
    review_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Frozen at the end (see the docstring).
    copied: int = 0
    registered: int = 0
    skipped: int = 0
    failed: int = 0
    relabelled: int = 0
    deleted: int = 0
    unlabelled: int = 0  # imported without a label file (missing_label: import)
    labels_without_object: int = 0  # label files no listed object pairs with
    # Listed keys that are not the job's objects, by reason (importer.rules.NotData).
    left_out: dict[str, int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # What the user should know of a finished job that is not an error (why it imported
    # nothing, what it left out).
    notice: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    bytes_copied: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Shard(SQLModel, table=True):
    """A slice of a job's listing, copied by one `copy_shard` task."""

    __tablename__ = "shard"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="import_job.id", index=True, max_length=32)
    seq: int
    run: int = 1
    kind: str = Field(default="copy", max_length=16)  # "copy" | "delete"
    done: bool = False
    # Lease of the task copying the shard: when it was last sent to the queue, the task
    # holding it and its last heartbeat. A shard whose lease went stale is sent again.
    dispatched_at: datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=64)
    heartbeat_at: datetime | None = None
    deliveries: int = 0
    # [[key, size, etag, md5, label_key], ...] relative to the source config's root.
    items: list[list[Any]] = Field(sa_column=Column(JSON, nullable=False))
    object_count: int = 0
    byte_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class LedgerEntry(SQLModel, table=True):
    """The state of one object of a dataset segment: where it came from, where it is, its
    checksum and parsed label, and what the last job that touched it did."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        UniqueConstraint("segment_id", "remote_path"),
        Index("ix_ledger_job_outcome", "job_id", "outcome"),
        Index("ix_ledger_label_key", "segment_id", "label_key"),
        Index("ix_ledger_job_id", "job_id", "id"),  # a job's rows in order (its report)
        Index("ix_ledger_failed_job", "failed_job_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: str = Field(foreign_key="dataset.id", index=True, max_length=32)
    segment_id: str = Field(foreign_key="segment.id", max_length=32)
    remote_path: str = Field(sa_column=Column(KeyText, nullable=False))
    job_id: str = Field(foreign_key="import_job.id", max_length=32)
    outcome: str = Field(default=Outcome.PENDING.value, max_length=16)
    source_config_id: str = Field(max_length=32)
    source_key: str = Field(sa_column=Column(Text, nullable=False))
    source_etag: str | None = Field(default=None, max_length=200)
    dest_key: str = Field(sa_column=Column(Text, nullable=False))
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    checksum: str | None = Field(default=None, max_length=200)  # "md5:<hex>" or "etag:<etag>"
    # Which check proved the copy equal to its source: "md5" (both sides' MD5s), "crc64"
    # (both sides' CRC-64s), "etag" (copied in the source's parts: S3's multipart ETags
    # equal), "size" (no checksum both sides state); None when not copied.
    verified_by: str | None = Field(default=None, max_length=16)
    # A later job that failed on this object while it stayed as `job_id` left it: the
    # failure is recorded beside the last good state (error_code, error_message).
    failed_job_id: str | None = Field(default=None, max_length=32)
    label_key: str | None = Field(default=None, sa_column=Column(KeyText, nullable=True))
    # The label file's ETag when it was read: a sync re-parses the label when it changes.
    label_etag: str | None = Field(default=None, max_length=200)
    label_type: str | None = Field(default=None, max_length=40)
    label: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    attempts: int = 0
    error_code: str | None = Field(default=None, max_length=40)
    error_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)


class LabelFact(SQLModel, table=True):
    """One (type, category) per annotation of a ledger entry's label: what filters and label
    statistics count. Rewritten with the entry."""

    __tablename__ = "label_fact"
    __table_args__ = (
        Index("ix_label_fact_entry", "segment_id", "remote_path"),
        Index("ix_label_fact_category", "segment_id", "label_type", "category"),
    )
    id: int | None = Field(default=None, primary_key=True)
    segment_id: str = Field(foreign_key="segment.id", max_length=32)
    remote_path: str = Field(sa_column=Column(Text, nullable=False))
    label_type: str = Field(max_length=40)
    category: str | None = Field(default=None, max_length=400)


class JobNote(SQLModel, table=True):
    """Something a job found that is not an object's outcome: a label file no object pairs
    with."""

    __tablename__ = "job_note"
    __table_args__ = (Index("ix_job_note_job_kind", "job_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="import_job.id", max_length=32)
    kind: str = Field(max_length=40)
    key: str = Field(sa_column=Column(Text, nullable=False))


class ImportLabel(SQLModel, table=True):
    """A label a job read from one file for a whole segment (COCO), by the image's path in
    the segment; the shard copier looks its objects' labels up here."""

    __tablename__ = "import_label"
    __table_args__ = (UniqueConstraint("job_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="import_job.id", max_length=32)
    name: str = Field(sa_column=Column(Text, nullable=False))
    label: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Schedule(SQLModel, table=True):
    """A recurring import (a sync): the manifest, a cron expression in a time zone."""

    __tablename__ = "schedule"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Five fields (minute hour day month weekday), or six with seconds first.
    cron: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    enabled: bool = True
    # The latest occurrence claimed (UTC): occurrences at or before it never fire again.
    last_occurrence: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScheduleRun(SQLModel, table=True):
    """One occurrence of a schedule, claimed once (the unique key) by whichever beat got
    there first; the job it started, or why it started none."""

    __tablename__ = "schedule_run"
    __table_args__ = (UniqueConstraint("schedule_id", "occurrence"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    schedule_id: str = Field(foreign_key="schedule.id", index=True, max_length=32)
    occurrence: datetime  # UTC; for a manual run, the time it was asked for
    trigger: str = Field(default="cron", max_length=16)  # "cron" | "manual"
    status: str = Field(default="claimed", max_length=16)  # claimed | submitted | skipped | failed
    job_id: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class DraftStatus(enum.StrEnum):
    OPEN = "OPEN"
    COMMITTED = "COMMITTED"
    CLOSED = "CLOSED"


class Draft(SQLModel, table=True):
    """A TensorBay client's draft of a dataset: objects it registers are imported while the
    draft is open; a commit closes it once they are."""

    __tablename__ = "draft"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    dataset_id: str = Field(foreign_key="dataset.id", index=True, max_length=32)
    number: int  # 1, 2, ... per dataset
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    branch_name: str = Field(default="main", max_length=200)
    status: str = Field(default=DraftStatus.OPEN.value, max_length=16)
    parent_commit_id: str | None = Field(default=None, max_length=32)
    commit_id: str | None = Field(default=None, max_length=32)
    author: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Commit(SQLModel, table=True):
    """A named version of a dataset, made from a draft."""

    __tablename__ = "dataset_commit"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    dataset_id: str = Field(foreign_key="dataset.id", index=True, max_length=32)
    draft_number: int
    parent_commit_id: str | None = Field(default=None, max_length=32)
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    tag: str | None = Field(default=None, max_length=200)
    committer: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class DraftObject(SQLModel, table=True):
    """An object a TensorBay client registered into a draft's segment (`multi/cloud-callback`):
    held here until a worker gathers the segment's waiting objects into one import job."""

    __tablename__ = "draft_object"
    __table_args__ = (
        Index("ix_draft_object_waiting", "dataset_id", "draft_number", "segment_name", "job_id"),
        Index("ix_draft_object_job", "job_id", "id"),
        Index("ix_draft_object_job_name", "job_id", "name_sha256"),
        # One waiting object per name: registering a name again replaces it (an upsert, so
        # concurrent registrations of one name leave one). By the name's hash: a path may be
        # longer than an index entry may.
        Index(
            "ux_draft_object_waiting_name",
            "dataset_id",
            "draft_number",
            "segment_name",
            "name_sha256",
            unique=True,
            postgresql_where=text("job_id IS NULL"),
            sqlite_where=text("job_id IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: str = Field(foreign_key="dataset.id", max_length=32)
    draft_number: int
    segment_name: str = Field(max_length=200)
    cloud_path: str = Field(sa_column=Column(Text, nullable=False))
    remote_path: str = Field(sa_column=Column(Text, nullable=False))
    name_sha256: str = Field(max_length=64)  # of remote_path
    label: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    job_id: str | None = Field(default=None, max_length=32)  # None: waiting for a batch
    created_at: datetime = Field(default_factory=utcnow)


class DraftBatch(SQLModel, table=True):
    """Whether a gathering task is queued for a draft's segment (one at a time)."""

    __tablename__ = "draft_batch"
    dataset_id: str = Field(foreign_key="dataset.id", primary_key=True, max_length=32)
    draft_number: int = Field(primary_key=True)
    segment_name: str = Field(primary_key=True, max_length=200)
    queued: bool = False
    updated_at: datetime = Field(default_factory=utcnow)
