"""Parsing a label file's bytes into TensorBay's JSON label model ({TYPE: value})."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from labels.checks import JsonObject, fail, show
from labels.errors import LabelError
from labels.model import VALIDATORS

__all__ = ["PARSERS", "SUPPORTED_TYPES", "JsonObject", "LabelError", "parse_label"]

# One validator per label type: the type's JSON value in, its canonical value out.
PARSERS: dict[str, Callable[[Any], Any]] = VALIDATORS
SUPPORTED_TYPES = frozenset(PARSERS)


def _unique_keys(pairs: list[tuple[str, Any]]) -> JsonObject:
    """A JSON object that names a key twice would silently lose one of the values."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise LabelError(f"a JSON object has the key {key!r} twice")
            seen.add(key)
    return obj


def _type_name(key: str) -> str:
    name = key.upper()
    if name not in PARSERS:
        raise LabelError(
            f"unknown label type {key!r}; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
        )
    return name


def parse_label(raw: bytes, *, label_type: str | None) -> JsonObject:
    """The label as `{TYPE: value}` in canonical TensorBay JSON (a valid label comes back
    equal to its input). With `label_type` (any case) the file holds that type's value (as
    in the seed: `{"category": "cat"}`); without it, a full `{TYPE: value}` dict, which may
    hold several types. Raises `LabelError` naming the path and value at fault."""
    try:
        doc = json.loads(raw, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise LabelError("not valid JSON: nested too deeply") from exc
    if label_type is not None:
        doc = {_type_name(label_type): doc}
    return parse_label_doc(doc)


def parse_label_doc(doc: Any) -> JsonObject:
    """`parse_label` of a label already decoded from JSON (`{TYPE: value}`), as a client
    sends it inside a request."""
    if not isinstance(doc, dict):
        fail("the label", f" must be a JSON object, not {show(doc)}")
    if not doc:
        raise LabelError("the label is an empty object")
    parsed: JsonObject = {}
    for key, value in doc.items():
        type_name = _type_name(key)
        if type_name in parsed:
            raise LabelError(f"label type {type_name} is given twice (as {key!r})")
        parsed[type_name] = PARSERS[type_name](value)
    return parsed
