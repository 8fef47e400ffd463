"""The one place Bayport reads its environment: every knob is a `BAYPORT_` variable."""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(ValueError):
    """A setting is missing or unsafe for the environment it runs in."""


# The shortest BAYPORT_BOOTSTRAP_ACCESS_KEY accepted (metadata/access_keys.py's too).
MIN_ACCESS_KEY_LENGTH = 32


class Settings(BaseSettings):
    # hide_input_in_errors: a refusal must not quote the values it was given (secrets).
    model_config = SettingsConfigDict(
        env_prefix="BAYPORT_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".bayport")

    # Metadata DB: SQLite in data_dir unless a URL names another (PostgreSQL in production).
    database_url: str | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"

    # Fernet key(s) that encrypt provider credentials at rest, newest first, comma separated.
    # In development a random key is generated once into data_dir; production must set it.
    secret_key: SecretStr | None = None
    bootstrap_access_key: SecretStr | None = None

    # Where datasets created without a storage config live ("Bayport's default storage"):
    # a local folder in standalone mode.
    default_storage_dir: Path | None = None
    # Folders on the workers' machines that `local` storage configs may name; none by
    # default, so an API user cannot read the server's files. Each is shared out by
    # workspace: a config may name only `<root>/<its workspace id>/...`; a root holding the
    # data dir or the default storage stops startup (stores/local_roots.py).
    local_roots: list[Path] = Field(default_factory=list)

    # Copy engine.
    multipart_threshold: int = Field(default=64 * 1024 * 1024, ge=5 * 1024 * 1024)
    multipart_part_size: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    # The parts a worker process's streamed copies hold in memory at once, all copies
    # together: each reads its next part while earlier ones upload, and memory stays about
    # this × multipart_part_size on top of the process, whatever the copy concurrency.
    multipart_parts_in_flight: int = Field(default=8, ge=1, le=256)
    # Largest object one server-side copy request may take (S3 allows 5 GB, OSS 1 GB);
    # above it a copy is made in parts where the parts can be proven (OSS's CRC-64), else
    # whole where the destination takes it whole (the source's MD5 kept).
    max_single_copy_size: int = Field(default=5 * 1024**3, ge=5 * 1024 * 1024)
    max_label_size: int = Field(default=16 * 1024 * 1024, ge=1024)
    list_page_size: int = Field(default=1000, ge=1, le=1000)
    ledger_batch_size: int = Field(default=500, ge=1)
    default_shard_size: int = Field(default=1000, ge=1)
    shard_byte_cap: int = Field(default=50 * 1024**3, ge=1)

    # Retries of single storage calls (tenacity); Celery redelivers whole shards.
    retry_attempts: int = Field(default=6, ge=1)
    retry_initial_wait: float = Field(default=0.2, ge=0)
    retry_max_wait: float = Field(default=20.0, ge=0)
    storage_timeout: float = Field(default=60.0, gt=0)
    # S3/OSS -> Azure copies made by Azure itself (Put Blob From URL on a presigned GET URL,
    # pinned by the source's MD5), no byte through the worker; off: always streamed.
    azure_pull_from_url: bool = True
    # One tenant must not stall the API for the others (edge/bulkhead.py). The longest a
    # storage config's check (on create) may take in all, retries and slow answers
    # included: then 504 naming the endpoint. Requests one workspace may have in flight at
    # once in one API process (its sync routes share 40 threads), and progress streams
    # (SSE) it may have open; beyond either, 429 with Retry-After.
    config_check_deadline: float = Field(default=10.0, gt=0, le=120)
    api_workspace_concurrency: int = Field(default=8, ge=1, le=1000)
    api_event_streams: int = Field(default=4, ge=1, le=1000)

    # Worker process count for `bayport worker` / standalone (Celery prefork pool).
    worker_processes: int = Field(default=2, ge=1)

    # TensorBay-compatible API (/gatewayv2/tensorbay-open-api/v1/).
    # Parallel requests per shard of the jobs that import a draft's registered objects.
    draft_import_concurrency: int = Field(default=32, ge=1, le=256)
    # How long a commit waits for the draft's imports to end before answering 503 with
    # Retry-After (the SDK retries a POST 3 times, and gives up on a call after 30 s).
    commit_wait_seconds: float = Field(default=20.0, ge=0, le=25)
    # How long the file URLs it hands out (signed by the provider, or by Bayport for a
    # local folder) stay valid.
    file_url_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Account URLs of Azure accounts the SDK's azure configs name (it sends no endpoint):
    # "account=url,..." for emulators and sovereign clouds; others use account_type's.
    azure_account_urls: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    @field_validator("azure_account_urls", mode="before")
    @classmethod
    def _account_urls(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        urls: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            account, sep, url = item.partition("=")
            if not sep or not account.strip() or not url.strip():
                raise ValueError(f"azure_account_urls: {item!r} is not account=url")
            urls[account.strip()] = url.strip()
        return urls

    # How often `bayport beat` re-reads the schedules from the DB: a schedule made or changed
    # through the API is picked up within this time (beat wakes on each occurrence anyway).
    beat_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)

    # Monitoring. Workers count retries and task durations in Redis (`metrics_redis_url`,
    # default: the broker when it is Redis) under `metrics_namespace`; the API serves them
    # with the DB's job counts at /metrics — behind `metrics_token` (Bearer) when it is set.
    # Production refuses to start without the token unless `metrics_public` says /metrics is
    # meant to be open. A scrape within `metrics_cache_seconds` of the last one is answered
    # from it (each collection counts every running job's ledger).
    metrics_redis_url: str | None = None
    metrics_namespace: str = Field(default="bayport", pattern=r"^[A-Za-z0-9_.:\-]{1,100}$")
    metrics_token: SecretStr | None = None
    metrics_public: bool = False
    metrics_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Logs: "text" for people, "json" (one object per line, with job and shard ids) for
    # collectors.
    log_format: Literal["text", "json"] = "text"
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    # Flower, the Celery dashboard (`bayport flower`, and standalone's): HTTP basic auth as
    # "user:password" (several comma separated). `bayport flower` refuses to start without
    # it unless told --unauthenticated (then it serves on 127.0.0.1 only).
    flower_basic_auth: SecretStr | None = None
    flower_port: int = Field(default=5555, ge=1, le=65535)
    # Flower shows every workspace's tasks and can revoke them: it is for operators only,
    # and no tenant page links to it (the job page shows the job's own tasks instead).

    # --- Drills: recovery, throttling, limits, endpoint safety ---------------------------
    # A shard (or a job's planning) whose task sent no heartbeat for this long is taken to
    # be lost (its worker killed, its message gone with the broker) and is sent again by
    # whichever worker sweeps next (every `recovery_interval_seconds`).
    lease_seconds: float = Field(default=120.0, gt=0)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    # Shared throttling: a provider account that answers 503/429 to one worker slows all
    # workers down (a rate held in Redis; the broker's Redis unless `throttle_redis_url`).
    shared_throttle: bool = True
    throttle_redis_url: str | None = None
    # Storage endpoints that may resolve to loopback, private or link-local addresses
    # (host names, IP addresses or CIDR networks, e.g. ["127.0.0.1", "10.0.0.0/8"]): none
    # by default, so a storage config cannot make workers call internal services.
    # Operator-wide: every workspace's configs may then name them (docs/security.md).
    # From the environment: a JSON list or comma separated ("127.0.0.1,10.0.0.0/8").
    allowed_private_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # API limits: the largest request body (a manifest) in bytes, and requests per API key
    # (a `limits` string such as "600/minute"; empty: no limit). The TensorBay API's
    # per-object registration calls (`PUT multi/cloud-callback`: the SDK's `upload_dataset`
    # makes one per object) are counted apart, against api_callback_rate_limit.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    api_rate_limit: str = "1200/minute"
    api_callback_rate_limit: str = "60000/minute"
    # Input caps (what a bucket's owner or an API user could make unbounded): an object
    # list's longest line and whole size, a COCO file's size; schedules per workspace, and
    # how often one may fire at most. (A listing page's answer is capped by the adapters.)
    max_object_list_line_bytes: int = Field(default=64 * 1024, ge=1024)
    max_object_list_bytes: int = Field(default=10 * 1024**3, ge=1024)
    max_coco_size: int = Field(default=2 * 1024**3, ge=1024)
    max_schedules_per_workspace: int = Field(default=100, ge=1)
    schedule_min_interval_seconds: float = Field(default=60.0, ge=1)
    # Before the key is checked: requests per client address (all of them; the callbacks
    # against api_callback_rate_limit), and failed authentications (401s) per client address,
    # beyond which a request without a good key is refused (key guessing). Empty: no limit.
    api_ip_rate_limit: str = "3000/minute"
    api_auth_failure_limit: str = "30/minute"
    # How long an API process trusts what it read of a key (its workspace, role, expiry):
    # a key revoked through another process stops working within this time.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=60)

    @field_validator("allowed_private_endpoints", mode="before")
    @classmethod
    def _endpoint_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key is None:
                raise SettingsError(
                    "BAYPORT_SECRET_KEY must be set in production (a Fernet key: "
                    "python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())')"
                )
            if self.database_url is None:
                raise SettingsError("BAYPORT_DATABASE_URL must be set in production")
            if self.metrics_token is None and not self.metrics_public:
                raise SettingsError(
                    "BAYPORT_METRICS_TOKEN must be set in production (the Bearer token "
                    "Prometheus sends to /metrics), or BAYPORT_METRICS_PUBLIC=true to serve "
                    "/metrics to anyone"
                )
        return self

    def to_env(self, *names: str) -> dict[str, str]:
        """The `BAYPORT_` variables that give a child process these settings: the fields
        `names`, or every field set explicitly (given or read from the environment). A field
        whose value is None is left out (its default then holds in the child)."""
        out: dict[str, str] = {}
        for name in names or sorted(self.model_fields_set):
            value = getattr(self, name)
            if value is not None:
                out[f"BAYPORT_{name.upper()}"] = _env_text(value)
        return out

    def bootstrap_key(self) -> str | None:
        """BAYPORT_BOOTSTRAP_ACCESS_KEY, checked (not as a validator: pydantic would quote
        the rejected key in its error)."""
        if self.bootstrap_access_key is None:
            return None
        key = self.bootstrap_access_key.get_secret_value()
        if len(key) < MIN_ACCESS_KEY_LENGTH or key != key.strip():
            raise SettingsError(
                f"BAYPORT_BOOTSTRAP_ACCESS_KEY must be at least {MIN_ACCESS_KEY_LENGTH} "
                "characters, without spaces around it (e.g. bp_ and "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return key

    @property
    def resolved_throttle_redis_url(self) -> str | None:
        return self.throttle_redis_url or self.resolved_metrics_redis_url

    @property
    def resolved_metrics_redis_url(self) -> str | None:
        if self.metrics_redis_url:
            return self.metrics_redis_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else None

    def flower_credentials(self) -> str | None:
        """BAYPORT_FLOWER_BASIC_AUTH, checked (not as a field validator: pydantic would quote
        the rejected value, a password, in its error)."""
        if self.flower_basic_auth is None:
            return None
        value = self.flower_basic_auth.get_secret_value()
        for credential in value.split(","):
            user, _, password = credential.partition(":")
            if not user.strip() or not password:
                raise SettingsError(
                    'BAYPORT_FLOWER_BASIC_AUTH must be "user:password" (several comma separated)'
                )
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bayport.db').resolve()}"

    @property
    def resolved_default_storage_dir(self) -> Path:
        return (self.default_storage_dir or self.data_dir / "storage").resolve()

    def fernet_keys(self) -> list[bytes]:
        """The secret keys, newest first; creates the development key file on first use."""
        if self.secret_key is not None:
            return [k.strip().encode() for k in self.secret_key.get_secret_value().split(",")]
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            from cryptography.fernet import Fernet

            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = key_file.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(Fernet.generate_key())
            tmp.chmod(0o600)
            try:  # link, not replace: a concurrent first start must not swap keys under us
                os.link(tmp, key_file)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return [key_file.read_bytes().strip()]


def _env_text(value: object) -> str:
    """A setting's value as its variable spells it (what the fields' parsing reads back)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # azure_account_urls: account=url,...
        return ",".join(f"{key}={url}" for key, url in value.items())
    if isinstance(value, list | tuple):
        return json.dumps([str(item) for item in value])
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
