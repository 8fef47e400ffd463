"""Parsing a label file's bytes into TensorBay's JSON label model ({TYPE: value})."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

JsonObject = dict[str, Any]


class LabelError(ValueError):
    """A label file that cannot be used; the message names what is wrong."""


def _require_mapping(value: Any, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise LabelError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _attributes(value: Any, where: str) -> JsonObject:
    attrs = _require_mapping(value, f"{where}.attributes")
    for name, item in attrs.items():
        if not isinstance(item, str | int | float | bool | list) and item is not None:
            raise LabelError(f"{where}.attributes.{name} has an unsupported value type")
    return attrs


def _classification(value: Any) -> JsonObject:
    obj = _require_mapping(value, "CLASSIFICATION")
    unknown = set(obj) - {"category", "attributes"}
    if unknown:
        raise LabelError(f"CLASSIFICATION has unknown field(s): {', '.join(sorted(unknown))}")
    out: JsonObject = {}
    if "category" in obj:
        if not isinstance(obj["category"], str) or not obj["category"]:
            raise LabelError("CLASSIFICATION.category must be a non-empty string")
        out["category"] = obj["category"]
    if "attributes" in obj:
        out["attributes"] = _attributes(obj["attributes"], "CLASSIFICATION")
    if not out:
        raise LabelError("CLASSIFICATION needs a category or attributes")
    return out


# One parser per label type; more types plug in here.
PARSERS: dict[str, Callable[[Any], JsonObject]] = {
    "CLASSIFICATION": _classification,
}
SUPPORTED_TYPES = frozenset(PARSERS)


def parse_label(raw: bytes, *, label_type: str | None) -> JsonObject:
    """The label as `{TYPE: value}`. With `label_type` the file holds that type's inner
    object (as in the seed: `{"category": "cat"}`); without it, a full `{TYPE: value}` dict."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"not valid JSON: {exc}") from exc
    if label_type is not None:
        doc = {label_type: doc}
    doc = _require_mapping(doc, "the label")
    if not doc:
        raise LabelError("the label is an empty object")
    parsed: JsonObject = {}
    for key, value in doc.items():
        type_name = key.upper()
        parser = PARSERS.get(type_name)
        if parser is None:
            raise LabelError(
                f"unknown label type {key!r}; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        parsed[type_name] = parser(value)
    return parsed
