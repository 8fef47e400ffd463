"""TensorBay's label model, one validator per label type.

Each validator takes a type's value as the JSON file holds it and returns it in canonical
TensorBay JSON: the same keys, optional keys absent when absent, so a valid label comes back
equal to its input. Key spellings follow the tensorbay SDK's `dumps()` (tensorbay/label/*.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labels.checks import (
    JsonObject,
    array,
    attributes,
    fail,
    fields,
    label_base,
    non_negative_int,
    non_negative_number,
    number,
    points,
    show,
    string,
    vector,
)

COMMON = ("category", "attributes", "instance")


def classification(value: Any) -> JsonObject:
    path = "CLASSIFICATION"
    obj = fields(value, path, optional=("category", "attributes"))
    out = label_base(obj, path, instance=False)
    if not out:
        fail(path, " needs a category or attributes")
    return out


def _each(
    type_name: str, one: Callable[[Any, str], Any], geometry: str
) -> Callable[[Any], list[JsonObject]]:
    """A validator for a list type whose annotations are `{geometry, category?, attributes?,
    instance?}`; `one(annotation, path)` checks and returns the geometry's value."""

    def parse(value: Any) -> list[JsonObject]:
        out = []
        for i, item in enumerate(array(value, type_name)):
            path = f"{type_name}[{i}]"
            obj = fields(item, path, required=(geometry,), optional=COMMON)
            label = {geometry: one(obj[geometry], f"{path}.{geometry}")}
            label.update(label_base(obj, path))
            out.append(label)
        return out

    parse.__name__ = type_name.lower()
    return parse


def _box2d(value: Any, path: str) -> JsonObject:
    box = fields(value, path, required=("xmin", "ymin", "xmax", "ymax"))
    out = {key: number(box[key], f"{path}.{key}") for key in ("xmin", "ymin", "xmax", "ymax")}
    for axis in "xy":
        low, high = out[f"{axis}min"], out[f"{axis}max"]
        if high < low:
            fail(f"{path}.{axis}max", f": {show(high)} is less than {axis}min {show(low)}")
    return out


def _box3d(value: Any, path: str) -> JsonObject:
    box = fields(value, path, required=("translation", "rotation", "size"))
    rotation = vector(box["rotation"], f"{path}.rotation", "wxyz")
    if not any(rotation.values()):
        fail(f"{path}.rotation", ": all zero is not a rotation (identity is w=1, x=y=z=0)")
    size = vector(box["size"], f"{path}.size", "xyz")
    for axis, length in size.items():
        non_negative_number(length, f"{path}.size.{axis}")
    return {
        "translation": vector(box["translation"], f"{path}.translation", "xyz"),
        "rotation": rotation,
        "size": size,
    }


def _polygon(value: Any, path: str) -> list[JsonObject]:
    return points(value, path, at_least=3)


def _multi_polygon(value: Any, path: str) -> list[list[JsonObject]]:
    polygons = array(value, path, at_least=1, of="polygons")
    return [_polygon(polygon, f"{path}[{i}]") for i, polygon in enumerate(polygons)]


def _multi_polyline2d(value: Any, path: str) -> list[list[JsonObject]]:
    lines = array(value, path, at_least=1, of="polylines")
    return [points(line, f"{path}[{i}]", at_least=2) for i, line in enumerate(lines)]


def _keypoints2d(value: Any, path: str) -> list[JsonObject]:
    out = []
    for i, item in enumerate(array(value, path, at_least=1, of="keypoints")):
        where = f"{path}[{i}]"
        obj = fields(item, where, required=("x", "y"), optional=("v",))
        point = {"x": number(obj["x"], f"{where}.x"), "y": number(obj["y"], f"{where}.y")}
        if "v" in obj:
            v = obj["v"]
            if not isinstance(v, int) or isinstance(v, bool) or v not in (0, 1, 2):
                fail(f"{where}.v", f": {show(v)} is not 0, 1 or 2")
            point["v"] = v
        out.append(point)
    return out


def _rle(value: Any, path: str) -> list[int]:
    counts = array(value, path, at_least=1, of="counts")
    return [non_negative_int(count, f"{path}[{i}]") for i, count in enumerate(counts)]


def polyline2d(value: Any) -> list[JsonObject]:
    out = []
    for i, item in enumerate(array(value, "POLYLINE2D")):
        path = f"POLYLINE2D[{i}]"
        obj = fields(item, path, required=("polyline2d",), optional=("beizerPointTypes", *COMMON))
        line = points(obj["polyline2d"], f"{path}.polyline2d", at_least=2)
        label: JsonObject = {"polyline2d": line}
        if "beizerPointTypes" in obj:
            label["beizerPointTypes"] = _beizer_point_types(
                obj["beizerPointTypes"], f"{path}.beizerPointTypes", len(line)
            )
        label.update(label_base(obj, path))
        out.append(label)
    return out


def _beizer_point_types(value: Any, path: str, count: int) -> str:
    """One letter per point: 'L' a vertex, 'C' a control point (TensorBay's spelling)."""
    kinds = string(value, path)
    for i, kind in enumerate(kinds):
        if kind not in "LC":
            fail(path, f": {show(kinds)} has {kind!r} at {i}; only 'L' and 'C' are allowed")
    if len(kinds) != count:
        fail(path, f": {show(kinds)} has {len(kinds)} point types for {count} points")
    return kinds


def _words(value: Any, path: str) -> list[JsonObject]:
    out = []
    for i, item in enumerate(array(value, path)):
        where = f"{path}[{i}]"
        obj = fields(item, where, required=("text",), optional=("begin", "end"))
        word: JsonObject = {"text": string(obj["text"], f"{where}.text")}
        for key in ("begin", "end"):
            if key in obj:
                word[key] = non_negative_number(obj[key], f"{where}.{key}")
        if "begin" in word and "end" in word and word["end"] < word["begin"]:
            fail(f"{where}.end", f": {show(word['end'])} is less than begin {show(word['begin'])}")
        out.append(word)
    return out


def sentence(value: Any) -> list[JsonObject]:
    out = []
    for i, item in enumerate(array(value, "SENTENCE")):
        path = f"SENTENCE[{i}]"
        obj = fields(item, path, required=("sentence",), optional=("spell", "phone", "attributes"))
        label: JsonObject = {"sentence": _words(obj["sentence"], f"{path}.sentence")}
        if not label["sentence"]:
            fail(f"{path}.sentence", ": needs at least 1 word, got 0")
        for key in ("spell", "phone"):
            if key in obj:
                label[key] = _words(obj[key], f"{path}.{key}")
        if "attributes" in obj:
            label["attributes"] = attributes(obj["attributes"], f"{path}.attributes")
        out.append(label)
    return out


def _mask(type_name: str, ids: tuple[str, ...]) -> Callable[[Any], JsonObject]:
    """A validator for a mask label: `{remotePath?, info?: [{<ids>, attributes?}]}`.
    The first of `ids` is unique within `info` (a category for semantic masks, an instance
    for the others). `remotePath` may be absent: the importer fills it from the mask file."""

    def parse(value: Any) -> JsonObject:
        obj = fields(value, type_name, optional=("remotePath", "info"))
        out: JsonObject = {}
        if "remotePath" in obj:
            out["remotePath"] = string(obj["remotePath"], f"{type_name}.remotePath", non_empty=True)
        if "info" in obj:
            seen: dict[int, int] = {}
            info = []
            for i, item in enumerate(array(obj["info"], f"{type_name}.info")):
                path = f"{type_name}.info[{i}]"
                entry = fields(item, path, required=ids, optional=("attributes",))
                row: JsonObject = {k: non_negative_int(entry[k], f"{path}.{k}") for k in ids}
                key = row[ids[0]]
                if key in seen:
                    fail(f"{path}.{ids[0]}", f": {key} is also info[{seen[key]}]'s {ids[0]}")
                seen[key] = i
                if "attributes" in entry:
                    row["attributes"] = attributes(entry["attributes"], f"{path}.attributes")
                info.append(row)
            out["info"] = info
        return out

    parse.__name__ = type_name.lower()
    return parse


# The label types, in TensorBay's order; `labels.parse` dispatches on these names.
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "CLASSIFICATION": classification,
    "BOX2D": _each("BOX2D", _box2d, "box2d"),
    "BOX3D": _each("BOX3D", _box3d, "box3d"),
    "POLYGON": _each("POLYGON", _polygon, "polygon"),
    "MULTI_POLYGON": _each("MULTI_POLYGON", _multi_polygon, "multiPolygon"),
    "RLE": _each("RLE", _rle, "rle"),
    "POLYLINE2D": polyline2d,
    "MULTI_POLYLINE2D": _each("MULTI_POLYLINE2D", _multi_polyline2d, "multiPolyline2d"),
    "KEYPOINTS2D": _each("KEYPOINTS2D", _keypoints2d, "keypoints2d"),
    "SENTENCE": sentence,
    "SEMANTIC_MASK": _mask("SEMANTIC_MASK", ("categoryId",)),
    "INSTANCE_MASK": _mask("INSTANCE_MASK", ("instanceId",)),
    "PANOPTIC_MASK": _mask("PANOPTIC_MASK", ("instanceId", "categoryId")),
}

# Types whose value is one object per data (not a list of annotations).
SINGLE_TYPES = frozenset({"CLASSIFICATION", "SEMANTIC_MASK", "INSTANCE_MASK", "PANOPTIC_MASK"})
MASK_TYPES = frozenset({"SEMANTIC_MASK", "INSTANCE_MASK", "PANOPTIC_MASK"})
