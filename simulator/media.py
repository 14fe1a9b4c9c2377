"""Video and audio results of any size, streamed without being held in memory.

A WAV is real: a PCM header and noise for samples, playable at any length. An MP4 is an ISO base
media file of `ftyp`, `free` and `mdat` boxes: its type reads as mp4 by its magic bytes, as a
CDN's would, and its size is whatever a test asks for (the samples are noise, not a decodable
picture).
"""

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from simulator.images import CHUNK, Streamed

MediaFormat = Literal["mp4", "wav"]
MEDIA_TYPES = {"mp4": "video/mp4", "wav": "audio/wav"}
SAMPLE_RATE, CHANNELS, BITS = 44_100, 2, 16
MP4_HEAD = (
    struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 0x200) + b"isomiso2"
    + struct.pack(">I", 8) + b"free"
)  # fmt: skip
WAV_HEAD = 44


@dataclass(frozen=True)
class MediaFile(Streamed):
    """A video or audio file of exactly `size` bytes, its content decided by `salt`."""

    fmt: MediaFormat
    size: int
    salt: str

    @classmethod
    def sized(cls, fmt: MediaFormat, at_least: int, salt: str) -> "MediaFile":
        return cls(fmt, max(at_least, 1024), salt)

    def chunks(self) -> Iterator[bytes]:
        head = self._mp4_head() if self.fmt == "mp4" else self._wav_head()
        yield head
        block = random.Random(self.salt).randbytes(CHUNK)
        remaining = self.size - len(head)
        while remaining > 0:
            yield block[:remaining]
            remaining -= CHUNK

    def _mp4_head(self) -> bytes:
        data = self.size - len(MP4_HEAD)
        return MP4_HEAD + struct.pack(">I", data) + b"mdat"

    def _wav_head(self) -> bytes:
        data = self.size - WAV_HEAD
        rate = SAMPLE_RATE * CHANNELS * BITS // 8
        return (
            b"RIFF" + struct.pack("<I", self.size - 8) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, SAMPLE_RATE, rate,
                                    CHANNELS * BITS // 8, BITS)
            + b"data" + struct.pack("<I", data)
        )  # fmt: skip
