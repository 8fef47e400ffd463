"""Small checks the label validators share: JSON shapes, finite numbers, known fields,
attribute values. Each takes the path of the value it checks and names it in its error."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, NoReturn, TypeGuard

from labels.errors import LabelError

JsonObject = dict[str, Any]

# Attribute values nest lists; deeper than this is a mistake, not a label.
MAX_ATTRIBUTE_DEPTH = 16


def show(value: Any) -> str:
    """A value as an error message shows it: JSON words for JSON literals, short reprs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def fail(path: str, message: str) -> NoReturn:
    """Raise the label error for `path`: `message` starts with ':' or a space."""
    raise LabelError(f"{path}{message}")


def key_path(path: str, key: str) -> str:
    """`path.key`, or `path['odd key']` for a key that would read badly after a dot."""
    if key and key.replace("_", "a").replace("-", "a").isalnum():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fields(
    value: Any,
    path: str,
    *,
    required: Collection[str] = (),
    optional: Collection[str] = (),
) -> JsonObject:
    """`value` as a JSON object with all of `required`, and nothing outside
    `required` and `optional`."""
    if not isinstance(value, dict):
        fail(path, f" must be a JSON object, not {show(value)}")
    unknown = [key for key in value if key not in required and key not in optional]
    if unknown:
        allowed = ", ".join([*required, *optional])
        fail(path, f" has unknown field(s): {', '.join(sorted(unknown))}; allowed: {allowed}")
    for key in required:
        if key not in value:
            fail(path, f" is missing {key!r}")
    return value


def array(value: Any, path: str, *, at_least: int = 0, of: str = "items") -> list[Any]:
    if not isinstance(value, list):
        fail(path, f" must be an array, not {show(value)}")
    if len(value) < at_least:
        fail(path, f": needs at least {at_least} {of}, got {len(value)}")
    return value


def number(value: Any, path: str) -> int | float:
    if not is_number(value):
        fail(path, f" must be a number, not {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        fail(path, f": {show(value)} is not a finite number")
    return value


def non_negative_number(value: Any, path: str) -> int | float:
    n = number(value, path)
    if n < 0:
        fail(path, f": {show(value)} is negative")
    return n


def non_negative_int(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        fail(path, f": {show(value)} is not a non-negative integer")
    return value


def string(value: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str) or (non_empty and not value):
        what = "a non-empty string" if non_empty else "a string"
        fail(path, f" must be {what}, not {show(value)}")
    return value


def attribute_value(value: Any, path: str, depth: int = 0) -> Any:
    """A label's attribute value: a string, finite number, boolean, null, or an array of them."""
    if value is None or isinstance(value, str | bool):
        return value
    if is_number(value):
        return number(value, path)
    if isinstance(value, list):
        if depth >= MAX_ATTRIBUTE_DEPTH:
            fail(path, f": arrays nested deeper than {MAX_ATTRIBUTE_DEPTH}")
        return [attribute_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    fail(path, f" must be a string, number, boolean, null or array, not {show(value)}")


def attributes(value: Any, path: str) -> JsonObject:
    if not isinstance(value, dict):
        fail(path, f" must be a JSON object, not {show(value)}")
    out: JsonObject = {}
    for name, item in value.items():
        if not name:
            fail(path, ": an attribute name is empty")
        out[name] = attribute_value(item, key_path(path, name))
    return out


def label_base(src: JsonObject, path: str, *, instance: bool = True) -> JsonObject:
    """The fields most label types share (category, attributes, instance), those present."""
    out: JsonObject = {}
    if "category" in src:
        out["category"] = string(src["category"], f"{path}.category", non_empty=True)
    if "attributes" in src:
        out["attributes"] = attributes(src["attributes"], f"{path}.attributes")
    if instance and "instance" in src:
        out["instance"] = string(src["instance"], f"{path}.instance", non_empty=True)
    return out


def vector(value: Any, path: str, axes: str) -> JsonObject:
    """`{x: .., y: ..}` and the like: one finite number per axis letter in `axes`."""
    obj = fields(value, path, required=tuple(axes))
    return {axis: number(obj[axis], f"{path}.{axis}") for axis in axes}


def points(value: Any, path: str, *, at_least: int) -> list[JsonObject]:
    items = array(value, path, at_least=at_least, of="points")
    return [vector(point, f"{path}[{i}]", "xy") for i, point in enumerate(items)]
