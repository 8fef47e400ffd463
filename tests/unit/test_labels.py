"""Label parsing: the seed's inner-object files and full {TYPE: ...} dicts; clear errors."""

from __future__ import annotations

import pytest

from labels.parse import LabelError, parse_label


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
