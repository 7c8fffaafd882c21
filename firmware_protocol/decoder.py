"""Incremental frame decoder.

The decoder takes bytes in whatever pieces the serial port delivers and
returns the valid frames they contain. It never raises on line content:
noise, truncated frames and frames with a bad check are counted in
``stats`` and skipped, and decoding resumes at the next start of frame.

After a bad header check or CRC it drops only the two SOF bytes, so a valid
frame that starts inside the rejected one is still found.
"""

from dataclasses import dataclass

from firmware_protocol.crc import crc8, crc16
from firmware_protocol.frame import HEADER_SIZE, PROTOCOL_VERSION, SOF, TRAILER_SIZE, Frame

_SOF_FIRST = SOF[0]


@dataclass(slots=True)
class DecoderStats:
    """Counters of what the decoder has seen since it was created."""

    frames: int = 0
    header_errors: int = 0
    crc_errors: int = 0
    version_errors: int = 0
    bytes_discarded: int = 0
    idle_flushes: int = 0


class FrameDecoder:
    """Turn a byte stream into frames; see the module docstring."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.stats = DecoderStats()

    @property
    def pending(self) -> int:
        """Number of bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Append ``data`` to the stream and return every frame now complete.

        Raises ``TypeError`` if ``data`` is not bytes-like; nothing else.
        """
        self._buffer += data
        return self._extract()

    def flush(self) -> list[Frame]:
        """Give up on a partial frame because the line went idle.

        A corrupted LEN byte that passed the header check by chance would make
        the decoder wait for bytes that never come. When the line has been
        quiet for the inter-frame gap, the owner calls this: the partial
        frame's SOF is dropped and the bytes after it are scanned again.
        """
        if not self._buffer:
            return []
        self.stats.idle_flushes += 1
        frames: list[Frame] = []
        while self._buffer:
            self._discard(min(len(SOF), len(self._buffer)))
            frames += self._extract()
        return frames

    def _discard(self, count: int) -> None:
        del self._buffer[:count]
        self.stats.bytes_discarded += count

    def _extract(self) -> list[Frame]:
        buffer = self._buffer
        frames: list[Frame] = []
        while True:
            start = buffer.find(SOF)
            if start < 0:
                # Keep a trailing 0xA5: it may be the first half of the next SOF.
                keep = 1 if buffer and buffer[-1] == _SOF_FIRST else 0
                if len(buffer) > keep:
                    self._discard(len(buffer) - keep)
                return frames
            if start:
                self._discard(start)
            if len(buffer) < HEADER_SIZE:
                return frames

            version, address, seq, type_code, length, check = buffer[2:HEADER_SIZE]
            if crc8(buffer[2:7]) != check:
                self.stats.header_errors += 1
                self._discard(len(SOF))
                continue

            end = HEADER_SIZE + length + TRAILER_SIZE
            if len(buffer) < end:
                return frames

            crc_received = buffer[end - 2] | (buffer[end - 1] << 8)
            with memoryview(buffer) as view:
                crc_computed = crc16(view[2 : end - 2])
            if crc_computed != crc_received:
                self.stats.crc_errors += 1
                self._discard(len(SOF))
                continue

            if version != PROTOCOL_VERSION:
                # A whole frame of a framing version this decoder does not speak.
                self.stats.version_errors += 1
                self._discard(end)
                continue

            frames.append(Frame(address, seq, type_code, bytes(buffer[HEADER_SIZE : end - 2])))
            self.stats.frames += 1
            del buffer[:end]
