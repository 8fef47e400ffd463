"""Where data physically lies: a storage config names a place in a bucket, and two configs on
the same bucket name the same storage, whatever their ids (pure: no request is made).

A config's `file_path` is the folder its keys are relative to; a dataset on a config lives
at `file_path + dataset.path` in that bucket. An import is in place when the source folder
lies inside that storage path (the seed: "set the authorized cloud storage dataset path the
same as original directory"); otherwise it copies into the dataset's storage path, and the
storage doubles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

# The default ports a URL may spell out or leave implicit.
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Config(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def bucket_name(self) -> str: ...
    @property
    def file_path(self) -> str: ...
    @property
    def region(self) -> str | None: ...


def normalize_endpoint(endpoint: str | None) -> str:
    """An endpoint URL as a comparable string: scheme and host lower-cased, the default port
    dropped, no trailing '/'. `HTTPS://S3.Example.com:443/` is `https://s3.example.com`."""
    if not endpoint:
        return ""
    raw = endpoint.strip()
    if "://" not in raw:
        raw = "https://" + raw  # OSS endpoints are often given without a scheme
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket (or container, or local folder) of one provider's account: two configs
    with equal Buckets read and write the same objects."""

    provider: str
    endpoint: str
    name: str

    @classmethod
    def of(cls, config: _Config) -> Bucket:
        endpoint = normalize_endpoint(config.endpoint)
        if config.provider == "s3" and not endpoint:
            # AWS bucket names are global: the region only says where the bucket is.
            endpoint = "aws"
        # Azure's endpoint is the account URL, so it names the account too.
        return cls(provider=config.provider, endpoint=endpoint, name=config.bucket_name)


def config_root(config: _Config) -> str:
    """The config's folder in its bucket ('' or 'a/b/')."""
    root = (config.file_path or "").strip("/")
    return f"{root}/" if root else ""


@dataclass(frozen=True, slots=True)
class Place:
    """A folder of a bucket: every key below `prefix` (a bucket key prefix, '' or 'a/')."""

    bucket: Bucket
    prefix: str

    def contains(self, other: Place) -> bool:
        return self.bucket == other.bucket and other.prefix.startswith(self.prefix)

    def holds_key(self, bucket: Bucket, key: str) -> bool:
        return self.bucket == bucket and key.startswith(self.prefix)


def folder_of(config: _Config, prefix: str = "") -> Place:
    """The place of `prefix`, a folder relative to the config's file_path."""
    return Place(Bucket.of(config), config_root(config) + prefix)


def relative_to(config: _Config, bucket_key: str) -> str | None:
    """`bucket_key` as a key of `config` (relative to its file_path), or None outside it."""
    root = config_root(config)
    return bucket_key[len(root) :] if bucket_key.startswith(root) else None


def is_in_place(
    source: _Config, data_prefix: str, dataset_config: _Config | None, dataset_path: str
) -> bool:
    """True when the source folder already lies inside the dataset's storage path (the
    same bucket, by location): the import registers the objects where they are and moves
    no bytes."""
    if dataset_config is None:
        return False
    return folder_of(dataset_config, dataset_path).contains(folder_of(source, data_prefix))
