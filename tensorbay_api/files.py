"""File URLs handed to the SDK (cloud files, a dataset's data): signed by the provider where
it can sign, else by Bayport, which then serves the file itself (a local folder)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from bootstrap import Container
from crypto.secretbox import SecretBoxError
from metadata.models import StorageConfig
from storage_adapters.base import ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from tensorbay_api.deps import ContainerDep
from tensorbay_api.errors import TensorBayError

router = APIRouter()


class FileUrls:
    """Makes URLs for the keys of one store (a storage config's, or Bayport's own when
    `config` is None), valid for the settings' `file_url_expiry_seconds`."""

    def __init__(
        self,
        request: Request,
        container: Container,
        config: StorageConfig | None,
        *,
        at_bucket_root: bool = False,
    ):
        self._request = request
        self._container = container
        self._config = config
        self._at_bucket_root = at_bucket_root
        self._expires_in = container.settings.file_url_expiry_seconds
        self._store: ObjectStore | None = None
        self._signs = True

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            stores = self._container.ctx.stores
            self._store = (
                stores.for_config(self._config, at_bucket_root=self._at_bucket_root)
                if self._config
                else stores.default_storage()
            )
        return self._store

    def url(self, key: str) -> str:
        if self._signs:
            try:
                return self.store.presign_get(key, expires_in=self._expires_in)
            except StorageError as exc:
                if exc.kind is not ErrorKind.UNSUPPORTED:
                    # (PERMISSION_DENIED: a config refused at open, e.g. a local folder that
                    # is no longer its workspace's)
                    status = 403 if exc.kind is ErrorKind.PERMISSION_DENIED else 500
                    message = f"signing a URL for {key!r} failed: {exc}"
                    raise TensorBayError(status, message) from exc
                self._signs = False
        token = self._container.box.seal(
            {
                "config": self._config.id if self._config else "",
                "root": "bucket" if self._at_bucket_root else "",
                "key": key,
                "expires": str(int(time.time()) + self._expires_in),
            }
        )
        return str(self._request.url_for("tensorbay_file", token=token.decode()))


@router.get("/_files/{token}", name="tensorbay_file", include_in_schema=False)
def download(
    token: Annotated[str, Path(max_length=8192)], container: ContainerDep
) -> StreamingResponse:
    """A file Bayport signed the URL of (no X-Token: the URL is the permission)."""
    try:
        claims = container.box.open(token.encode())
    except (SecretBoxError, ValueError) as exc:
        raise TensorBayError(403, "this file URL is not valid", code="AccessDenied") from exc
    if int(claims.get("expires", "0")) < time.time():
        raise TensorBayError(403, "this file URL has expired", code="AccessDenied")
    config = None
    if claims.get("config"):
        with container.db.uow() as uow:
            config = uow.session.get(StorageConfig, claims["config"])
        if config is None:
            raise TensorBayError(404, "the storage config of this file no longer exists")
    stores = container.ctx.stores
    at_bucket_root = claims.get("root") == "bucket"
    key = claims["key"]
    try:
        # Opened (and its folder checked: a local config's must still be its workspace's)
        # as for any other use of the config.
        store = (
            stores.for_config(config, at_bucket_root=at_bucket_root)
            if config
            else stores.default_storage()
        )
        info = store.head(key)
    except StorageError as exc:
        status = {ErrorKind.NOT_FOUND: 404, ErrorKind.PERMISSION_DENIED: 403}.get(exc.kind, 502)
        raise TensorBayError(status, f"{key!r}: {exc}") from exc

    def chunks() -> Iterator[bytes]:
        yield from store.open(key)

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            # A download, never a page: a bucket's `x.html` must not run in our origin.
            "Content-Disposition": attachment(key),
            "X-Content-Type-Options": "nosniff",
        },
    )


def attachment(key: str) -> str:
    """A Content-Disposition naming the key's basename safely: RFC 5987 `filename*` (any
    character percent-encoded), and an ASCII `filename` with quotes and controls replaced."""
    name = key.rsplit("/", 1)[-1] or "file"
    plain = "".join(c if " " <= c < "\x7f" and c not in '"\\;%' else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
