"""Rows written through the driver (`DriverBatch`, SQLite) are stored exactly as SQLAlchemy
would have stored them: the same text for JSON (None included) and datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects import sqlite
from sqlmodel import Session

from metadata.queries.bulk import DriverBatch


def _table(meta: MetaData, name: str) -> Table:
    return Table(
        name,
        meta,
        Column("id", Integer, primary_key=True),
        Column("key", String, unique=True, nullable=False),
        Column("label", JSON, nullable=True),
        Column("at", DateTime, nullable=False),
        Column("n", Integer, nullable=False),
    )


def _upsert(table: Table) -> Any:
    stmt = sqlite.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"label": stmt.excluded.label, "n": table.c.n + stmt.excluded.n},
    )


ROWS = [
    {"key": "a", "label": {"BOX2D": [{"category": "cat", "x": 1.5}]}, "n": 1},
    {"key": "b", "label": None, "n": 2},
    {"key": "c", "label": {}, "n": 3},
    {"key": "a", "label": {"CLASSIFICATION": {"category": "dög"}}, "n": 4},  # an update
]


@pytest.mark.parametrize("moment", [datetime(2026, 12, 7, 8, 9, 10, 123456), datetime.now(UTC)])
def test_driver_rows_are_stored_as_sqlalchemy_stores_them(moment: datetime) -> None:
    engine = create_engine("sqlite://")
    meta = MetaData()
    by_orm, by_driver = _table(meta, "by_orm"), _table(meta, "by_driver")
    meta.create_all(engine)
    batch = DriverBatch(by_driver, ("key", "label", "at", "n"), lambda _d: _upsert(by_driver))
    rows = [{**r, "at": moment} for r in ROWS]
    with Session(engine) as s:
        for row in rows:  # one at a time: an executemany updates a key it inserted only once
            s.execute(_upsert(by_orm), [row])
            batch.execute(s, [row])
        batch.execute(s, rows[:3])  # a batch of several
        s.execute(_upsert(by_orm), rows[:3])
        s.commit()
        query = "SELECT key, label, at, n, typeof(label) FROM {} ORDER BY key"
        got = s.connection().exec_driver_sql(query.format("by_driver")).all()
        want = s.connection().exec_driver_sql(query.format("by_orm")).all()
    assert got == want
    assert [r[0] for r in got] == ["a", "b", "c"] and got[0][3] == 1 + 4 + 1


def test_a_statement_binding_other_values_than_the_rows_is_refused() -> None:
    engine = create_engine("sqlite://")
    meta = MetaData()
    table = _table(meta, "t")
    meta.create_all(engine)

    def bound(_dialect: str) -> Any:
        stmt = sqlite.insert(table)  # the update binds a value no row holds
        return stmt.on_conflict_do_update(index_elements=["key"], set_={"n": table.c.n + 5})

    batch = DriverBatch(table, ("key", "n", "at"), bound)
    with Session(engine) as s, pytest.raises(ValueError, match="binds"):
        batch.execute(s, [{"key": "a", "n": 1, "at": datetime.now(UTC)}])


def test_rows_without_a_key_go_as_sqlalchemy_runs_them() -> None:
    engine = create_engine("sqlite://")
    meta = MetaData()
    by_orm, by_driver = _table(meta, "by_orm"), _table(meta, "by_driver")
    meta.create_all(engine)
    batch = DriverBatch(by_driver, ("key", "label", "at", "n"), lambda _d: _upsert(by_driver))
    rows = [{"key": "a", "at": datetime(2026, 1, 2), "n": 1}]  # no label
    with Session(engine) as s:
        batch.execute(s, rows)
        s.execute(_upsert(by_orm), rows)
        query = "SELECT key, label, at, n, typeof(label) FROM {}"
        got = s.connection().exec_driver_sql(query.format("by_driver")).all()
        want = s.connection().exec_driver_sql(query.format("by_orm")).all()
    assert got == want and len(got) == 1
