"""The incremental frame decoder: damaged streams, arbitrary splits and random noise."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol.codec import Packet, encode_packet
from firmware_protocol.crc import crc16
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import Frame, encode_frame
from firmware_protocol.vectors import VECTORS_PATH
from protocol_strategies import any_message

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
STREAM_VECTORS = VECTORS["streams"]
VALID_STREAM = b"".join(bytes.fromhex(vector["hex"]) for vector in VECTORS["frames"])
VALID_FRAMES = FrameDecoder().feed(VALID_STREAM)


def _crc_is_valid(frame: Frame) -> bool:
    wire = encode_frame(frame)
    return crc16(wire[2:-2]) == int.from_bytes(wire[-2:], "little")


@pytest.mark.parametrize("vector", STREAM_VECTORS, ids=[v["name"] for v in STREAM_VECTORS])
def test_stream_vector(vector: dict) -> None:
    decoder = FrameDecoder()

    frames = decoder.feed(bytes.fromhex(vector["hex"]))
    if vector["idle_flush"]:
        frames += decoder.flush()

    expected = vector["expected"]
    assert [encode_frame(frame).hex() for frame in frames] == expected["frames"]
    assert decoder.stats.header_errors == expected["header_errors"]
    assert decoder.stats.crc_errors == expected["crc_errors"]
    assert decoder.stats.version_errors == expected["version_errors"]
    assert decoder.stats.bytes_discarded == expected["bytes_discarded"]
    assert decoder.pending == expected["pending"]


def test_valid_stream_holds_every_vector() -> None:
    assert len(VALID_FRAMES) == len(VECTORS["frames"])


def test_one_byte_at_a_time_yields_same_frames() -> None:
    decoder = FrameDecoder()

    frames = [frame for byte in VALID_STREAM for frame in decoder.feed(bytes((byte,)))]

    assert frames == VALID_FRAMES
    assert decoder.pending == 0


def test_split_at_every_offset_yields_same_frames() -> None:
    for offset in range(len(VALID_STREAM) + 1):
        decoder = FrameDecoder()

        frames = decoder.feed(VALID_STREAM[:offset]) + decoder.feed(VALID_STREAM[offset:])

        assert frames == VALID_FRAMES, f"split at offset {offset}"


@given(st.lists(any_message, min_size=1, max_size=8), st.data())
def test_random_chunks_yield_every_frame(messages: list, data: st.DataObject) -> None:
    wire = b"".join(encode_packet(Packet(1, i, m)) for i, m in enumerate(messages))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = FrameDecoder()

    frames = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        frames += decoder.feed(wire[start:end])

    assert [frame.payload for frame in frames] == [m.encode_payload() for m in messages]


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.binary(max_size=40), max_size=6))
def test_arbitrary_bytes_never_raise(prefix: bytes, chunks: list[bytes]) -> None:
    decoder = FrameDecoder()

    frames = decoder.feed(prefix)
    for chunk in chunks:
        frames += decoder.feed(chunk)
    frames += decoder.flush()

    assert all(_crc_is_valid(frame) for frame in frames)
    assert decoder.pending == 0


def test_million_random_bytes() -> None:
    noise = random.Random(20261204).randbytes(1_000_000)
    decoder = FrameDecoder()

    frames = []
    for start in range(0, len(noise), 4096):
        frames += decoder.feed(noise[start : start + 4096])
    frames += decoder.flush()

    # Random noise may contain a frame that passes both checks (about 2**-24
    # per start of frame); every frame returned must still carry a valid CRC.
    assert all(_crc_is_valid(frame) for frame in frames)
    assert decoder.stats.bytes_discarded + sum(len(encode_frame(f)) for f in frames) == len(noise)


def _corrupted_stream(
    seed: int, frame_count: int, rate: float
) -> tuple[bytes, list[Frame], list[bool]]:
    """Return a stream of frames with ``rate`` of its bytes damaged, and which frames are intact.

    Damage is a flipped bit, a replaced byte, a deleted byte or an inserted byte. A frame
    counts as intact when its original bytes still stand together in the stream, since a
    byte inserted before its SOF or replaced by the same value leaves it whole.
    """
    rng = random.Random(seed)
    stream = bytearray()
    frames: list[Frame] = []
    intact: list[bool] = []
    for index in range(frame_count):
        shelves = rng.randint(1, 12)
        payload = rng.randbytes(1 + 6 * shelves)
        frame = Frame(rng.randint(1, 247), index % 256, 0x84, payload)
        original = encode_frame(frame)
        wire = bytearray(original)
        position = 0
        while position < len(wire):
            if rng.random() < rate:
                kind = rng.randrange(4)
                if kind == 0:
                    wire[position] ^= 1 << rng.randrange(8)
                elif kind == 1:
                    wire[position] = rng.randrange(256)
                elif kind == 2:
                    del wire[position]
                    continue
                else:
                    wire.insert(position, rng.randrange(256))
                    position += 1
            position += 1
        stream += wire
        frames.append(frame)
        intact.append(original in wire)
    return bytes(stream), frames, intact


def test_one_percent_corruption_recovers_every_intact_frame() -> None:
    stream, frames, intact = _corrupted_stream(seed=7, frame_count=20_000, rate=0.01)
    decoder = FrameDecoder()

    decoded = []
    for start in range(0, len(stream), 997):
        decoded += decoder.feed(stream[start : start + 997])
    decoded += decoder.flush()

    expected = [frame for frame, ok in zip(frames, intact, strict=True) if ok]
    damaged_count = intact.count(False)
    assert damaged_count > 5_000, "the stream must really be damaged"
    assert all(_crc_is_valid(frame) for frame in decoded)
    assert decoded == expected
    assert decoder.stats.crc_errors + decoder.stats.header_errors >= damaged_count // 2


def test_flush_on_empty_decoder_is_a_no_op() -> None:
    decoder = FrameDecoder()

    assert decoder.flush() == []
    assert decoder.stats.idle_flushes == 0


def test_feed_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        FrameDecoder().feed("a55a")  # type: ignore[arg-type]
