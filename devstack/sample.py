"""The seed's sample bucket: `data/images/NNNNN.png` with `data/labels/NNNNN.json`
classification labels, generated (tiny real PNGs) into any store."""

from __future__ import annotations

import json
import random
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from storage_adapters.base import ObjectStore
from storage_adapters.retry import RetryPolicy

CATEGORIES = ("cat", "dog")
COLORS = ("red", "black", "white", "ginger")


def make_png(seed: int, *, side: int = 16) -> bytes:
    """A valid side×side RGB PNG whose pixels depend on `seed`."""
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(side * 3) for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_label(seed: int) -> dict[str, object]:
    """A classification label as the seed stores it (the inner object, no type key)."""
    rng = random.Random(seed)
    return {"category": rng.choice(CATEGORIES), "attributes": {"color": rng.choice(COLORS)}}


def image_key(i: int, *, prefix: str = "data/") -> str:
    return f"{prefix}images/{i:05d}.png"


def label_key(i: int, *, prefix: str = "data/") -> str:
    return f"{prefix}labels/{i:05d}.json"


def populate(
    store: ObjectStore, n: int, *, prefix: str = "data/", image_side: int = 16, threads: int = 16
) -> None:
    """Write images 1..n and their labels under `prefix`."""

    retry = RetryPolicy(attempts=6, initial_wait=0.05, max_wait=1.0)

    def put(i: int) -> None:
        image = make_png(i, side=image_side)
        label = json.dumps(make_label(i)).encode()
        retry.call(lambda: store.put(image_key(i, prefix=prefix), image))
        retry.call(lambda: store.put(label_key(i, prefix=prefix), label))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(1, n + 1)))


def seed_manifest(**options: Any) -> dict[str, Any]:
    """The seed's import, as the demo and the e2e tests submit it: `user-bucket`'s
    `data/images/` with their classification labels in `data/labels/`, into dataset Cats,
    segment default."""
    return {
        "dataset": "Cats",
        "segment": "default",
        "source": {
            "config_name": "user-bucket",
            "data_prefix": "data/images/",
            "label_prefix": "data/labels/",
            "label_type": "classification",
        },
        "options": options,
    }
