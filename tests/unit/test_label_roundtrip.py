"""Every label type round-trips: a valid label -> JSON -> parse_label -> the same label."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labels.catalog import Catalog, label_facts, validate_label
from labels.parse import SUPPORTED_TYPES, parse_label

# JSON-safe values: finite floats, any ints, text without lone surrogates (st.text's default).
coordinate = st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, allow_nan=False)
non_negative = st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False)
name = st.text(min_size=1, max_size=10)
scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
attribute_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
attributes = st.dictionaries(name, attribute_value, max_size=3)
point = st.fixed_dictionaries({"x": coordinate, "y": coordinate})


def vector(axes: str, values: st.SearchStrategy[Any] = coordinate) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({axis: values for axis in axes})


def annotation(
    geometry: str, value: st.SearchStrategy[Any], **more: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """`{geometry: value}` with any of category, attributes, instance (and `more`)."""
    optional = {"category": name, "attributes": attributes, "instance": name, **more}
    return st.fixed_dictionaries({geometry: value}, optional=optional)


def listed(item: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(item, max_size=3)


@st.composite
def box2d(draw: st.DrawFn) -> dict[str, Any]:
    x1, x2, y1, y2 = (draw(coordinate) for _ in range(4))
    return {"xmin": min(x1, x2), "ymin": min(y1, y2), "xmax": max(x1, x2), "ymax": max(y1, y2)}


box3d = st.fixed_dictionaries(
    {
        "translation": vector("xyz"),
        "rotation": vector("wxyz").filter(lambda q: any(q.values())),
        "size": vector("xyz", non_negative),
    }
)
keypoint = st.fixed_dictionaries(
    {"x": coordinate, "y": coordinate}, optional={"v": st.sampled_from([0, 1, 2])}
)


@st.composite
def polyline2d(draw: st.DrawFn) -> dict[str, Any]:
    line = draw(st.lists(point, min_size=2, max_size=6))
    types = st.text(alphabet="LC", min_size=len(line), max_size=len(line))
    return draw(annotation("polyline2d", st.just(line), beizerPointTypes=types))


@st.composite
def word(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"text": draw(st.text(max_size=8))}
    times = sorted(draw(st.lists(non_negative, min_size=2, max_size=2)))
    if draw(st.booleans()):
        out["begin"] = times[0]
    if draw(st.booleans()):
        out["end"] = times[1]
    return out


sentence = st.fixed_dictionaries(
    {"sentence": st.lists(word(), min_size=1, max_size=3)},
    optional={"spell": listed(word()), "phone": listed(word()), "attributes": attributes},
)


def mask(*ids: str) -> st.SearchStrategy[dict[str, Any]]:
    row = st.fixed_dictionaries(
        {key: st.integers(0, 2**16) for key in ids}, optional={"attributes": attributes}
    )
    info = st.lists(row, max_size=4, unique_by=lambda r: r[ids[0]])
    return st.fixed_dictionaries({}, optional={"remotePath": name, "info": info})


classification = st.fixed_dictionaries(
    {}, optional={"category": name, "attributes": attributes}
).filter(bool)

LABELS: dict[str, st.SearchStrategy[Any]] = {
    "CLASSIFICATION": classification,
    "BOX2D": listed(annotation("box2d", box2d())),
    "BOX3D": listed(annotation("box3d", box3d)),
    "POLYGON": listed(annotation("polygon", st.lists(point, min_size=3, max_size=6))),
    "MULTI_POLYGON": listed(
        annotation(
            "multiPolygon",
            st.lists(st.lists(point, min_size=3, max_size=4), min_size=1, max_size=3),
        )
    ),
    "RLE": listed(annotation("rle", st.lists(st.integers(0, 10**9), min_size=1, max_size=8))),
    "POLYLINE2D": listed(polyline2d()),
    "MULTI_POLYLINE2D": listed(
        annotation(
            "multiPolyline2d",
            st.lists(st.lists(point, min_size=2, max_size=4), min_size=1, max_size=3),
        )
    ),
    "KEYPOINTS2D": listed(annotation("keypoints2d", st.lists(keypoint, min_size=1, max_size=6))),
    "SENTENCE": listed(sentence),
    "SEMANTIC_MASK": mask("categoryId"),
    "INSTANCE_MASK": mask("instanceId"),
    "PANOPTIC_MASK": mask("instanceId", "categoryId"),
}


def any_label() -> st.SearchStrategy[dict[str, Any]]:
    """A valid full label `{TYPE: value}` of one or more types (other suites use it too)."""
    return st.fixed_dictionaries({}, optional=LABELS).filter(bool)


def test_every_supported_type_has_a_strategy() -> None:
    assert set(LABELS) == SUPPORTED_TYPES


@pytest.mark.parametrize("type_name", sorted(LABELS))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_a_valid_label_round_trips(type_name: str, data: st.DataObject) -> None:
    value = data.draw(LABELS[type_name])
    full = {type_name: value}
    assert parse_label(json.dumps(full).encode(), label_type=None) == full
    inner = json.dumps(value).encode()
    assert parse_label(inner, label_type=type_name.lower()) == full
    # Any label passes an empty catalog, and yields one fact per annotation.
    validate_label(full, Catalog.model_validate({}))
    facts = label_facts(full)
    assert all(fact[0] == type_name for fact in facts)
    if isinstance(value, list):
        assert facts == [(type_name, item.get("category")) for item in value]


@settings(max_examples=20, deadline=None)
@given(label=any_label())
def test_a_label_of_several_types_round_trips(label: dict[str, Any]) -> None:
    assert parse_label(json.dumps(label).encode(), label_type=None) == label
