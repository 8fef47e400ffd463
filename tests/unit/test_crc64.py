"""importer.crc64 is OSS's CRC-64 (x-oss-hash-crc64ecma): the same values as oss2's Crc64."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from oss2.utils import Crc64 as Oss2Crc64

from importer.crc64 import Crc64

INPUTS = [
    b"",
    b"a",
    b"123456789",
    b"\x00" * 1000,
    b"\xff" * 7,
    bytes(range(256)) * 4,
    random.Random(64).randbytes(100_000),
]


def crc_of(data: bytes, *, chunk: int | None = None) -> int:
    crc = Crc64()
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        crc.update(data[i : i + step])
    return crc.value


def test_the_check_value_of_crc64_xz() -> None:
    # The catalogue's check value of CRC-64/XZ (poly 0x42F0E1EBA9EA3693 reflected, init and
    # xorout all ones): the CRC of "123456789".
    assert crc_of(b"123456789") == 0x995DC9BBDF1939FA
    assert crc_of(b"") == 0


@pytest.mark.parametrize("data", INPUTS, ids=lambda d: f"{len(d)}B")
def test_the_same_as_oss2(data: bytes) -> None:
    theirs = Oss2Crc64(0)
    theirs.update(data)
    assert crc_of(data) == theirs.crc


@pytest.mark.parametrize("chunk", [1, 3, 4096, 65536])
def test_chunks_add_up_to_the_whole(chunk: int) -> None:
    data = INPUTS[-1][:20_000]
    assert crc_of(data, chunk=chunk) == crc_of(data)


def test_the_import_logic_loads_no_oss_sdk() -> None:
    """The importer's CRC-64 is its own: importing the import logic loads no oss2 (so it
    does not need the OSS extra)."""
    code = "import sys, importer.service; print('oss2' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
