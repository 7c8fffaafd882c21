"""Decoder throughput against the line rate of a 115200-baud serial link.

Run from the repository root:

    .venv/bin/python bench/bench_decoder.py

Decodes a stream of typical traffic (weight replies for an 8-shelf cabinet,
door events, short replies), clean and with 1 % of its bytes damaged, and
prints frames per second next to how many of the same frames a 115200-baud
line can carry per second.
"""

import argparse
import platform
import random
import statistics
import time

from firmware_protocol.codec import Packet, encode_packet
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import wire_time_s
from firmware_protocol.messages import (
    DoorClosed,
    DoorOpened,
    ShelfReading,
    ShelfStatus,
    UnlockReply,
    WeightsReply,
)

LINE_BAUDRATE = 115200
CHUNK_SIZE = 64


def typical_stream(frame_count: int, seed: int) -> bytes:
    rng = random.Random(seed)
    frames = []
    for index in range(frame_count):
        seq = index % 255 + 1
        kind = rng.random()
        if kind < 0.8:
            shelves = tuple(
                ShelfReading(shelf, ShelfStatus.STABLE, rng.randint(0, 5_000_000))
                for shelf in range(8)
            )
            message: object = WeightsReply(shelves)
        elif kind < 0.9:
            message = UnlockReply(0, rng.getrandbits(32))
        elif kind < 0.95:
            message = DoorOpened(rng.getrandbits(32), 0, rng.getrandbits(32))
        else:
            message = DoorClosed(rng.getrandbits(32), 0, rng.randint(1_000, 60_000))
        frames.append(encode_packet(Packet(1, seq, message)))  # type: ignore[arg-type]
    return b"".join(frames)


def damage(stream: bytes, rate: float, seed: int) -> bytes:
    rng = random.Random(seed)
    damaged = bytearray(stream)
    for index in range(len(damaged)):
        if rng.random() < rate:
            damaged[index] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def decode_seconds(stream: bytes) -> tuple[float, int]:
    decoder = FrameDecoder()
    count = 0
    started = time.perf_counter()
    for start in range(0, len(stream), CHUNK_SIZE):
        count += len(decoder.feed(stream[start : start + CHUNK_SIZE]))
    count += len(decoder.flush())
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames in the stream")
    parser.add_argument("--repeat", type=int, default=5, help="runs per stream; the median counts")
    args = parser.parse_args()

    clean = typical_stream(args.frames, seed=1)
    mean_frame_bytes = len(clean) / args.frames
    line_frames_per_s = 1 / wire_time_s(round(mean_frame_bytes), LINE_BAUDRATE)
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor()}")
    print(f"stream: {args.frames} frames, mean {mean_frame_bytes:.1f} bytes")
    print(f"fed to the decoder in {CHUNK_SIZE}-byte chunks")
    print(f"line rate at {LINE_BAUDRATE} baud: {line_frames_per_s:,.0f} frames/s")

    for label, stream in (("clean", clean), ("1% bytes damaged", damage(clean, 0.01, seed=2))):
        runs = [decode_seconds(stream) for _ in range(args.repeat)]
        seconds = statistics.median(run[0] for run in runs)
        decoded = runs[0][1]
        frames_per_s = decoded / seconds
        megabytes_per_s = len(stream) / seconds / 1e6
        print(
            f"{label:>18}: {decoded:,} frames decoded, {frames_per_s:,.0f} frames/s, "
            f"{megabytes_per_s:.2f} MB/s, {frames_per_s / line_frames_per_s:,.0f}x line rate"
        )


if __name__ == "__main__":
    main()
