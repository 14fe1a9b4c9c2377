"""Real result images: PNG, JPEG or WebP drawn from the prompt, padded to any size as a stream.

Padding goes where decoders skip it (a private PNG chunk, JPEG comment segments, an unknown RIFF
chunk), so a 60 MB file stays a valid image and is never held in memory whole.
"""

import hashlib
import io
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw

from simulator.config import ImageFormat

CHUNK = 64 * 1024
RATIOS = {"1:1": (1, 1), "2:3": (2, 3), "3:2": (3, 2), "16:9": (16, 9), "9:16": (9, 16)}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def render(prompt: str, index: int, aspect_ratio: str, fmt: ImageFormat, long_side: int) -> bytes:
    """A picture whose colours and shapes follow from the prompt and the image's index."""
    seed = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    across, down = RATIOS.get(aspect_ratio, (1, 1))
    scale = long_side / max(across, down)
    size = (max(1, round(across * scale)), max(1, round(down * scale)))
    image = Image.new("RGB", size, tuple(seed[0:3]))
    draw = ImageDraw.Draw(image)
    for n in range(6):
        a, b, c, d = seed[3 + 4 * n : 7 + 4 * n]
        box = sorted((a * size[0] // 255, c * size[0] // 255))
        rows = sorted((b * size[1] // 255, d * size[1] // 255))
        draw.ellipse(
            (box[0], rows[0], box[1], rows[1]), fill=tuple(seed[n * 3 % 29 : n * 3 % 29 + 3])
        )
    out = io.BytesIO()
    image.save(out, format=fmt.upper())
    return out.getvalue()


class Streamed:
    """A file made as a stream of chunks, never held whole unless read."""

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def read(self) -> bytes:
        return b"".join(self.chunks())


@dataclass(frozen=True)
class PaddedImage(Streamed):
    """An encoded image plus `padding` filler bytes, streamed in chunks."""

    base: bytes
    fmt: ImageFormat
    padding: int
    salt: str

    @classmethod
    def sized(cls, base: bytes, fmt: ImageFormat, at_least: int, salt: str) -> "PaddedImage":
        overhead = {"png": 12, "jpeg": 0, "webp": 8}[fmt]
        missing = at_least - len(base) - overhead
        if fmt == "jpeg":
            segments = -(-missing // JPEG_SEGMENT)
            missing -= 4 * segments  # each comment segment costs a marker and a length
        return cls(base, fmt, max(0, missing + (missing % 2 if fmt == "webp" else 0)), salt)

    @property
    def size(self) -> int:
        if self.padding == 0:
            return len(self.base)
        if self.fmt == "png":
            return len(self.base) + 12 + self.padding
        if self.fmt == "webp":
            return len(self.base) + 8 + self.padding
        return len(self.base) + self.padding + 4 * -(-self.padding // JPEG_SEGMENT)

    def chunks(self) -> Iterator[bytes]:
        if self.padding == 0:
            yield self.base
        elif self.fmt == "png":
            yield from self._png()
        elif self.fmt == "webp":
            yield from self._webp()
        else:
            yield from self._jpeg()

    def _filler(self, count: int) -> Iterator[bytes]:
        block = random.Random(self.salt).randbytes(CHUNK)
        while count > 0:
            yield block[:count]
            count -= CHUNK

    def _png(self) -> Iterator[bytes]:
        iend = len(self.base) - 12  # IEND is always the last 12 bytes
        yield self.base[:iend]
        kind = b"imPd"  # ancillary, private, safe to copy: every decoder skips it
        yield struct.pack(">I", self.padding) + kind
        crc = zlib.crc32(kind)
        for piece in self._filler(self.padding):
            crc = zlib.crc32(piece, crc)
            yield piece
        yield struct.pack(">I", crc & 0xFFFFFFFF)
        yield self.base[iend:]

    def _webp(self) -> Iterator[bytes]:
        riff_size = struct.unpack("<I", self.base[4:8])[0] + 8 + self.padding
        yield b"RIFF" + struct.pack("<I", riff_size) + self.base[8:]
        yield b"PADD" + struct.pack("<I", self.padding)
        yield from self._filler(self.padding)

    def _jpeg(self) -> Iterator[bytes]:
        yield self.base[:2]  # SOI
        remaining = self.padding
        filler = self._filler(self.padding)
        pending = b""
        while remaining > 0:
            length = min(remaining, JPEG_SEGMENT)
            while len(pending) < length:
                pending += next(filler)
            yield b"\xff\xfe" + struct.pack(">H", length + 2) + pending[:length]
            pending = pending[length:]
            remaining -= length
        yield self.base[2:]


JPEG_SEGMENT = 65533 - 2  # a comment segment holds at most 65535 bytes, its length field included
