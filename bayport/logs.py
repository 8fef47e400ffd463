"""Logging for every Bayport process: text for people or JSON lines for collectors, each
record carrying the job and shard it is about, and no secret ever.

`job_id`/`shard_id` come from context variables the import use cases set (`log_context`);
secrets are masked by value — every provider secret Bayport decrypts and every secret setting
is registered with `redact`, and a filter replaces them in each message before it is written.
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

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words


@contextlib.contextmanager
def log_context(*, job_id: str | None = None, shard_id: str | None = None) -> Iterator[None]:
    """Records logged inside carry these ids."""
    tokens = []
    if job_id is not None:
        tokens.append((_job, _job.set(job_id)))
    if shard_id is not None:
        tokens.append((_shard, _shard.set(shard_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def redact(*values: str | None) -> None:
    """Never let these values reach a log line."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET)


def scrub(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
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


def configure_logging(settings: Any, *, stream: Any = None) -> logging.Handler:
    """Install one handler on the root logger (replacing one installed before) in the
    settings' format and level; secret settings are registered for masking."""
    redact(
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
    return handler
