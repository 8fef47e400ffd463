"""Batches of complete rows written through the driver on SQLite.

An INSERT run with a batch of parameter sets makes SQLAlchemy build and convert every row's
parameters in Python (measured: about 25 µs a ledger row, more than SQLite's own work on it).
`DriverBatch` compiles the statement once per dialect, converts each value with its column's
own bind processor (what SQLAlchemy would have done: JSON to text, datetimes to SQLite's
text form) and hands the batch to the driver's executemany. Other dialects take the
statement as SQLAlchemy runs it (PostgreSQL's batches go as multi-row VALUES).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlmodel import Session

_Processor = Callable[[Any], Any] | None


class DriverBatch:
    """`statement(dialect_name)` (an INSERT, with or without ON CONFLICT, on `table`) run
    with rows holding exactly `keys`."""

    def __init__(self, table: Table, keys: Sequence[str], statement: Callable[[str], Any]) -> None:
        self.table = table
        self.keys = tuple(keys)
        self._keys = frozenset(self.keys)
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...], tuple[_Processor, ...]]] = {}
        self._lock = threading.Lock()

    def execute(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        dialect = connection.dialect
        if dialect.name != "sqlite" or not all(self._keys <= row.keys() for row in rows):
            # A row without one of the keys (its column left to the statement) goes as
            # SQLAlchemy runs it, which decides what a missing value means.
            session.execute(self.statement(dialect.name), list(rows))
            return
        sql, keys, processors = self._compile(dialect)
        params = [
            tuple(
                row[key] if convert is None else convert(row[key])
                for key, convert in zip(keys, processors, strict=True)
            )
            for row in rows
        ]
        connection.exec_driver_sql(sql, params)

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[str, ...], tuple[_Processor, ...]]:
        with self._lock:
            found = self._compiled.get(dialect.name)
            if found is not None:
                return found
            compiled = self.statement(dialect.name).compile(
                dialect=dialect, column_keys=list(self.keys)
            )
            names = tuple(compiled.positiontup or ())
            if sorted(names) != sorted(self.keys):  # the SQL takes exactly the row's values
                raise ValueError(f"{self.table.name}: the statement binds {names}, not {self.keys}")
            processors = tuple(
                self.table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
                for key in names
            )
            found = (compiled.string, names, processors)
            self._compiled[dialect.name] = found
            return found
