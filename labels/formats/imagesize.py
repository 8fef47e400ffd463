"""An image's width and height from the first bytes of its file (PNG, JPEG, GIF, BMP, WebP).

Pure Python and header-only, so the importer can size an image from a ranged read of its first
bytes instead of downloading it. None means "cannot tell from these bytes": an unknown format,
a damaged header, or a head too short. PNG, GIF, BMP and WebP need at most 30 bytes; a JPEG's
size comes after its APPn segments (EXIF with a thumbnail, ICC profiles), which may take tens of
kilobytes: read HEAD_BYTES, and when a JPEG still gives None, read more and ask again.
"""

from __future__ import annotations

import struct

HEAD_BYTES = 64 * 1024
"""A first ranged read that sizes nearly every image, JPEGs with EXIF thumbnails included."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but
# are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_EXIF_ORIENTATION = 0x0112
_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter


def image_size(head: bytes, *, oriented: bool = True) -> tuple[int, int] | None:
    """(width, height) in pixels of the image whose file starts with `head`.

    With `oriented` (the default), a JPEG whose EXIF orientation turns it a quarter (5-8) gives
    its displayed size, width and height swapped: the size labelling tools and YOLO trainers
    see, since they load images EXIF-transposed. EXIF orientation in other formats is ignored.
    """
    if head.startswith(_PNG_SIGNATURE):
        return png_size(head)
    if head.startswith(b"\xff\xd8"):
        return jpeg_size(head, oriented=oriented)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return gif_size(head)
    if head.startswith(b"BM"):
        return bmp_size(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return webp_size(head)
    return None


def png_size(head: bytes) -> tuple[int, int] | None:
    """A PNG's size from its IHDR chunk (bytes 16-24; Apple's CgBI chunk may come first)."""
    if not head.startswith(_PNG_SIGNATURE):
        return None
    pos = len(_PNG_SIGNATURE)
    if head[pos + 4 : pos + 8] == b"CgBI":
        (length,) = struct.unpack_from(">I", head, pos)
        pos += 12 + length
    if len(head) < pos + 16 or head[pos + 4 : pos + 8] != b"IHDR":
        return None
    return _positive(*struct.unpack_from(">II", head, pos + 8))


def gif_size(head: bytes) -> tuple[int, int] | None:
    """A GIF's logical screen size (bytes 6-10, little-endian)."""
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 10:
        return None
    return _positive(*struct.unpack_from("<HH", head, 6))


def bmp_size(head: bytes) -> tuple[int, int] | None:
    """A BMP's size from its DIB header; a negative height (top-down rows) counts as its
    absolute value."""
    if not head.startswith(b"BM") or len(head) < 18:
        return None
    (dib_size,) = struct.unpack_from("<I", head, 14)
    if dib_size == 12:  # BITMAPCOREHEADER (OS/2 1.x): unsigned 16-bit sizes
        return _positive(*struct.unpack_from("<HH", head, 18)) if len(head) >= 22 else None
    if dib_size < 16 or len(head) < 26:
        return None
    width, height = struct.unpack_from("<ii", head, 18)
    return _positive(width, abs(height))


def webp_size(head: bytes) -> tuple[int, int] | None:
    """A WebP's size from its first chunk: lossy (VP8), lossless (VP8L) or extended (VP8X)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":  # the key frame's start code
            return None
        width, height = struct.unpack_from("<HH", head, 26)
        return _positive(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        if head[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", head, 21)
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _positive(width, height)
    return None


def jpeg_size(head: bytes, *, oriented: bool = True) -> tuple[int, int] | None:
    """A JPEG's size from its start-of-frame segment, walking the segments before it."""
    if not head.startswith(b"\xff\xd8"):
        return None
    pos, orientation = 2, 1
    while True:
        # A marker is 0xFF then a code; extra 0xFF bytes before the code are fill.
        if pos >= len(head) or head[pos] != 0xFF:
            return None
        while pos < len(head) and head[pos] == 0xFF:
            pos += 1
        if pos >= len(head):
            return None
        marker = head[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, end of image, scan data: no frame seen
            return None
        if pos + 2 > len(head):
            return None
        (length,) = struct.unpack_from(">H", head, pos)
        if length < 2:
            return None
        segment = head[pos + 2 : pos + length]
        if marker in _JPEG_SOF:
            if len(segment) < 5:
                return None
            height, width = struct.unpack_from(">HH", segment, 1)
            size = _positive(width, height)  # height 0 means "defined later" (DNL): unknown
            if size is not None and oriented and orientation in _ROTATED:
                return size[1], size[0]
            return size
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:]) or orientation
        pos += length


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag of IFD0 in an EXIF TIFF block, if it is there and readable."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for n in range(count):
            tag, kind, _count, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * n)
            if tag == _EXIF_ORIENTATION and kind == 3:  # SHORT, stored in the value's first 2
                (orientation,) = struct.unpack_from(order + "H", value)
                return int(orientation) if 1 <= orientation <= 8 else None
    except struct.error:
        return None
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (int(width), int(height)) if width > 0 and height > 0 else None
