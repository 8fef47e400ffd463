"""Catalogs: TensorBay's catalog JSON checked on upload, labels checked against it, and the
(type, category) facts of a label."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from labels.catalog import Catalog, label_facts, validate_label
from labels.parse import LabelError

CATALOG: dict[str, Any] = {
    "CLASSIFICATION": {"categories": [{"name": "street", "description": "outdoors"}]},
    "BOX2D": {
        "isTracking": True,
        "categoryDelimiter": ".",
        "categories": [{"name": "car"}, {"name": "vehicle.truck"}, {"name": "person"}],
        "attributes": [
            {"name": "color", "enum": ["red", "blue", None]},
            {
                "name": "wheels",
                "type": "integer",
                "minimum": 2,
                "maximum": 18,
                "parentCategories": ["vehicle"],
            },
            {"name": "tags", "type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            {"name": "occluded", "type": ["boolean", "null"]},
            {"name": "score", "type": "number", "minimum": 0, "maximum": 1},
            {"name": "level", "enum": [1, 2, 3]},
        ],
    },
    "POLYLINE2D": {"isBeizerCurve": True, "categories": [{"name": "lane"}]},
    "KEYPOINTS2D": {
        "categories": [{"name": "person"}, {"name": "cat"}],
        "keypoints": [
            {
                "number": 3,
                "names": ["head", "body", "feet"],
                "skeleton": [[0, 1], [1, 2]],
                "visible": "BINARY",
                "parentCategories": ["cat"],
                "description": "cats",
            },
            {"number": 17, "visible": "TERNARY"},
        ],
    },
    "SENTENCE": {
        "isSample": True,
        "sampleRate": 16000,
        "lexicon": [["hi", "h", "ai"]],
        "attributes": [{"name": "speaker", "type": "string"}],
    },
    "SEMANTIC_MASK": {
        "categories": [{"name": "road", "categoryId": 1}, {"name": "sky", "categoryId": 2}]
    },
    "INSTANCE_MASK": {"attributes": [{"name": "occluded", "type": "boolean"}]},
    "PANOPTIC_MASK": {"categories": [{"name": "road", "categoryId": 7}]},
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.model_validate(CATALOG)


def test_a_catalog_round_trips(catalog: Catalog) -> None:
    assert catalog.dumps() == CATALOG
    assert catalog.types() == list(CATALOG)


def _errors(contents: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Catalog.model_validate(contents)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("contents", "where", "message"),
    [
        ({"box2d": {}}, "box2d", "Extra inputs are not permitted"),
        ({"BOX2D": {"categories": [{"nmae": "car"}]}}, "BOX2D.categories.0.nmae", "Extra inputs"),
        ({"BOX2D": {"categories": [{"name": ""}]}}, "BOX2D.categories.0.name", "at least 1"),
        ({"BOX2D": {"isTracking": "yes"}}, "BOX2D.isTracking", "valid boolean"),
        (
            {"BOX2D": {"categories": [{"name": "car"}, {"name": "car"}]}},
            "BOX2D",
            "categories[1].name: 'car' is also categories[0]'s name",
        ),
        (
            {"BOX2D": {"attributes": [{"name": "a", "type": "strnig"}]}},
            "BOX2D.attributes.0.type",
            "'strnig' is not one of array, boolean",
        ),
        (
            {"BOX2D": {"attributes": [{"name": "a"}]}},
            "BOX2D.attributes.0",
            "needs a type or an enum",
        ),
        (
            {
                "BOX2D": {
                    "attributes": [{"name": "a", "type": "number", "minimum": 5, "maximum": 1}]
                }
            },
            "BOX2D.attributes.0",
            "minimum 5 is greater than maximum 1",
        ),
        (
            {"BOX2D": {"attributes": [{"name": "a", "type": "number", "minimum": "0"}]}},
            "BOX2D.attributes.0.minimum",
            "must be a finite number, not '0'",
        ),
        (
            {
                "BOX2D": {
                    "attributes": [{"name": "a", "type": "string", "items": {"type": "string"}}]
                }
            },
            "BOX2D.attributes.0",
            "items is only for attributes whose type includes array",
        ),
        (
            {"BOX2D": {"attributes": [{"name": "a", "enum": [{"x": 1}]}]}},
            "BOX2D.attributes.0.enum",
            "enum[0]: an object is not a string",
        ),
        (
            {"BOX2D": {"attributes": [{"name": "a", "enum": ["x"], "parentCategories": ["car"]}]}},
            "BOX2D",
            "attributes[0].parentCategories: 'car' is not a category",
        ),
        (
            {"KEYPOINTS2D": {"keypoints": [{"number": 2, "names": ["a"]}]}},
            "KEYPOINTS2D.keypoints.0",
            "names has 1 names for 2 keypoints",
        ),
        (
            {"KEYPOINTS2D": {"keypoints": [{"number": 2, "skeleton": [[0, 2]]}]}},
            "KEYPOINTS2D.keypoints.0",
            "skeleton[0]: [0, 2] is not a pair of keypoint indexes 0..1",
        ),
        (
            {"KEYPOINTS2D": {"keypoints": [{"number": 2, "visible": "binary"}]}},
            "KEYPOINTS2D.keypoints.0.visible",
            "'BINARY' or 'TERNARY'",
        ),
        ({"SEMANTIC_MASK": {}}, "SEMANTIC_MASK.categories", "Field required"),
        (
            {
                "SEMANTIC_MASK": {
                    "categories": [{"name": "a", "categoryId": 1}, {"name": "b", "categoryId": 1}]
                }
            },
            "SEMANTIC_MASK",
            "categories[1].categoryId: 1 is also categories[0]'s categoryId",
        ),
        ({"SENTENCE": {"isSample": True}}, "SENTENCE", "sampleRate is required when isSample"),
        ({"SENTENCE": {"categories": []}}, "SENTENCE.categories", "Extra inputs"),
    ],
)
def test_a_malformed_catalog_names_the_field(
    contents: dict[str, Any], where: str, message: str
) -> None:
    errors = _errors(contents)
    assert any(loc == where and message in msg for loc, msg in errors), errors


def _box(**fields: Any) -> dict[str, Any]:
    return {"box2d": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}, **fields}


def _keypoints(n: int, **fields: Any) -> dict[str, Any]:
    return {"keypoints2d": [{"x": 0, "y": 0, "v": 1}] * n, **fields}


VALID = [
    {"CLASSIFICATION": {"category": "street"}},
    {"BOX2D": [_box(category="car", attributes={"color": "red", "occluded": None})]},
    {"BOX2D": [_box(category="vehicle.truck", attributes={"wheels": 6.0, "tags": ["a"]})]},
    {"BOX2D": [_box(attributes={"score": 1, "level": 2.0, "color": None})]},
    {"POLYLINE2D": [{"polyline2d": [{"x": 0, "y": 0}] * 2, "beizerPointTypes": "LC"}]},
    {"KEYPOINTS2D": [_keypoints(3, category="cat"), _keypoints(17, category="person")]},
    {"SENTENCE": [{"sentence": [{"text": "hi"}], "attributes": {"speaker": "ann"}}]},
    {"SEMANTIC_MASK": {"remotePath": "m.png", "info": [{"categoryId": 2}]}},
    {"INSTANCE_MASK": {"info": [{"instanceId": 4, "attributes": {"occluded": False}}]}},
    {"PANOPTIC_MASK": {"info": [{"instanceId": 1, "categoryId": 7}]}},
]


@pytest.mark.parametrize("label", VALID)
def test_labels_that_keep_to_the_catalog_pass(label: dict[str, Any], catalog: Catalog) -> None:
    validate_label(label, catalog)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            {"BOX2D": [_box(category="car"), _box(category="zebra")]},
            "BOX2D[1].category: 'zebra' is not in the catalog's BOX2D categories",
        ),
        ({"BOX2D": [_box(category="vehicle")]}, "'vehicle' is not in the catalog's BOX2D"),
        (
            {"BOX2D": [_box(attributes={"size": 3})]},
            "BOX2D[0].attributes.size: 'size' is not in the catalog's BOX2D attributes",
        ),
        (
            {"BOX2D": [_box(attributes={"color": "green"})]},
            "BOX2D[0].attributes.color: 'green' is not one of 'red', 'blue', null",
        ),
        ({"BOX2D": [_box(attributes={"level": True})]}, "level: true is not one of 1, 2, 3"),
        (
            {"BOX2D": [_box(category="vehicle.truck", attributes={"wheels": 20})]},
            "BOX2D[0].attributes.wheels: 20 is greater than the maximum 18",
        ),
        (
            {"BOX2D": [_box(category="vehicle.truck", attributes={"wheels": 1})]},
            "wheels: 1 is less than the minimum 2",
        ),
        (
            {"BOX2D": [_box(category="vehicle.truck", attributes={"wheels": 4.5})]},
            "wheels: 4.5 is not of type integer",
        ),
        (
            {"BOX2D": [_box(category="car", attributes={"wheels": 4})]},
            "BOX2D[0].attributes.wheels: 'wheels' is for categories 'vehicle' only, not 'car'",
        ),
        ({"BOX2D": [_box(attributes={"wheels": 4})]}, "not a label without a category"),
        (
            {"BOX2D": [_box(attributes={"tags": ["a", "c"]})]},
            "BOX2D[0].attributes.tags[1]: 'c' is not one of 'a', 'b'",
        ),
        ({"BOX2D": [_box(attributes={"tags": "a"})]}, "tags: 'a' is not of type array"),
        (
            {"BOX2D": [_box(attributes={"occluded": 0})]},
            "occluded: 0 is not of type boolean or null",
        ),
        (
            {"POLYLINE2D": [{"polyline2d": [{"x": 0, "y": 0}] * 2, "category": "lane"}]},
            "POLYLINE2D[0] has no beizerPointTypes",
        ),
        (
            {"KEYPOINTS2D": [_keypoints(4, category="cat")]},
            "KEYPOINTS2D[0].keypoints2d: 4 keypoints, but the catalog's KEYPOINTS2D number is 3",
        ),
        (
            {"KEYPOINTS2D": [_keypoints(3, category="person")]},
            "3 keypoints, but the catalog's KEYPOINTS2D number is 17",
        ),
        (
            {"KEYPOINTS2D": [{"keypoints2d": [{"x": 0, "y": 0, "v": 2}] * 3, "category": "cat"}]},
            "KEYPOINTS2D[0].keypoints2d[0].v: 2 is not 0 or 1 (the keypoints are BINARY)",
        ),
        (
            {"SEMANTIC_MASK": {"info": [{"categoryId": 3}]}},
            "SEMANTIC_MASK.info[0].categoryId: 3 is not the categoryId of any",
        ),
        (
            {"INSTANCE_MASK": {"info": [{"instanceId": 1, "attributes": {"occluded": "no"}}]}},
            "INSTANCE_MASK.info[0].attributes.occluded: 'no' is not of type boolean",
        ),
        (
            {"SENTENCE": [{"sentence": [{"text": "hi"}], "attributes": {"speaker": 3}}]},
            "SENTENCE[0].attributes.speaker: 3 is not of type string",
        ),
    ],
)
def test_labels_that_break_the_catalog_name_the_value(
    label: dict[str, Any], message: str, catalog: Catalog
) -> None:
    with pytest.raises(LabelError) as caught:
        validate_label(label, catalog)
    assert message in str(caught.value)


def test_a_type_the_catalog_lacks_is_an_error_unless_the_catalog_is_empty() -> None:
    catalog = Catalog.model_validate({"CLASSIFICATION": {"categories": [{"name": "a"}]}})
    box = {"BOX2D": [_box(category="car")]}
    with pytest.raises(
        LabelError, match="BOX2D: the catalog has no BOX2D; it lists CLASSIFICATION"
    ):
        validate_label(box, catalog)
    validate_label(box, Catalog.model_validate({}))


def test_a_subcatalog_without_categories_allows_labels_without_one() -> None:
    catalog = Catalog.model_validate({"BOX2D": {}})
    validate_label({"BOX2D": [_box()]}, catalog)
    with pytest.raises(LabelError, match="'car' is not in the catalog's BOX2D categories"):
        validate_label({"BOX2D": [_box(category="car")]}, catalog)


def test_label_facts_are_one_per_annotation(catalog: Catalog) -> None:
    label = {
        "CLASSIFICATION": {"attributes": {"x": 1}},
        "BOX2D": [_box(category="car"), _box()],
        "RLE": [],
        "SENTENCE": [{"sentence": [{"text": "hi"}]}],
        "SEMANTIC_MASK": {"info": [{"categoryId": 1}, {"categoryId": 2}]},
        "INSTANCE_MASK": {"remotePath": "m.png"},
        "PANOPTIC_MASK": {"info": [{"instanceId": 1, "categoryId": 7}]},
    }
    assert label_facts(label) == [
        ("CLASSIFICATION", None),
        ("BOX2D", "car"),
        ("BOX2D", None),
        ("SENTENCE", None),
        ("SEMANTIC_MASK", None),
        ("SEMANTIC_MASK", None),
        ("INSTANCE_MASK", None),
        ("PANOPTIC_MASK", None),
    ]
    named = label_facts(label, catalog=catalog)
    assert [fact for fact in named if fact[0].endswith("_MASK")] == [
        ("SEMANTIC_MASK", "road"),
        ("SEMANTIC_MASK", "sky"),
        ("INSTANCE_MASK", None),
        ("PANOPTIC_MASK", "road"),
    ]
