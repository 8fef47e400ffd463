"""Logging for every Bayport process: text for people or JSON lines for collectors, each
record carrying the job and shard it is about, and no secret ever.

`job_id`/`shard_id` come from context variables the import use cases set (`log_context`);
secrets are masked by value, a filter replacing them in each message before it is written.
Bayport's own secret settings are masked in every record (`redact_everywhere`). A storage
config's secrets are masked in the records of the work that uses the config (`redact`: the
task or API request in play, a `secret_scope`), not in every tenant's: a tenant whose
"secret" is an everyday word must not blind the logs of all. Records logged outside any
scope (Celery's and uvicorn's own) are masked with a capped set of recent config secrets.
Values too short or too common to be a key (`maskable`) are never masks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("bayport_job", default=None)
_shard: contextvars.ContextVar[str | None] = contextvars.ContextVar("bayport_shard", default=None)

# The secrets of the configs the work in this context uses: one mutable set per scope, shared
# by the threads a task hands its context to (contextvars.copy_context).
_scope: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "bayport_secrets", default=None
)
_everywhere: set[str] = set()  # Bayport's secret settings
_unscoped: dict[str, None] = {}  # recent config secrets, oldest first, for unscoped records
_secrets_lock = threading.Lock()
MASK = "***"
MIN_SECRET = 8  # shorter values would mask ordinary words
MAX_SCOPE_SECRETS = 256
MAX_EVERYWHERE_SECRETS = 64
MAX_UNSCOPED_SECRETS = 1024


def maskable(value: str | None) -> bool:
    """Could this be a key, token or password, rather than text any log line may hold? At
    least MIN_SECRET characters, no whitespace, and not a plain word under 20 letters
    ("Traceback", "Exception", "password")."""
    if not value or len(value) < MIN_SECRET or any(c.isspace() for c in value):
        return False
    return not (len(value) < 20 and value.replace("_", "").replace("-", "").isalpha())


@contextlib.contextmanager
def secret_scope() -> Iterator[None]:
    """The work inside (a task, an API request) masks the config secrets it registers with
    `redact` in its own records. Nested scopes share the outer one's secrets."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set(set())
    try:
        yield
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def log_context(*, job_id: str | None = None, shard_id: str | None = None) -> Iterator[None]:
    """Records logged inside carry these ids (and are one `secret_scope`)."""
    tokens = []
    if job_id is not None:
        tokens.append((_job, _job.set(job_id)))
    if shard_id is not None:
        tokens.append((_shard, _shard.set(shard_id)))
    try:
        with secret_scope():
            yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def redact(*values: str | None) -> None:
    """The secrets of a storage config the work in this context uses: masked in its records
    (and, capped, in records logged outside any scope), never in another scope's."""
    kept = [v for v in values if v is not None and maskable(v)]
    if not kept:
        return
    scope = _scope.get()
    with _secrets_lock:
        if scope is not None:
            for value in kept:
                if len(scope) < MAX_SCOPE_SECRETS:
                    scope.add(value)
        for value in kept:
            _unscoped.pop(value, None)
            _unscoped[value] = None
        while len(_unscoped) > MAX_UNSCOPED_SECRETS:
            del _unscoped[next(iter(_unscoped))]


def redact_everywhere(*values: str | None) -> None:
    """Bayport's own secrets (secret settings): masked in every record of the process."""
    with _secrets_lock:
        for value in values:
            if value is not None and maskable(value) and len(_everywhere) < MAX_EVERYWHERE_SECRETS:
                _everywhere.add(value)


def scrub(text: str) -> str:
    """`text` with the secrets of this context masked."""
    scope = _scope.get()
    with _secrets_lock:
        masks = set(_everywhere)
        masks.update(scope if scope is not None else _unscoped)
    for secret in sorted(masks, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class ContextFilter(logging.Filter):
    """Adds job_id and shard_id, and masks registered secrets in the message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job.get()
        record.shard_id = _shard.get()
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{name}={value}"
            for name, value in (
                ("job", getattr(record, "job_id", None)),
                ("shard", getattr(record, "shard_id", None)),
            )
            if value
        )
        record.ids = f" [{ids}]" if ids else ""
        return super().format(record)


# Libraries' loggers that write a record per storage request at INFO.
_PER_REQUEST_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy",)


def configure_logging(settings: Any, *, stream: Any = None) -> logging.Handler:
    """Install one handler on the root logger (replacing one installed before) in the
    settings' format and level; secret settings are registered for masking."""
    redact_everywhere(
        *(
            secret.get_secret_value()
            for secret in (
                getattr(settings, "secret_key", None),
                getattr(settings, "bootstrap_access_key", None),
                getattr(settings, "metrics_token", None),
                getattr(settings, "flower_basic_auth", None),
            )
            if secret is not None
        )
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bayport", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._bayport = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{job_id}{shard_id}{process}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # The Azure SDK logs every request and answer (URL, headers) at INFO: each block of a
    # large copy, a dozen lines apiece. Kept for DEBUG; at INFO and above only its warnings.
    quiet = max(logging.WARNING, root.level) if root.level > logging.DEBUG else logging.NOTSET
    for name in _PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return handler
