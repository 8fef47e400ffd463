"""Object lists (as S3 Batch Operations' manifests): the keys to import, read as a stream.

CSV: one row per object, `key` or `key,label_key` (quoted as CSV quotes; an optional header
row `key[,label_key]`). JSON lines: `{"key": ..., "label_key": ...}` per line. Keys are
relative to the storage config's path, like listed keys.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from importer.rules import key_problem
from storage_adapters.errors import ErrorKind, StorageError

# (line number, (key, label key or None)) or (line number, why the row is refused)
Row = tuple[int, tuple[str, str | None] | str]


def _lines(
    chunks: Iterable[bytes], *, max_line: int, max_total: int, name: str
) -> Iterator[str | None]:
    """Text lines of a UTF-8 byte stream; None for a line longer than `max_line` bytes (its
    bytes are passed over, not kept). Memory: a chunk and one line; a stream of more than
    `max_total` bytes is a permanent StorageError."""
    pending: list[bytes] = []  # the current line's pieces
    size = 0  # their length
    too_long = False
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_total:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"the object list is more than {max_total} bytes, the most read "
                "(BAYPORT_MAX_OBJECT_LIST_BYTES)",
                key=name,
                transient=False,
            )
        start = 0
        while True:
            # b"\n" never occurs inside a multi-byte UTF-8 character: bytes split safely.
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not too_long:
                if size + len(piece) > max_line:
                    too_long, pending, size = True, [], 0
                elif piece:
                    pending.append(piece)
                    size += len(piece)
            if end < 0:
                break
            yield None if too_long else b"".join(pending).decode("utf-8", errors="replace")
            pending, size, too_long = [], 0, False
            start = end + 1
    if too_long:
        yield None
    elif pending:
        yield b"".join(pending).decode("utf-8", errors="replace")


def read_object_list(
    open_list: Callable[[], Iterable[bytes]],
    fmt: Literal["csv", "jsonl"],
    *,
    skip: int = 0,
    name: str = "",
    max_line_bytes: int = 64 * 1024,
    max_bytes: int = 10 * 1024**3,
) -> Iterator[Row]:
    """The list's rows after the first `skip` lines (a resumed job re-reads from the start
    and skips what it planned). Blank lines are ignored; a bad row (a line longer than
    `max_line_bytes` too) is yielded as a reason. A list longer than `max_bytes` raises a
    permanent StorageError once that much was read."""
    lines = _lines(open_list(), max_line=max_line_bytes, max_total=max_bytes, name=name)
    for number, line in enumerate(lines, start=1):
        if number <= skip:
            continue
        if line is None:
            yield (
                number,
                f"longer than {max_line_bytes} bytes, the most a line may hold "
                "(BAYPORT_MAX_OBJECT_LIST_LINE_BYTES): not read",
            )
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
