"""The oss2 Bucket an OssStore sends its requests on: signed (v1) or anonymous, one attempt per
call, its XML answers read capped, on a guarded connection pool shared by every store."""

from __future__ import annotations

import threading
from typing import Any

import oss2

from storage_adapters.base import StorageSpec
from storage_adapters.common import read_listing
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import NetGuard, guarded_session
from storage_adapters.oss_errors import translate


def new_bucket(spec: StorageSpec, *, timeout: float, max_pool_connections: int) -> oss2.Bucket:
    """oss2's Bucket for the bucket and endpoint `spec` names, under its credentials (an STS
    token's too), anonymous without an access key."""
    access_key = spec.credentials.get("accesskey_id") or ""
    secret = spec.credentials.get("accesskey_secret") or ""
    token = spec.credentials.get("security_token") or ""
    auth: Any
    if not access_key:
        auth = oss2.AnonymousAuth()
    elif token:
        auth = oss2.StsAuth(access_key, secret, token)
    else:
        auth = oss2.Auth(access_key, secret)
    try:
        # One attempt per call: oss2's Bucket methods do not retry (only its listing
        # iterators do, unused here) and its requests adapters have max_retries=0. The
        # tenacity layer is the only one that retries.
        return _Bucket(
            auth,
            spec.endpoint,
            spec.bucket,
            session=_shared_session(max_pool_connections, spec.guard),
            connect_timeout=timeout,  # oss2 gives it to requests as connect and read timeout
            enable_crc=True,
        )
    except ValueError as exc:  # urllib's "Port could not be cast to integer value"
        raise StorageError(
            ErrorKind.INVALID_CONFIG, f"bad OSS endpoint {spec.endpoint!r}: {exc}"
        ) from exc
    except Exception as exc:  # oss2's ClientError for a malformed endpoint or bucket name
        raise translate(exc, None, bucket=spec.bucket) from exc


class _Bucket(oss2.Bucket):
    """oss2's Bucket, its XML answers (a listing above all) read capped: oss2 would read a
    hostile endpoint's endless "listing" whole into memory."""

    @staticmethod
    def _parse_result(resp: Any, parse_func: Any, klass: Any) -> Any:
        result = klass(resp)
        internal = resp.response  # requests' response
        if internal._content_consumed:  # oss2 already read an empty answer's body
            parse_func(result, internal._content if isinstance(internal._content, bytes) else b"")
            return result
        chunks = internal.iter_content(1024 * 1024)  # its (decoded) body
        try:
            body = read_listing(lambda _: next(chunks, b""), key="an OSS answer")
        except StorageError:
            internal.close()  # the rest unread: this connection can't be reused
            raise
        parse_func(result, body)
        return result


def _shared_session(pool_size: int, guard: NetGuard | None) -> oss2.Session:
    """One oss2 Session (a requests connection pool) per pool size and connection guard,
    shared by every store: requests go out with each store's own signature, so credentials
    never mix. Its connections go only where the guard allows (also `bucket.endpoint`, the
    host oss2 actually contacts) and it follows no redirect."""
    with _sessions_lock:
        session = _sessions.get((pool_size, guard))
        if session is None:
            session = _sessions[(pool_size, guard)] = oss2.Session(pool_size=pool_size)
            session.session = guarded_session(
                guard, pool_connections=pool_size, pool_maxsize=pool_size
            )
        return session


_sessions: dict[tuple[int, NetGuard | None], oss2.Session] = {}
_sessions_lock = threading.Lock()
