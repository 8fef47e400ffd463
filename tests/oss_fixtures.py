"""Fixtures for OSS: the OSS test server (tests/oss_server.py) or the OSS the environment names.

BAYPORT_TEST_OSS_ENDPOINT (with BAYPORT_TEST_OSS_ACCESS_KEY / _SECRET_KEY) names a real OSS
endpoint instead of starting the test server; tests that need the server's fault switches
(`info["server"]`) skip there. A server that cannot be had fails in CI and skips elsewhere.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import oss2
import pytest

from storage_adapters.base import StorageSpec
from storage_adapters.oss import OssStore
from storage_adapters.registry import open_store
from tests.oss_server import OssTestServer


@pytest.fixture(scope="session")
def oss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`endpoint`, `access_key`, `secret_key`, and `server`: the OssTestServer (None when the
    environment names an endpoint)."""
    if os.environ.get("BAYPORT_TEST_OSS_ENDPOINT"):
        yield {
            "endpoint": os.environ["BAYPORT_TEST_OSS_ENDPOINT"],
            "access_key": os.environ["BAYPORT_TEST_OSS_ACCESS_KEY"],
            "secret_key": os.environ["BAYPORT_TEST_OSS_SECRET_KEY"],
            "server": None,
        }
        return
    ak, sk = "test" + secrets.token_hex(4), secrets.token_hex(16)
    try:
        server = OssTestServer(tmp_path_factory.mktemp("oss"), ak, sk).start()
    except Exception as exc:
        from tests.conftest import unavailable

        unavailable(f"the OSS test server would not start: {exc}")
    try:
        yield {"endpoint": server.endpoint, "access_key": ak, "secret_key": sk, "server": server}
    finally:
        server.stop()


def oss_spec(
    server_info: dict[str, Any], bucket: str, *, root: str = "", secret: str = ""
) -> StorageSpec:
    credentials = {
        "accesskey_id": server_info["access_key"],
        "accesskey_secret": secret or server_info["secret_key"],
    }
    return StorageSpec(
        "oss", bucket, root=root, endpoint=server_info["endpoint"], credentials=credentials
    )


def oss_store(
    server_info: dict[str, Any], bucket: str, *, root: str = "", secret: str = "", **opts: Any
) -> OssStore:
    """An OssStore on `bucket`, opened through the registry as the product opens it."""
    store = open_store(oss_spec(server_info, bucket, root=root, secret=secret), **opts)
    assert isinstance(store, OssStore)
    return store


def make_oss_bucket(server_info: dict[str, Any], name: str) -> None:
    """Create `name` with oss2's own CreateBucket (a real OSS needs globally unique names)."""
    auth = oss2.Auth(server_info["access_key"], server_info["secret_key"])
    oss2.Bucket(auth, server_info["endpoint"], name).create_bucket()
