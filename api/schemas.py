"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from importer.manifest import NAME_PATTERN, normalize_prefix

T = TypeVar("T")


class _ConfigCommon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    file_path: str = Field(default="", description="Root folder inside the bucket/container")
    max_requests_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Cap on the requests per second made with this config, by all workers "
        "together (none: no cap)",
    )
    max_bytes_per_second: int | None = Field(
        default=None,
        gt=0,
        le=10**15,  # 1 PB/s; and the column's 64 bits (fuzzing found an overflow there)
        description="Cap on the bytes per second moved with this config, by all workers "
        "together (a server-side copy counts its object's size; none: no cap)",
    )

    @field_validator("file_path")
    @classmethod
    def _file_path(cls, value: str) -> str:
        return normalize_prefix(value)


class S3ConfigCreate(_ConfigCommon):
    provider: Literal["s3"]
    endpoint: str | None = Field(default=None, max_length=2000, description="Default: AWS")
    region: str | None = Field(default=None, max_length=64)
    bucket_name: str = Field(min_length=3, max_length=63)
    accesskey_id: str = Field(min_length=1, max_length=256)
    accesskey_secret: SecretStr = Field(min_length=1)


class OssConfigCreate(_ConfigCommon):
    provider: Literal["oss"]
    endpoint: str = Field(
        min_length=1, max_length=2000, description="e.g. https://oss-cn-hangzhou.aliyuncs.com"
    )
    bucket_name: str = Field(min_length=3, max_length=63)
    accesskey_id: str = Field(min_length=1, max_length=256)
    accesskey_secret: SecretStr = Field(min_length=1)


AZURE_ENDPOINTS = {
    "Global": "https://{account}.blob.core.windows.net",
    "China": "https://{account}.blob.core.chinacloudapi.cn",
}


def _is_address(host: str) -> bool:
    """An IP address or localhost: an emulator's host, which names no account."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AzureConfigCreate(_ConfigCommon):
    provider: Literal["azure"]
    account_type: Literal["China", "Global"] = "Global"
    account_name: str = Field(
        pattern=r"^[a-z0-9]{3,24}$", description="3 to 24 lowercase letters and digits"
    )
    account_key: SecretStr = Field(min_length=1)
    container_name: str = Field(min_length=3, max_length=63)
    endpoint: str | None = Field(
        default=None,
        max_length=2000,
        description="Override of the account URL (emulators, sovereign clouds): the "
        "account's own URL, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite",
    )

    @field_validator("endpoint")
    @classmethod
    def _account_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An Azure endpoint is an account's URL: the account in the host name
        (`https://acct.blob.core.windows.net`) or, for emulators, as the path's first
        segment (`http://127.0.0.1:10000/acct`). A service root without the account only
        answers "the specified resource does not exist" later: refused here, saying what
        the endpoint must be."""
        if value is None:
            return None
        account = info.data.get("account_name")
        if not account:
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        path = [p for p in parts.path.split("/") if p]
        if path or not _is_address(parts.hostname):
            # The account in the path, or a host name (the account's, or a custom domain
            # mapped to it): the account URL as given.
            return value.rstrip("/")
        root = f"{parts.scheme}://{parts.netloc}"
        raise ValueError(
            f"{value!r} is not the URL of account {account!r}: the endpoint must be the "
            f"account URL, e.g. {root}/{account} (an emulator such as Azurite) or "
            f"https://{account}.blob.core.windows.net"
        )

    def account_url(self) -> str:
        return self.endpoint or AZURE_ENDPOINTS[self.account_type].format(account=self.account_name)


class LocalConfigCreate(_ConfigCommon):
    provider: Literal["local"]
    bucket_name: str = Field(
        min_length=1,
        max_length=1024,
        description="An absolute folder inside this workspace's own folder of the "
        "operator's BAYPORT_LOCAL_ROOTS: <root>/<workspace id>/...",
    )


StorageConfigCreate = Annotated[
    S3ConfigCreate | OssConfigCreate | AzureConfigCreate | LocalConfigCreate,
    Field(discriminator="provider"),
]


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
