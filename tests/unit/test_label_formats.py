"""Label formats users keep in buckets (VOC XML, YOLO txt, COCO JSON) read into TensorBay
labels; image sizes from the first bytes of PNG, JPEG, GIF, BMP and WebP files."""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.sample import make_png
from labels.formats import (
    CocoIndex,
    decode_rle_counts,
    encode_rle_counts,
    image_size,
    parse_class_names,
    parse_voc,
    parse_yolo,
    png_size,
)
from labels.parse import LabelError, parse_label

WIDTH, HEIGHT = 800, 500
CLASSES = ["cat", "dog", "bird"]
# (category, xmin, ymin, xmax, ymax) in pixels of an 800×500 image. YOLO's normalized values
# are then short decimals (0.075, 0.14025), which binary floats do not hold exactly.
BOXES = [("cat", 10.0, 20.0, 110.0, 220.0), ("bird", 300.5, 40.25, 420.75, 100.0)]
EXPECTED_BOX2D = [
    {"box2d": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}, "category": name}
    for name, x0, y0, x1, y1 in BOXES
]


def voc_xml(objects: str) -> bytes:
    return (
        "<annotation><folder>VOC2012</folder><filename>a.jpg</filename>"
        f"<size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"
        f"{objects}</annotation>"
    ).encode()


def voc_object(name: str, *corners: object, extra: str = "") -> str:
    box = "".join(
        f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=False)
    )
    return f"<object><name>{name}</name>{extra}<bndbox>{box}</bndbox></object>"


def yolo_line(name: str, *corners: float) -> str:
    """A YOLO line as an exporter writes it: decimals, computed without float rounding."""
    x0, y0, x1, y1 = (Decimal(repr(v)) for v in corners)
    cx, cy = (x0 + x1) / 2 / WIDTH, (y0 + y1) / 2 / HEIGHT
    w, h = (x1 - x0) / WIDTH, (y1 - y0) / HEIGHT
    return f"{CLASSES.index(name)} {cx} {cy} {w} {h}"


def coco_doc(
    *, images: list[Any], annotations: list[Any], categories: list[Any] | None = None
) -> dict[str, Any]:
    if categories is None:
        categories = [
            {"id": i + 1, "name": n, "supercategory": "animal"} for i, n in enumerate(CLASSES)
        ]
    # Categories first, annotations before images: COCO does not fix the order.
    return {"categories": categories, "annotations": annotations, "images": images}


def image(image_id: int, file_name: str) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT}


def build(tmp_path: Path, doc: dict[str, Any] | bytes) -> CocoIndex:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return CocoIndex.build(io.BytesIO(raw), tmp_path / "coco.sqlite")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[CocoIndex]:
    annotations = [
        {
            "id": 100 + n,
            "image_id": 1,
            "category_id": CLASSES.index(name) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
        }
        for n, (name, x0, y0, x1, y1) in enumerate(BOXES)
    ]
    doc = coco_doc(images=[image(1, "a.jpg"), image(2, "empty.jpg")], annotations=annotations)
    with build(tmp_path, doc) as built:
        yield built


# --- the same boxes in VOC, YOLO and COCO ------------------------------------------------


def test_the_same_boxes_give_the_same_box2d_label_in_all_three_formats(index: CocoIndex) -> None:
    voc = parse_voc(voc_xml("".join(voc_object(name, *corners) for name, *corners in BOXES)))
    yolo_txt = "\n".join(yolo_line(*box) for box in BOXES).encode()
    yolo = parse_yolo(yolo_txt, classes=CLASSES, image_size=(WIDTH, HEIGHT))
    coco = index.label_for("a.jpg")

    assert voc == yolo == {"BOX2D": EXPECTED_BOX2D}
    # COCO adds each annotation's id as the instance, tying its box to its masks.
    assert coco == {
        "BOX2D": [dict(entry, instance=str(100 + n)) for n, entry in enumerate(EXPECTED_BOX2D)]
    }
    for label in (voc, yolo, coco):  # canonical TensorBay, as the label model reads it
        assert parse_label(json.dumps(label).encode(), label_type=None) == label


def test_coco_lists_every_image_and_tells_unlisted_from_unannotated(index: CocoIndex) -> None:
    assert list(index.file_names()) == ["a.jpg", "empty.jpg"]
    assert len(index) == 2 and index.annotation_count == 2
    assert index.label_for("empty.jpg") == {}
    assert index.label_for("missing.jpg") is None
    # The one-pass walk planning uses gives what the lookups give.
    assert list(index.labels()) == [(n, index.label_for(n)) for n in index.file_names()]
    assert "empty.jpg" in index and "missing.jpg" not in index


def test_coco_index_reopens_read_only(index: CocoIndex, tmp_path: Path) -> None:
    with CocoIndex.open(index.path) as reopened:
        assert reopened.label_for("a.jpg") == index.label_for("a.jpg")
    (tmp_path / "other.sqlite").write_bytes(b"not a database")
    with pytest.raises(ValueError, match="is not a complete COCO index"):
        CocoIndex.open(tmp_path / "other.sqlite")


# --- VOC ------------------------------------------------------------------------------


def test_voc_attributes_only_when_present() -> None:
    extra = "<pose>Frontal</pose><truncated>1</truncated><difficult>0</difficult>"
    raw = voc_xml(voc_object("dog", 1, 2, 3, 4, extra=extra) + voc_object("cat", 5, 6, 7.5, 8))
    assert parse_voc(raw)["BOX2D"] == [
        {
            "box2d": {"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0},
            "category": "dog",
            "attributes": {"difficult": False, "truncated": True, "pose": "Frontal"},
        },
        {"box2d": {"xmin": 5.0, "ymin": 6.0, "xmax": 7.5, "ymax": 8.0}, "category": "cat"},
    ]
    assert parse_voc(voc_xml("")) == {"BOX2D": []}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (voc_xml(voc_object("a", 1, 2, 3, 4) + voc_object("b", 1, 2, "abc", 4)),
         "object[2].bndbox.xmax: 'abc' is not a number"),
        (voc_xml(voc_object("a", 1, 2, 3, "inf")), "object[1].bndbox.ymax: 'inf' is not a finite"),
        (voc_xml(voc_object("a", 1, 2, 3)), "object[1].bndbox.ymax is missing"),
        (voc_xml(voc_object("a", 5, 2, 3, 4)), "object[1].bndbox: (5, 2)-(3, 4) has min > max"),
        (voc_xml(voc_object("", 1, 2, 3, 4)), "object[1].name is missing or empty"),
        (voc_xml("<object><name>a</name></object>"), "object[1].bndbox is missing"),
        (voc_xml(voc_object("a", 1, 2, 3, 4, extra="<difficult>2</difficult>")),
         "object[1].difficult: '2' is not 0 or 1"),
        (b"<annotation><object>", "not well-formed XML"),
        (b"<labels/>", "the root element is <labels>, not <annotation>"),
        (b'<!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>', "XML refused as unsafe"),
        (b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><annotation>&e;</annotation>',
         "XML refused as unsafe"),
    ],
)  # fmt: skip
def test_voc_errors_name_the_element_and_value(raw: bytes, message: str) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        parse_voc(raw)


# --- YOLO -----------------------------------------------------------------------------


def test_yolo_without_image_size_stays_normalized() -> None:
    raw = b"2 0.5 0.5 0.25 0.5\n\n0 0.1 0.2 0.2 0.2\n"
    assert parse_yolo(raw, classes=CLASSES, image_size=None) == {
        "BOX2D": [
            {"box2d": {"xmin": 0.375, "ymin": 0.25, "xmax": 0.625, "ymax": 0.75},
             "category": "bird"},
            {"box2d": {"xmin": 0.0, "ymin": 0.1, "xmax": 0.2, "ymax": 0.3}, "category": "cat"},
        ]
    }  # fmt: skip


def test_yolo_arithmetic_is_exact_in_decimal() -> None:
    # In floats, (0.1 - 0.05) * 640 is 32.00000000000001 and 0.3 * 640 is 191.99999999999997.
    label = parse_yolo(b"1 0.1 0.3 0.1 0.2", classes=CLASSES, image_size=(640, 480))
    assert label["BOX2D"][0]["box2d"] == {"xmin": 32.0, "ymin": 96.0, "xmax": 96.0, "ymax": 192.0}
    assert parse_yolo(b"", classes=CLASSES, image_size=(640, 480)) == {"BOX2D": []}


def test_class_names_file() -> None:
    assert parse_class_names(b"\xef\xbb\xbfcat\r\ndog \nbird\n\n") == CLASSES
    with pytest.raises(LabelError, match="line 2 is empty"):
        parse_class_names(b"cat\n\ndog\n")
    with pytest.raises(LabelError, match="the class list is empty"):
        parse_class_names(b"\n")


@pytest.mark.parametrize(
    ("raw", "size", "message"),
    [
        (b"0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1", None,
         "line 3: class 7 is not in the 3 classes"),
        (b"-1 0.5 0.5 0.1 0.1", None, "line 1: class '-1' is not a class index"),
        (b"cat 0.5 0.5 0.1 0.1", None, "line 1: class 'cat' is not a class index"),
        (b"0 0.5 0.5 0.1", None, "line 1: expected 5 values (class cx cy w h), got 4"),
        (b"0 0.1 0.1 0.2 0.1 0.2 0.2 0.1", None, "got 8 (a segmentation polygon?"),
        (b"0 0.5 abc 0.1 0.1", None, "line 1: cy 'abc' is not a number"),
        (b"0 0.5 0.5 1/2 0.1", None, "line 1: w '1/2' is not a number"),
        (b"0 0.5 0.5 0.1 nan", None, "line 1: h 'nan' is not a number"),
        (b"0 320 240 10 10", None, "line 1: cx 320 is outside 0..1"),
        (b"0 0.5 0.5 0.1 0.1\xff", None, "not UTF-8"),
        (b"0 0.5 0.5 0.1 0.1", (0, 10), "image size (0, 10) is not two positive integers"),
    ],
)  # fmt: skip
def test_yolo_errors_name_the_line_and_value(
    raw: bytes, size: tuple[int, int] | None, message: str
) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        parse_yolo(raw, classes=CLASSES, image_size=size)


# --- COCO masks and RLE ----------------------------------------------------------------

# pycocotools.mask.encode of a 30×40 mask (a 20×20 square and a 3×5 corner), and its runs.
COMPRESSED = "a9d0:0000000000000000000000000000000000000a4_OPL00000000"
COUNTS = [305, *[20, 10] * 19, 20, 155, *[3, 27] * 5]


def test_coco_polygons_and_both_rle_forms(tmp_path: Path) -> None:
    square = [10, 10, 20, 10, 20, 20, 10, 20]
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 2, "segmentation": [square, [0, 0, 5, 0, 0, 5]],
         "bbox": [10, 10, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [2, 3], "counts": [1, 2, 3]}},
        {"id": 3, "image_id": 7, "category_id": 3, "iscrowd": 1,
         "segmentation": {"size": [30, 40], "counts": COMPRESSED}},
    ]  # fmt: skip
    label = build(
        tmp_path,
        coco_doc(images=[image(9, "before.png"), image(7, "m.png"), image(8, "after.png")],
                 annotations=annotations),
    )  # fmt: skip
    walked = dict(label.labels())
    assert list(walked) == ["before.png", "m.png", "after.png"]
    assert walked["before.png"] == walked["after.png"] == {}
    assert walked["m.png"] == label.label_for("m.png")
    crowd = {"iscrowd": True}
    assert label.label_for("m.png") == {
        "BOX2D": [
            {"box2d": {"xmin": 10.0, "ymin": 10.0, "xmax": 20.0, "ymax": 20.0},
             "category": "dog", "instance": "1"},
        ],
        "POLYGON": [
            {"polygon": [{"x": 10.0, "y": 10.0}, {"x": 20.0, "y": 10.0}, {"x": 20.0, "y": 20.0},
                         {"x": 10.0, "y": 20.0}], "category": "dog", "instance": "1"},
            {"polygon": [{"x": 0.0, "y": 0.0}, {"x": 5.0, "y": 0.0}, {"x": 0.0, "y": 5.0}],
             "category": "dog", "instance": "1"},
        ],
        "RLE": [
            {"rle": [1, 2, 3], "category": "cat", "attributes": crowd, "instance": "2"},
            {"rle": COUNTS, "category": "bird", "attributes": crowd, "instance": "3"},
        ],
    }  # fmt: skip


def test_coco_bbox_corners_are_exact_decimal_sums(tmp_path: Path) -> None:
    annotation = {"image_id": 1, "category_id": 1, "bbox": [0.1, 0.7, 0.2, 0.1]}
    with build(tmp_path, coco_doc(images=[image(1, "a.jpg")], annotations=[annotation])) as index:
        box = index.label_for("a.jpg")["BOX2D"][0]  # type: ignore[index]
    assert box == {"box2d": {"xmin": 0.1, "ymin": 0.7, "xmax": 0.3, "ymax": 0.8}, "category": "cat"}


def test_compressed_rle_matches_pycocotools() -> None:
    assert decode_rle_counts(COMPRESSED) == COUNTS
    assert encode_rle_counts(COUNTS) == COMPRESSED
    # More pycocotools output: a random 5×7 mask, and an all-zero 3×4 one.
    assert decode_rle_counts("02200O03OM114ON0M0") == [
        *(0, 2, 2, 2, 2, 1, 2, 4, 1, 1, 2, 2, 6, 1, 4, 1, 1, 1)
    ]
    assert decode_rle_counts("<") == [12]


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=40))
def test_compressed_rle_round_trips(counts: list[int]) -> None:
    assert decode_rle_counts(encode_rle_counts(counts)) == counts


def test_coco_reads_from_unseekable_streams_and_openers(tmp_path: Path) -> None:
    doc = coco_doc(
        images=[image(1, "a.jpg")],
        annotations=[{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4]}],
    )
    raw = json.dumps(doc).encode()
    expected = {
        "BOX2D": [
            {"box2d": {"xmin": 1.0, "ymin": 2.0, "xmax": 4.0, "ymax": 6.0},
             "category": "dog", "instance": "5"}
        ]
    }  # fmt: skip

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(raw)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            data = self.inner.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)

    with CocoIndex.build(Unseekable(), tmp_path / "a.sqlite") as index:  # type: ignore[arg-type]
        assert index.label_for("a.jpg") == expected
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".json"]  # the spill is gone
    opened: list[io.BytesIO] = []

    def opener() -> io.BytesIO:
        opened.append(io.BytesIO(raw))
        return opened[-1]

    with CocoIndex.build(opener, tmp_path / "b.sqlite") as index:
        assert index.label_for("a.jpg") == expected
    assert len(opened) == 3 and all(stream.closed for stream in opened)


def _annotation(**overrides: Any) -> dict[str, Any]:
    return {"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], **overrides}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b'{"images": [{"id": 1, "file_name": "a.jpg"}', "not valid JSON"),
        (b'{"images": [}', "not valid JSON"),
        (b"[]", "the file lists no images"),
        (coco_doc(images=[image(1, "a.jpg"), image(2, "a.jpg")], annotations=[]),
         "images: file_name 'a.jpg' is listed twice"),
        (coco_doc(images=[image(1, "a.jpg"), image(1, "b.jpg")], annotations=[]),
         "images: id 1 is listed twice"),
        (coco_doc(images=[{"id": 1, "file_name": ""}], annotations=[]),
         "images[0].file_name: '' is not a file name"),
        (coco_doc(images=[{"id": 1, "file_name": "a", "width": -3}], annotations=[]),
         "images[0].width: -3 is not a positive integer"),
        (coco_doc(images=[image(1, "a")], annotations=[], categories=[{"id": 1}]),
         "categories[0].name: None is not a category name"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(), _annotation(image_id=4),
                                                       _annotation(image_id=5)]),
         "annotations[1]: image_id 4 is not in images (and 1 more annotations)"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(category_id=99)]),
         "annotations[0] (id 9).category_id: 99 is not in categories"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(bbox=[1, 2, 3])]),
         "annotations[0] (id 9).bbox: [1, 2, 3] is not 4 numbers"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(bbox=[1, 2, -3, 4])]),
         "has a negative width or height"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(bbox=[1, 2, True, 4])]),
         "is not 4 numbers"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(iscrowd=2)]),
         "annotations[0] (id 9).iscrowd: 2 is not 0 or 1"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(bbox=None)]),
         "annotations[0] (id 9) has neither a bbox nor a segmentation"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation=[[1, 2, 3, 4, 5]])]),
         "annotations[0] (id 9).segmentation[0] has 5 numbers, not x, y pairs of 3 or more"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation=[[1, 2, "x", 4, 5, 6]])]),
         "segmentation[0] is not a list of numbers"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation={"size": [2, 3], "counts": [1, 2]})]),
         "annotations[0] (id 9).segmentation: the counts add up to 3, not 2×3 = 6"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation={"size": [2, 3], "counts": "6~"})]),
         "segmentation.counts is not COCO's compressed RLE: character '~' at 1"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation={"size": [2, 3], "counts": "6a"})]),
         "segmentation.counts is not COCO's compressed RLE: it ends inside a count"),
        (coco_doc(images=[image(1, "a")],
                  annotations=[_annotation(segmentation={"size": [2], "counts": [6]})]),
         "segmentation.size: [2] is not [height, width]"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(segmentation="x")]),
         "segmentation is neither polygons nor RLE"),
        (coco_doc(images=[image(1, "a")], annotations=[_annotation(image_id=[1])]),
         "annotations[0] (id 9).image_id: [1] is not an id"),
    ],
)  # fmt: skip
def test_coco_errors_name_the_annotation_and_problem(
    tmp_path: Path, doc: dict[str, Any] | bytes, message: str
) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        build(tmp_path, doc)
    assert not (tmp_path / "coco.sqlite").exists()  # no half-built index is left


# --- image sizes from file heads --------------------------------------------------------


def jpeg(width: int, height: int, *, orientation: int | None = None) -> bytes:
    """A JPEG's header by hand: SOI, APP0 (JFIF), optional APP1 (EXIF orientation), a DQT
    segment, SOF0 with the size, then the start of scan."""

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    head = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if orientation is not None:
        # TIFF, big-endian: IFD0 at 8 with one entry, Orientation (0x0112), SHORT, count 1.
        ifd = struct.pack(">HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
        head += segment(0xE1, b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd)
    head += segment(0xDB, b"\x00" + bytes(range(64)))
    head += segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    return head + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")


def png_head(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x02"


def test_image_size_of_a_real_png_and_its_first_bytes() -> None:
    png = make_png(3, side=16)
    assert image_size(png) == png_size(png) == (16, 16)
    assert image_size(png[:24]) == (16, 16)  # a ranged read of 24 bytes is enough
    assert image_size(png[:20]) is None
    assert image_size(png_head(7, 3)) == (7, 3)


def test_image_size_of_jpeg_headers() -> None:
    assert image_size(jpeg(640, 480)) == (640, 480)
    # EXIF orientation 6 (rotate 90°): displayed as 480 wide, as trainers load it.
    assert image_size(jpeg(640, 480, orientation=6)) == (480, 640)
    assert image_size(jpeg(640, 480, orientation=6), oriented=False) == (640, 480)
    assert image_size(jpeg(640, 480, orientation=3)) == (640, 480)
    assert image_size(jpeg(640, 480)[:40]) is None  # the head stops before the frame header
    assert image_size(b"\xff\xd8\xff\xda\x00\x02") is None  # scan data, no frame


def test_image_size_of_gif_bmp_and_webp_headers() -> None:
    assert image_size(b"GIF89a" + struct.pack("<HH", 7, 3) + b"\xf7\x00\x00") == (7, 3)
    assert image_size(b"GIF87a" + struct.pack("<HH", 1, 2)) == (1, 2)
    bmp = b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 7, -3)  # negative: top-down rows
    assert image_size(bmp) == (7, 3)
    assert image_size(b"BM" + b"\x00" * 12 + struct.pack("<IHH", 12, 5, 4)) == (5, 4)
    riff = b"RIFF\x00\x00\x00\x00WEBP"
    lossy = riff + b"VP8 \x00\x00\x00\x00\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 7, 3)
    assert image_size(lossy) == (7, 3)
    bits = (7 - 1) | ((3 - 1) << 14)
    assert image_size(riff + b"VP8L\x00\x00\x00\x00\x2f" + struct.pack("<I", bits) + b"\0" * 5) == (
        7,
        3,
    )
    extended = riff + b"VP8X\x00\x00\x00\x00\x00\x00\x00\x00" + (6).to_bytes(3, "little")
    assert image_size(extended + (2).to_bytes(3, "little")) == (7, 3)


def test_image_size_of_something_else_is_none() -> None:
    assert image_size(b"") is None
    assert image_size(b"%PDF-1.7\n") is None
    assert image_size(b"GIF89a\x00\x00\x00\x00") is None  # a zero size is no size
