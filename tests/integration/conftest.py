"""Servers the adapter contract runs against, beyond the shared ones of tests/servers.py.

`rclone_s3` (tests/servers.py) checks SigV4 but lacks UploadPartCopy; `moto_s3` here has the
whole S3 API but checks no credentials. BAYPORT_TEST_MOTO_S3_ENDPOINT (with optional
BAYPORT_TEST_MOTO_S3_ACCESS_KEY / _SECRET_KEY) names such a complete server instead of starting
moto. A server that cannot be had fails the tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack import services as local_services
from tests.conftest import unavailable


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, str]]:
    """An S3 server with the whole API (UploadPartCopy included): moto's server."""
    endpoint = os.environ.get("BAYPORT_TEST_MOTO_S3_ENDPOINT")
    if endpoint:
        yield {
            "endpoint": endpoint,
            "access_key": os.environ.get("BAYPORT_TEST_MOTO_S3_ACCESS_KEY", "testing"),
            "secret_key": os.environ.get("BAYPORT_TEST_MOTO_S3_SECRET_KEY", "testing"),
            "root": "",
        }
        return
    try:
        server = local_services.start_moto_s3()
    except Exception as exc:
        unavailable(f"moto's S3 server would not start: {exc}")
    with server:
        # moto checks no signature; any key pair will do.
        yield {"endpoint": server.url, "access_key": "testing", "secret_key": "testing", "root": ""}
