"""The connections an S3Store sends its requests on: a boto3 client from one shared session
(botocore's own retries off, SigV4, connections guarded, listings read capped) and, where it can
be used, the lean path (s3_wire) for the per-object requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from storage_adapters.base import StorageSpec
from storage_adapters.common import read_listing
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import guard_botocore
from storage_adapters.s3_wire import S3Wire


def new_client(spec: StorageSpec, *, timeout: float, max_pool_connections: int) -> Any:
    """The boto3 client of the bucket `spec` names. With `spec.endpoint` set (an S3-compatible
    server) it uses path-style addressing; without an access key it is anonymous, never the
    worker's own AWS identity. Its connections go only where `spec.guard` allows."""
    endpoint = spec.endpoint or None
    access_key = spec.credentials.get("accesskey_id") or None
    options: dict[str, Any] = {
        # Our tenacity layer retries; botocore making its own attempts would multiply them.
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "max_pool_connections": max_pool_connections,
        # Checksums beyond Content-MD5 only when an operation demands them: many
        # S3-compatible servers reject the newer flexible-checksum headers.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
    if access_key is None:
        options["signature_version"] = UNSIGNED
    else:
        # Requests are signed SigV4 either way; named, presigned URLs are too (left
        # unnamed, botocore presigns S3 with SigV2, which rclone and newer regions refuse).
        options["signature_version"] = "s3v4"
    try:
        client = _new_client(
            "s3",
            endpoint_url=endpoint,
            region_name=spec.region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=spec.credentials.get("accesskey_secret") or None,
            aws_session_token=spec.credentials.get("security_token") or None,
            config=Config(**options),
        )
    except ValueError as exc:  # botocore's "Invalid endpoint: ..."
        raise StorageError(ErrorKind.INVALID_CONFIG, str(exc)) from exc
    guard_botocore(client, spec.guard, custom_endpoint=bool(endpoint))
    # boto3 reads a whole answer before parsing it: its listings are read here, capped.
    client.meta.events.register_last(
        "before-send.s3.ListObjectsV2", _listing_capped(client, spec.bucket)
    )
    return client


def new_wire(client: Any, spec: StorageSpec, *, timeout: float, pool_size: int) -> S3Wire | None:
    """The lean path to the endpoint and region `client` resolved, under the same credentials
    and guard; None where it cannot be used (an environment proxy is set)."""
    endpoint_url: str = client.meta.endpoint_url
    if not S3Wire.usable(endpoint_url):
        return None
    return S3Wire(
        endpoint_url=endpoint_url,
        bucket=spec.bucket,
        region=client.meta.region_name,
        path_style=bool(spec.endpoint),
        access_key=spec.credentials.get("accesskey_id") or None,
        secret_key=spec.credentials.get("accesskey_secret") or None,
        session_token=spec.credentials.get("security_token") or None,
        timeout=timeout,
        pool_size=pool_size,
        guard=spec.guard,
    )


def _listing_capped(client: Any, bucket: str) -> Callable[..., Any]:
    """botocore's `before-send` handler for the ListObjectsV2 requests of `client`."""

    def send_listing_capped(request: Any, **_: Any) -> Any:
        """Send the request on the client's own HTTP session, its body left unread, then read
        at most MAX_LISTING_BYTES of it."""
        request.stream_output = True  # the session then leaves the body to us
        response = client._endpoint.http_session.send(request)
        try:
            response._content = read_listing(response.raw.read, key=f"s3://{bucket}")
        except BaseException:
            response.raw.close()  # unread bytes would garble the connection's next answer
            raise
        finally:
            response.raw.release_conn()
        return response

    return send_listing_capped


def _new_client(*args: Any, **kwargs: Any) -> Any:
    """A boto3 client from one shared session. Clients are thread-safe, sessions are not (hence
    the lock); sharing one saves loading the S3 service model for every store. Credentials go
    to each client, never to the session."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(*args, **kwargs)


_session: boto3.session.Session | None = None
_session_lock = threading.Lock()
