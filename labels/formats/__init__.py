"""Readers for the label formats users keep in their buckets (Pascal VOC XML, YOLO txt,
COCO JSON), each giving TensorBay's label model `{TYPE: [entries]}` or a LabelError."""

from labels.formats.coco import CocoIndex, decode_rle_counts, encode_rle_counts
from labels.formats.imagesize import HEAD_BYTES, image_size, png_size
from labels.formats.voc import parse_voc
from labels.formats.yolo import parse_class_names, parse_yolo

__all__ = [
    "HEAD_BYTES",
    "CocoIndex",
    "decode_rle_counts",
    "encode_rle_counts",
    "image_size",
    "parse_class_names",
    "parse_voc",
    "parse_yolo",
    "png_size",
]
