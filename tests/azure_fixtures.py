"""The Azure Blob server the integration suites talk to: Azurite, or the one the environment names.

BAYPORT_TEST_AZURE_ENDPOINT (an account URL) with BAYPORT_TEST_AZURE_ACCOUNT_NAME and
BAYPORT_TEST_AZURE_ACCOUNT_KEY names a server; otherwise Azurite is started (installed with npm
on first use, see `devstack.services.start_azurite`). A server that cannot be had fails the
tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack import services as local_services
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store
from tests.conftest import unavailable


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An Azure Blob account: `endpoint` (the account URL), `account_name`, `account_key`."""
    endpoint = os.environ.get("BAYPORT_TEST_AZURE_ENDPOINT")
    if endpoint:
        yield {
            "endpoint": endpoint,
            "account_name": os.environ.get(
                "BAYPORT_TEST_AZURE_ACCOUNT_NAME", local_services.AZURITE_ACCOUNT_NAME
            ),
            "account_key": os.environ.get(
                "BAYPORT_TEST_AZURE_ACCOUNT_KEY", local_services.AZURITE_ACCOUNT_KEY
            ),
        }
        return
    try:
        server = local_services.start_azurite(tmp_path_factory.mktemp("azurite"))
    except Exception as exc:
        unavailable(f"Azurite would not start: {exc}")
    with server:
        yield {
            "endpoint": server.url,
            "account_name": local_services.AZURITE_ACCOUNT_NAME,
            "account_key": local_services.AZURITE_ACCOUNT_KEY,
        }


def azure_spec(info: dict[str, str], container: str, root: str = "", key: str = "") -> StorageSpec:
    credentials = {
        "account_name": info["account_name"],
        "account_key": key or info["account_key"],
    }
    return StorageSpec(
        "azure", container, root=root, endpoint=info["endpoint"], credentials=credentials
    )


def make_container(info: dict[str, str], name: str) -> None:
    """Create the container `name` (3-63 lowercase letters, digits and '-'); fine if it exists."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        info["endpoint"],
        credential={"account_name": info["account_name"], "account_key": info["account_key"]},
        retry_total=0,
    )
    try:
        service.create_container(name)
    except ResourceExistsError:
        pass
    finally:
        service.close()


def azure_store(info: dict[str, str], container: str, **opts: Any) -> ObjectStore:
    """A store on `container`; `root` and `key` (a different account key) are taken from
    `opts`, the rest go to the adapter. On an emulator (Azurite) it is opened without
    multipart copy, as production must open one: Azurite has no Put Block From URL."""
    spec = azure_spec(info, container, opts.pop("root", ""), opts.pop("key", ""))
    opts.setdefault("multipart_copy", not is_emulator(info))
    return open_store(spec, **opts)


def is_emulator(info: dict[str, str]) -> bool:
    """An emulator names the account in the URL's path (http://127.0.0.1:PORT/ACCOUNT); Azure
    in the host name (https://ACCOUNT.blob.core.windows.net)."""
    return urlsplit(info["endpoint"]).path.strip("/") != ""
