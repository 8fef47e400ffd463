"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from importer.manifest import NAME_PATTERN, normalize_prefix

# The storage-config requests are the use cases' typed input (services/); still named here,
# among the API's request bodies.
from services.storage_config_requests import (  # noqa: F401
    AZURE_ENDPOINTS,
    AzureConfigCreate,
    LocalConfigCreate,
    OssConfigCreate,
    S3ConfigCreate,
    StorageConfigCreate,
)

T = TypeVar("T")


class StorageConfigPublic(BaseModel):
    name: str
    provider: str
    file_path: str
    endpoint: str | None
    region: str | None = None
    bucket_name: str | None = None
    accesskey_id: str | None = Field(default=None, description="Masked; secrets never return")
    account_type: str | None = None
    account_name: str | None = None
    container_name: str | None = None
    max_requests_per_second: float | None = None
    max_bytes_per_second: int | None = None
    created_at: datetime


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    config_name: str | None = Field(
        default=None, description="Authorized storage config; omitted: Bayport's storage"
    )
    path: str | None = Field(
        default=None,
        description="Folder of the dataset inside the config's file_path (default: its root)",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else normalize_prefix(value)


class DatasetPublic(BaseModel):
    name: str
    config_name: str | None
    path: str
    segments: list[str]
    created_at: datetime


class JobCounts(BaseModel):
    listed: int
    planned: int
    copied: int
    registered: int
    skipped: int
    failed: int
    unlabelled: int
    labels_without_object: int
    bytes_listed: int
    bytes_copied: int
    # A sync: unchanged objects skipped from the ledger (part of `skipped`), labels
    # re-parsed, objects deleted; and, while it runs or in a dry run, what is planned.
    unchanged: int = 0
    relabelled: int = 0
    deleted: int = 0
    relabel_planned: int = 0
    delete_planned: int = 0
    rejected_rows: int = 0  # object-list rows refused (see /v1/imports/{id}/rejected)
    # Listed keys that are not objects of the import, by reason: label_files, mask_files,
    # dataset_output (the dataset's own folder below the data prefix), filtered.
    left_out: dict[str, int] = Field(default_factory=dict)


class ThroughputPoint(BaseModel):
    at: datetime = Field(description="Start of the time bucket")
    objects: int = Field(description="Objects settled in the bucket (failures included)")
    bytes: int = Field(description="Bytes of those objects (deletions left out)")
    failed: int


class JobProgress(BaseModel):
    """How far the job (its current run: a retry counts only its own objects) has come,
    from its ledger. Totals are null until listing ends (`listing_done`); meanwhile
    `objects_listed` counts what the listing found so far."""

    state: str
    run: int
    listing_done: bool
    objects_listed: int
    objects_total: int | None = Field(description="Objects to settle; null while listing")
    objects_done: int = Field(
        description="copied + registered + skipped + relabelled + deleted + failed"
    )
    bytes_listed: int
    bytes_total: int | None = Field(
        description="Bytes to copy (as listed); null while listing or when sizes are only "
        "known on copy (object lists, retries)"
    )
    bytes_done: int
    failed: int = Field(description="Failures so far")
    percent: float | None = Field(description="objects_done of objects_total, in %")
    objects_per_second: float = Field(
        description="Over the last rate_window_seconds; the run's average once it ended"
    )
    mb_per_second: float = Field(description="MB (10^6 bytes) per second, same window")
    eta_seconds: float | None = Field(description="null while the total or the rate is unknown")
    rate_window_seconds: float
    bucket_seconds: int = Field(description="Width of the throughput buckets")
    throughput: list[ThroughputPoint] = Field(description="Objects and bytes over time")
    as_of: datetime


class JobPublic(BaseModel):
    id: str
    state: str
    dataset: str
    segment: str
    in_place: bool
    run: int
    counts: JobCounts
    shards_total: int
    listing_done: bool
    cancel_requested: bool
    error: str | None
    # Set when deletions were held back (the job then ends needs_review): why.
    review_reason: str | None = None
    # Set on a finished job for what the user should know that is not an error: why it
    # imported nothing, what it left out of the listing.
    notice: str | None = None
    schedule_id: str | None = None
    manifest: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # On GET /v1/imports/{id} and the job's events; null in lists (the ledger query per job
    # would make a page of jobs slow).
    progress: JobProgress | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    offset: int
    limit: int
    next_offset: int | None


class DataItem(BaseModel):
    remote_path: str
    size: int
    checksum: str | None
    # How the copy was proved equal to its source: md5, crc64 or size (null: registered in
    # place, or imported before Bayport recorded it).
    verified_by: str | None = None
    label: dict[str, Any] | None
    source: str


class NoteItem(BaseModel):
    key: str


class FailureItem(BaseModel):
    source_key: str
    remote_path: str
    error_code: str | None
    error_message: str | None
    attempts: int


class UnpairedItem(BaseModel):
    kind: str
    key: str
