"""The account an AzureBlobStore names (its name, URL and key, checked) and the ContainerClient it
sends its requests on: the SDK's own retries and redirects off, every answer read whole and
capped, on a guarded connection pool of its own."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import IncompleteReadError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient
from urllib3.util.retry import Retry

from storage_adapters.base import StorageSpec
from storage_adapters.common import read_listing
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import guarded_session

MiB = 1024 * 1024
# Put Blob takes up to 5000 MiB in one request; above the SDK's default (64 MiB) it would
# silently switch to blocks, and `put` promises one request.
_MAX_SINGLE_PUT = 5000 * MiB
# Reads go out as ranged GETs of this size: `open` holds one range in memory, and
# `get_bytes` learns the size (to refuse a large object) from the first one.
_GET_RANGE = 8 * MiB
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


def account_name(spec: StorageSpec) -> str:
    """The account name from the credentials, else from the endpoint (its first host label,
    or the first path segment for an emulator's http://127.0.0.1:PORT/ACCOUNT)."""
    name = spec.credentials.get("account_name")
    if not name and spec.endpoint:
        parts = urlsplit(spec.endpoint)
        host = parts.hostname or ""
        on_host = ".blob." in host
        name = host.split(".", 1)[0] if on_host else parts.path.strip("/").split("/", 1)[0]
    if not name:
        raise StorageError(ErrorKind.INVALID_CONFIG, "an Azure storage needs an account name")
    return name


def global_endpoint(account_name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(account_name):
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"{account_name!r} is not an Azure storage account name (3-24 lowercase letters "
            "and digits); give the endpoint for anything else",
        )
    return f"https://{account_name}.blob.core.windows.net"


def account_key(spec: StorageSpec) -> str | None:
    """The account key of the credentials, refused unless it is base64; None: anonymous."""
    key = spec.credentials.get("account_key") or None
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except ValueError as exc:  # binascii.Error, or a key that is not even ASCII
            raise StorageError(
                ErrorKind.INVALID_CONFIG, "the Azure account key is not base64"
            ) from exc
    return key


def new_container_client(
    spec: StorageSpec,
    *,
    endpoint: str,
    account_name: str,
    account_key: str | None,
    timeout: float,
    max_pool_connections: int,
) -> ContainerClient:
    """The client of the container `spec` names, in the account at `endpoint`; signed with
    `account_key`, anonymous without one (a public container)."""
    # One pool per store, shared by every blob client made from its container client.
    # Its connections go only where the spec's guard allows; it follows no redirect
    # (neither does the pipeline: permit_redirects=False below).
    session = guarded_session(
        spec.guard,
        pool_connections=max_pool_connections,
        pool_maxsize=max_pool_connections,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    credential = {"account_name": account_name, "account_key": account_key} if account_key else None
    try:
        return ContainerClient(
            endpoint,
            spec.bucket,
            credential=credential,
            transport=_WholeAnswerTransport(
                session=session, connection_timeout=timeout, read_timeout=timeout
            ),
            # Our tenacity layer retries; the SDK making its own attempts would multiply them.
            retry_total=0,
            permit_redirects=False,
            max_single_put_size=_MAX_SINGLE_PUT,
            max_single_get_size=_GET_RANGE,
            max_chunk_get_size=_GET_RANGE,
        )
    except ValueError as exc:  # "Invalid URL", "Account URL must be a string", ...
        raise StorageError(ErrorKind.INVALID_CONFIG, str(exc)) from exc


class _WholeAnswerTransport(RequestsTransport):
    """Reads every answer whole inside the pipeline's call, downloads too, so a body cut
    short (or a connection lost while reading it) fails the call itself and reaches our retry
    layer, which counts it. Streamed, the SDK's downloader would read the body later and
    re-request a failed one up to three times with 1 s sleeps, a hard-coded loop no
    `retry_total` turns off. A download's range is held in memory either way (`_GET_RANGE`)."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        # Read here, capped (requests would read any length): a hostile endpoint may stream
        # an endless listing, or more than the range a download asked for.
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        internal = response.internal_response
        chunks = internal.iter_content(1024 * 1024)
        try:
            body = read_listing(lambda _: next(chunks, b""), key="an Azure answer")
        except BaseException as exc:
            internal.close()  # the rest unread: this connection can't be reused
            if isinstance(exc, requests.RequestException):  # as the SDK's own read says it
                if "IncompleteRead" in str(exc):
                    raise IncompleteReadError(exc, error=exc) from exc
                raise ServiceResponseError(exc, error=exc) from exc
            raise
        internal._content, internal._content_consumed = body, True
        if hasattr(response, "_content"):  # azure.core.rest's response keeps its own
            response._content = body
        return response
