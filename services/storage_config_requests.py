"""What a caller asks for to create a storage config: one typed request per provider."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from importer.manifest import NAME_PATTERN, normalize_prefix


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
