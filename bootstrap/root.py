"""The composition root: settings, the metadata DB, the secret box, the stores, the Celery app
and the import context, built once per process (a forked Celery child rebuilds what does not
survive a fork, and keeps the Celery app).

Every entry point asks for its container here: the HTTP faces (edge/container.py), the worker
(workers/celery_app.py), beat (scheduler/beat.py) and the CLI. Nothing below the entry points
imports this package (the layers contract in pyproject.toml)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from celery import Celery

from bayport.settings import Settings, get_settings
from crypto.secretbox import SecretBox
from importer.ports import Enqueuer
from importer.service import ImportContext
from metadata.db import Database
from stores.endpoints import EndpointPolicy, Resolver
from stores.resolver import ConfigStores
from taskqueue.app import make_celery
from taskqueue.enqueue import CeleryEnqueuer
from telemetry.metrics import sink_for


@dataclass(frozen=True)
class Container:
    settings: Settings
    db: Database
    box: SecretBox
    ctx: ImportContext
    # The operator's storage endpoint policy: the API's config checks, the stores' guards.
    endpoints: EndpointPolicy
    # The task queue's app: what the worker runs and every sender sends with.
    celery: Celery


def build_container(
    settings: Settings,
    *,
    enqueuer: Enqueuer | None = None,
    resolve: Resolver | None = None,
    celery: Celery | None = None,
) -> Container:
    """`resolve` (getaddrinfo's signature) answers every host name a storage endpoint
    check or connection looks up: tests name theirs. `enqueuer` stands in for the task queue
    (tests); `celery` is an app built before (kept across a fork)."""
    app = celery if celery is not None else make_celery(settings)
    db = Database(settings.resolved_database_url)
    box = SecretBox(settings.fernet_keys())
    endpoints = EndpointPolicy.from_settings(settings.allowed_private_endpoints, resolve=resolve)
    stores = ConfigStores(settings, box, endpoints=endpoints)
    ctx = ImportContext(
        db=db,
        stores=stores,
        caps=stores.throttle,
        enqueue=enqueuer if enqueuer is not None else CeleryEnqueuer(app),
        settings=settings,
        metrics=sink_for(settings),
    )
    return Container(settings=settings, db=db, box=box, ctx=ctx, endpoints=endpoints, celery=app)


build = build_container

_lock = threading.Lock()
_container: tuple[int, Container] | None = None


def get_container() -> Container:
    """This process's container. After a fork it is built again (engines and clients don't
    survive one) around the same Celery app, whose tasks the worker registered."""
    global _container
    with _lock:
        if _container is None or _container[0] != os.getpid():
            kept = _container[1].celery if _container is not None else None
            _container = (os.getpid(), build_container(get_settings(), celery=kept))
        return _container[1]


def set_container(container: Container | None) -> None:
    """Install a container built elsewhere (tests, the standalone launcher)."""
    global _container
    with _lock:
        _container = (os.getpid(), container) if container else None
