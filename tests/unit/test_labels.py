"""Label parsing: the seed's inner-object files, full {TYPE: ...} dicts of every TensorBay type,
and errors that name the path and value at fault."""

from __future__ import annotations

import json
import re

import pytest

from labels.parse import SUPPORTED_TYPES, LabelError, parse_label


def test_seed_classification_inner_object() -> None:
    raw = b'{"category": "cat", "attributes": {"color": "red"}}'
    assert parse_label(raw, label_type="CLASSIFICATION") == {
        "CLASSIFICATION": {"category": "cat", "attributes": {"color": "red"}}
    }


def test_full_dict_with_any_case_type() -> None:
    assert parse_label(b'{"classification": {"category": "dog"}}', label_type=None) == {
        "CLASSIFICATION": {"category": "dog"}
    }


@pytest.mark.parametrize(
    ("raw", "label_type", "message"),
    [
        (b"{not json", "CLASSIFICATION", "not valid JSON"),
        (b"\xff\xfe", "CLASSIFICATION", "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"category": 3}', "CLASSIFICATION", "category must be a non-empty string"),
        (b'{"category": "x", "colour": 1}', "CLASSIFICATION", "unknown field(s): colour"),
        (b'{"POLYGONZ": {}}', None, "unknown label type 'POLYGONZ'"),
        (b"{}", None, "empty object"),
        (b'{"attributes": {"a": {"b": 1}}}', "CLASSIFICATION", "attributes.a"),
    ],
)
def test_bad_labels_name_what_is_wrong(raw: bytes, label_type: str | None, message: str) -> None:
    with pytest.raises(LabelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_label(raw, label_type=label_type)


# --- every type: TensorBay's own examples, and errors that name the path and value ----------

# Examples from the tensorbay SDK's docstrings and docs (label_format/*.rst), as dumps() writes.
TENSORBAY_EXAMPLES: dict[str, object] = {
    "BOX2D": [
        {
            "box2d": {"xmin": 10, "ymin": 20, "xmax": 30, "ymax": 40},
            "category": "category",
            "attributes": {"attribute_name": "attribute_value"},
            "instance": "instance_ID",
        }
    ],
    "BOX3D": [
        {
            "box3d": {
                "translation": {"x": 1, "y": 2, "z": 3},
                "rotation": {"w": 1, "x": 0, "y": 0, "z": 0},
                "size": {"x": 4, "y": 5, "z": 6},
            },
            "category": "car",
        }
    ],
    "POLYGON": [{"polygon": [{"x": 1, "y": 2}, {"x": 2, "y": 3}, {"x": 1, "y": 3}]}],
    "MULTI_POLYGON": [
        {
            "multiPolygon": [
                [{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 3.0}, {"x": 1.0, "y": 3.0}],
                [{"x": 1.0, "y": 4.0}, {"x": 2.0, "y": 3.0}, {"x": 1.0, "y": 8.0}],
            ],
            "category": "example",
            "instance": "12345",
        }
    ],
    "RLE": [{"rle": [272, 2, 4, 4, 2, 9], "category": "example"}],
    "POLYLINE2D": [
        {
            "polyline2d": [{"x": 1, "y": 2}, {"x": 2, "y": 4}, {"x": 2, "y": 1}],
            "beizerPointTypes": "LLL",
            "category": "example",
        }
    ],
    "MULTI_POLYLINE2D": [
        {
            "multiPolyline2d": [
                [{"x": 1, "y": 1}, {"x": 1, "y": 2}, {"x": 2, "y": 2}],
                [{"x": 2, "y": 3}, {"x": 3, "y": 5}],
            ]
        }
    ],
    "KEYPOINTS2D": [
        {
            "keypoints2d": [
                {"x": 10, "y": 20, "v": 0},
                {"x": 15, "y": 25, "v": 1},
                {"x": 20, "y": 30},
            ]
        }
    ],
    "SENTENCE": [
        {
            "sentence": [{"text": "text", "begin": 1.1, "end": 1.6}],
            "spell": [{"text": "spell", "begin": 1.1, "end": 1.6}],
            "phone": [{"text": "phone", "begin": 1.1, "end": 1.6}],
            "attributes": {"attribute_name": "attribute_value"},
        }
    ],
    "SEMANTIC_MASK": {
        "remotePath": "mask.png",
        "info": [{"categoryId": 0, "attributes": {"occluded": True}}],
    },
    "INSTANCE_MASK": {"remotePath": "mask.png", "info": [{"instanceId": 1}]},
    "PANOPTIC_MASK": {
        "remotePath": "mask.png",
        "info": [{"instanceId": 0, "categoryId": 100, "attributes": {"occluded": True}}],
    },
}


@pytest.mark.parametrize("type_name", sorted(TENSORBAY_EXAMPLES))
def test_tensorbay_examples_parse_unchanged(type_name: str) -> None:
    label = {type_name: TENSORBAY_EXAMPLES[type_name]}
    assert parse_label(json.dumps(label).encode(), label_type=None) == label


def test_a_full_dict_holds_several_types_and_a_mask_may_lack_its_path() -> None:
    label = {"CLASSIFICATION": {"category": "street"}, "BOX2D": [], "SEMANTIC_MASK": {}}
    assert parse_label(json.dumps(label).encode(), label_type=None) == label


def _box(xmin: float = 0, ymin: float = 0, xmax: float = 1, ymax: float = 1) -> object:
    return {"box2d": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}


def _points(n: int) -> list[dict[str, float]]:
    return [{"x": float(i), "y": 0.0} for i in range(n)]


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            {"BOX2D": [_box(), _box(), _box(), _box(xmin=20.0, xmax=12.5)]},
            "BOX2D[3].box2d.xmax: 12.5 is less than xmin 20.0",
        ),
        (
            {"POLYGON": [{"polygon": _points(2)}]},
            "POLYGON[0].polygon: needs at least 3 points, got 2",
        ),
        (
            {"KEYPOINTS2D": [{"keypoints2d": [{"x": 0, "y": 0, "v": v} for v in (0, 1, 2, 0, 3)]}]},
            "KEYPOINTS2D[0].keypoints2d[4].v: 3 is not 0, 1 or 2",
        ),
        ({"KEYPOINTS2D": [{"keypoints2d": [{"x": 0, "y": 0, "v": True}]}]}, "v: true is not 0, 1"),
        (
            {"BOX2D": [{"box2d": {"xmin": "0", "ymin": 0, "xmax": 1, "ymax": 1}}]},
            "xmin must be a number, not '0'",
        ),
        (
            {"BOX2D": [{"box2d": {"xmin": True, "ymin": 0, "xmax": 1, "ymax": 1}}]},
            "xmin must be a number, not true",
        ),
        (
            {"BOX2D": [{"box2d": {"xmin": 0, "ymin": 0, "xmax": 1}}]},
            "BOX2D[0].box2d is missing 'ymax'",
        ),
        (
            {"BOX2D": [{**_box(), "category": ""}]},
            "BOX2D[0].category must be a non-empty string, not ''",
        ),
        (
            {"BOX2D": [{**_box(), "instance": 7}]},
            "BOX2D[0].instance must be a non-empty string, not 7",
        ),
        ({"BOX2D": {"box2d": {}}}, "BOX2D must be an array, not an object"),
        (
            {"POLYGON": [{"polygon": [{"x": 0, "y": 0, "z": 0}] * 3}]},
            "POLYGON[0].polygon[0] has unknown field(s): z",
        ),
        (
            {"MULTI_POLYGON": [{"multipolygon": []}]},
            "unknown field(s): multipolygon; allowed: multiPolygon,",
        ),
        (
            {"MULTI_POLYGON": [{"multiPolygon": []}]},
            "MULTI_POLYGON[0].multiPolygon: needs at least 1 polygons, got 0",
        ),
        (
            {"MULTI_POLYGON": [{"multiPolygon": [_points(3), _points(1)]}]},
            "multiPolygon[1]: needs at least 3 points, got 1",
        ),
        (
            {"MULTI_POLYLINE2D": [{"multiPolyline2d": [_points(1)]}]},
            "multiPolyline2d[0]: needs at least 2 points, got 1",
        ),
        (
            {"POLYLINE2D": [{"polyline2d": _points(3), "beizerPointTypes": "LXL"}]},
            "beizerPointTypes: 'LXL' has 'X' at 1",
        ),
        (
            {"POLYLINE2D": [{"polyline2d": _points(3), "beizerPointTypes": "LL"}]},
            "'LL' has 2 point types for 3 points",
        ),
        (
            {"POLYLINE2D": [{"polyline2d": _points(2), "beizer_point_types": "LL"}]},
            "unknown field(s): beizer_point_types",
        ),
        ({"RLE": [{"rle": [3, -1]}]}, "RLE[0].rle[1]: -1 is not a non-negative integer"),
        ({"RLE": [{"rle": [3, 1.5]}]}, "RLE[0].rle[1]: 1.5 is not a non-negative integer"),
        (
            {
                "BOX3D": [
                    {
                        "box3d": {
                            "translation": {"x": 0, "y": 0, "z": 0},
                            "rotation": {"w": 1, "x": 0, "y": 0, "z": 0},
                            "size": {"x": 1, "y": -2, "z": 1},
                        }
                    }
                ]
            },
            "BOX3D[0].box3d.size.y: -2 is negative",
        ),
        (
            {
                "BOX3D": [
                    {
                        "box3d": {
                            "translation": {"x": 0, "y": 0, "z": 0},
                            "rotation": {"w": 0, "x": 0, "y": 0, "z": 0},
                            "size": {"x": 1, "y": 1, "z": 1},
                        }
                    }
                ]
            },
            "BOX3D[0].box3d.rotation: all zero is not a rotation",
        ),
        (
            {"SENTENCE": [{"sentence": [{"text": "a", "begin": 2, "end": 1}]}]},
            "SENTENCE[0].sentence[0].end: 1 is less than begin 2",
        ),
        ({"SENTENCE": [{"sentence": []}]}, "SENTENCE[0].sentence: needs at least 1 word, got 0"),
        (
            {"SENTENCE": [{"sentence": [{"text": "a"}], "category": "x"}]},
            "SENTENCE[0] has unknown field(s): category",
        ),
        (
            {"SEMANTIC_MASK": {"info": [{"categoryId": 1}, {"categoryId": 1}]}},
            "SEMANTIC_MASK.info[1].categoryId: 1 is also info[0]'s categoryId",
        ),
        (
            {"PANOPTIC_MASK": {"info": [{"instanceId": 1}]}},
            "PANOPTIC_MASK.info[0] is missing 'categoryId'",
        ),
        (
            {"INSTANCE_MASK": {"remotePath": ""}},
            "INSTANCE_MASK.remotePath must be a non-empty string",
        ),
        (
            {"BOX2D": [{**_box(), "attributes": {"weight": [1, {"kg": 2}]}}]},
            "BOX2D[0].attributes.weight[1] must be",
        ),
        ({"BOX2D": [], "box2d": []}, "label type BOX2D is given twice (as 'box2d')"),
    ],
)
def test_errors_name_the_path_and_the_value(label: dict[str, object], message: str) -> None:
    with pytest.raises(LabelError) as caught:
        parse_label(json.dumps(label).encode(), label_type=None)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b'{"BOX2D": [{"box2d": {"xmin": NaN, "ymin": 0, "xmax": 1, "ymax": 1}}]}',
            "xmin: nan is not a finite",
        ),
        (b'{"RLE": [{"rle": [1e999]}]}', "RLE[0].rle[0]: inf is not a non-negative integer"),
        (b'{"CLASSIFICATION": {"category": "a", "category": "b"}}', "the key 'category' twice"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_what_json_allows_and_labels_do_not(raw: bytes, message: str) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        parse_label(raw, label_type=None)


def test_label_type_names_any_case_and_unknown_ones_are_refused() -> None:
    raw = json.dumps([_box()]).encode()
    assert parse_label(raw, label_type="box2d") == parse_label(raw, label_type="BOX2D")
    with pytest.raises(LabelError, match="unknown label type 'box4d'"):
        parse_label(raw, label_type="box4d")


def test_supported_types_are_tensorbays() -> None:
    assert set(TENSORBAY_EXAMPLES) | {"CLASSIFICATION"} == SUPPORTED_TYPES
