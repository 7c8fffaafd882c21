"""Checksums of the frame format.

Both are standard catalogued CRCs, so firmware can use a library implementation
and check itself against the catalogue's check values (input ``b"123456789"``).
"""

import binascii

CRC16_CHECK = 0x29B1
CRC8_CHECK = 0xF4


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Return CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR."""
    return binascii.crc_hqx(data, 0xFFFF)


def _crc8_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_TABLE = _crc8_table(0x07)


def crc8(data: bytes | bytearray | memoryview) -> int:
    """Return CRC-8/SMBUS: poly 0x07, init 0x00, not reflected, no final XOR."""
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc
