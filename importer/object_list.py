"""Object lists (as S3 Batch Operations' manifests): the keys to import, read as a stream.

CSV: one row per object, `key` or `key,label_key` (quoted as CSV quotes; an optional header
row `key[,label_key]`). JSON lines: `{"key": ..., "label_key": ...}` per line. Keys are
relative to the storage config's path, like listed keys.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from importer.rules import key_problem

# (line number, (key, label key or None)) or (line number, why the row is refused)
Row = tuple[int, tuple[str, str | None] | str]


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines of a UTF-8 byte stream, decoded incrementally (memory: one chunk)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    for chunk in chunks:
        text = rest + decoder.decode(chunk)
        *lines, rest = text.split("\n")
        yield from lines
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def read_object_list(
    open_list: Callable[[], Iterable[bytes]],
    fmt: Literal["csv", "jsonl"],
    *,
    skip: int = 0,
) -> Iterator[Row]:
    """The list's rows after the first `skip` lines (a resumed job re-reads from the start
    and skips what it planned). Blank lines are ignored; a bad row is yielded as a reason."""
    for number, line in enumerate(_lines(open_list()), start=1):
        if number <= skip:
            continue
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if fmt == "jsonl":
            yield number, _json_row(line)
        elif number == 1 and line.replace(" ", "").lower() in ("key", "key,label_key"):
            continue  # a header
        else:
            yield number, _csv_row(line)


def _json_row(line: str) -> tuple[str, str | None] | str:
    try:
        row = json.loads(line)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
        return 'not an object with a "key" string'
    label_key = row.get("label_key")
    if label_key is not None and not isinstance(label_key, str):
        return '"label_key" must be a string'
    unknown = set(row) - {"key", "label_key"}
    if unknown:
        return f"unknown fields {sorted(unknown)} (expected key, label_key)"
    return row["key"], label_key


def _csv_row(line: str) -> tuple[str, str | None] | str:
    try:
        fields = next(csv.reader([line]))
    except csv.Error as exc:
        return f"not CSV: {exc}"
    if not 1 <= len(fields) <= 2:
        return f"{len(fields)} columns (expected key[,label_key])"
    key = fields[0]
    label_key = fields[1] if len(fields) == 2 and fields[1] else None
    return key, label_key


def object_list_problem(key: str, data_prefix: str, *, label_key: str | None = None) -> str | None:
    """Why a listed key (and the label key the row names) cannot be imported, or None."""
    if not key:
        return "empty key"
    problem = key_problem(key)
    if problem is not None:
        return f"the key {problem}"
    if key.endswith("/"):
        return "a folder, not an object"
    if not key.startswith(data_prefix) or key == data_prefix:
        return f"not below data_prefix {data_prefix!r}"
    if label_key is not None:
        problem = key_problem(label_key) or ("is a folder" if label_key.endswith("/") else None)
        if problem is not None:
            return f"the label_key {problem}"
    return None
