"""Errors the import logic raises to its entry points (the API maps them to HTTP statuses)."""

from __future__ import annotations


class ImportServiceError(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ImportServiceError):
    """A named resource does not exist in the caller's workspace."""


class Conflict(ImportServiceError):
    """The request clashes with the current state (a duplicate name, a running job)."""


class Invalid(ImportServiceError):
    """The request is well-formed but cannot be carried out as asked."""


class TimedOut(ImportServiceError):
    """Something the request names (a storage endpoint) did not answer in time."""
