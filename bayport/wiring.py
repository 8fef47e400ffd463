"""The composition root: settings, metadata DB, secret box, stores and the task queue, wired
once per process (a forked Celery child builds its own)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from bayport.endpoints import EndpointPolicy, Resolver
from bayport.metrics import sink_for
from bayport.secretbox import SecretBox
from bayport.settings import Settings, get_settings
from bayport.stores import ConfigStores
from importer.ports import Enqueuer
from importer.service import ImportContext
from metadata.db import Database


@dataclass(frozen=True)
class Container:
    settings: Settings
    db: Database
    box: SecretBox
    ctx: ImportContext
    # The operator's storage endpoint policy: the API's config checks, the stores' guards.
    endpoints: EndpointPolicy


def build_container(
    settings: Settings, *, enqueuer: Enqueuer | None = None, resolve: Resolver | None = None
) -> Container:
    """`resolve` (getaddrinfo's signature) answers every host name a storage endpoint
    check or connection looks up: tests name theirs."""
    if enqueuer is None:
        from workers.enqueue import CeleryEnqueuer

        enqueuer = CeleryEnqueuer.from_settings(settings)
    db = Database(settings.resolved_database_url)
    box = SecretBox(settings.fernet_keys())
    endpoints = EndpointPolicy.from_settings(settings.allowed_private_endpoints, resolve=resolve)
    stores = ConfigStores(settings, box, endpoints=endpoints)
    ctx = ImportContext(
        db=db,
        stores=stores,
        caps=stores.throttle,
        enqueue=enqueuer,
        settings=settings,
        metrics=sink_for(settings),
    )
    return Container(settings=settings, db=db, box=box, ctx=ctx, endpoints=endpoints)


_lock = threading.Lock()
_container: tuple[int, Container] | None = None


def get_container() -> Container:
    """This process's container (rebuilt after a fork: engines and clients don't survive one)."""
    global _container
    with _lock:
        if _container is None or _container[0] != os.getpid():
            _container = (os.getpid(), build_container(get_settings()))
        return _container[1]


def set_container(container: Container | None) -> None:
    """Install a container built elsewhere (tests, the standalone launcher)."""
    global _container
    with _lock:
        _container = (os.getpid(), container) if container else None
