"""CRC-64 as OSS states it (x-oss-hash-crc64ecma), computed as bytes stream by.

The variant is CRC-64/XZ (also called CRC-64/GO-ECMA): the ECMA-182 polynomial, reflected,
initial value and final XOR all ones. It is crcmod's, built as the OSS SDK builds its
own, so the import logic checks OSS's CRCs without importing that SDK; crcmod runs it in C.
"""

from __future__ import annotations

import crcmod  # untyped: its values are read out as int below

# crcmod's polynomial spelling: the degree-64 term included (0xC96C5795D7870F42 reflected).
_POLY = 0x142F0E1EBA9EA3693
_ALL_ONES = 0xFFFFFFFFFFFFFFFF


class Crc64:
    """A running CRC-64/XZ: `update` with each chunk, then read `value`."""

    def __init__(self) -> None:
        # crcmod's initCrc is the value before the final XOR: 0 here is a register of ones.
        self._crc = crcmod.Crc(_POLY, initCrc=0, rev=True, xorOut=_ALL_ONES)

    def update(self, data: bytes) -> None:
        self._crc.update(data)

    @property
    def value(self) -> int:
        return int(self._crc.crcValue)
