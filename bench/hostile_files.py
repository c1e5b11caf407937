"""The hostile corpus: every input that tests/api/test_hostile.py holds to its bounds, refused with a 4xx or decoded
within the pixel budget of digits/imaging/formats.py and the mark budget of digits/imaging/groups.py. Each is built
here, small and deterministic, from the shape of the attack: a few bytes that claim millions of pixels, or
millions of tiny parts that Pillow would walk one by one in Python."""

import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.imaging import formats
from digits.imaging.groups import MAX_MARKS
from digits.imaging.png import encode


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[], bytes]
    status: int  # what /predict answers: 413 refused for its cost, 400 unreadable, 422 no digit, 200 read
    # Bounded only by the sandbox's limits (digits/service/sandbox.py): read in process, it costs seconds.
    sandbox_only: bool = False


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    width: int,
    height: int,
    raw: bytes,
    color: int = 0,
    depth: int = 8,
    interlace: int = 0,
    before: bytes = b"",
    idat: bytes = b"",
) -> bytes:
    """A PNG written chunk by chunk, for what Pillow won't write: interlacing, and chunks by the hundred thousand."""
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + before
        + idat
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _blank_png(before: bytes = b"", idat: bytes = b"") -> bytes:
    return _png(28, 28, bytes(29 * 28), before=before, idat=idat)


def _bmp_rle(width: int, height: int, bits: int, pixels: bytes) -> bytes:
    """A run-length encoded BMP (RLE8, or RLE4 with bits=4) with a black and white palette."""
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 1 if bits == 8 else 2, len(pixels), 0, 0, 2, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def _jpeg(before_scan: bytes) -> bytes:
    """A small white JPEG with these bytes put right after its start-of-image marker."""
    data = encode(Image.new("L", (28, 28), 255), "JPEG")
    return data[:2] + before_scan + data[2:]


def _segment(marker: int, body: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body


def _entropy_coded(codes: list[tuple[int, int]]) -> bytes:
    """Huffman codes (value, bit length) as a JPEG scan's bytes: padded with ones, each 0xFF byte stuffed."""
    bits = "".join(format(value, f"0{length}b") for value, length in codes)
    bits += "1" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")


def _progressive_scans(width: int, height: int, scans: int) -> bytes:
    """A greyscale progressive JPEG whose first AC coefficient is sent again in `scans` scans. Each scan is a few
    end-of-band runs of 32,767 blocks, 40 bytes; libjpeg walks every block of the image for each, 2.7 ms a scan
    at 7000×5000, while its header promises the decoding time of one ordinary progressive JPEG (libjpeg-turbo's
    "progressive JPEG with many scans" denial of service)."""
    blocks = -(-width // 8) * -(-height // 8)
    dc_table = b"\x00" + bytes([1] + [0] * 15) + b"\x00"  # category 0, a zero difference, is the code '0'
    ac_table = b"\x10" + bytes([1, 1] + [0] * 14) + b"\xe0\x00"  # a run of 2^14 + n blocks is '0', EOB '10'
    header = (
        b"\xff\xd8"
        + _segment(0xDB, b"\x00" + b"\x01" * 64)
        + _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + _segment(0xC4, dc_table)
        + _segment(0xC4, ac_table)
    )
    dc = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + _entropy_coded([(0, 1)] * blocks)
    runs = [(0, 1), (0x3FFF, 14)] * -(-blocks // 32767)  # each: 32,767 blocks with no coefficient
    ac = _segment(0xDA, b"\x01\x01\x00\x01\x01\x00") + _entropy_coded(runs)
    return header + dc + ac * scans + b"\xff\xd9"


def with_digit(mode: str, side: int) -> Image.Image:
    """A blank page of side×side with a thick 1 drawn on it: decoded in full, then read."""
    im = Image.new(mode, (side, side), "white")
    ImageDraw.Draw(im).rectangle([side * 9 // 20, side // 5, side * 11 // 20, side * 4 // 5], fill="black")
    return im


def _largest(fmt: str, bytes_per_pixel: int) -> int:
    """The side of the largest square image of this format that formats.decode_ms() accepts."""
    rate = formats.MS_PER_MB[fmt] * bytes_per_pixel
    return int((formats.DECODE_BUDGET_MS / rate * 1e6) ** 0.5) - 1


def _dots() -> bytes:
    a = np.full((500, 512), 255, np.uint8)
    a[::2, ::2] = 0
    return encode(Image.fromarray(a), "PNG", optimize=True)


def _blobs(count: int) -> bytes:
    """count separate blobs of equal ink on a grid, 16 to a row: each passes the dust filter."""
    rows = -(-count // 16)
    a = np.full((rows * 12 + 4, 16 * 12 + 4), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, 16)
        a[4 + r * 12 : 4 + r * 12 + 6, 4 + c * 12 : 4 + c * 12 + 6] = 0
    return encode(Image.fromarray(a), "PNG")


def _tiff_strips(strips: int) -> bytes:
    return encode(Image.new("L", (8, strips), 255), "TIFF", tiffinfo={278: 1})  # RowsPerStrip 1


def _tiff_tags(tags: int) -> bytes:
    """A TIFF whose first directory holds `tags` entries of an unknown tag."""
    entries = b"".join(struct.pack("<HHII", 60000 + i % 5000, 1, 1, 0) for i in range(tags))
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", tags) + entries + b"\x00\x00\x00\x00"


def _gif_sub_blocks(blocks: int) -> bytes:
    """A GIF with a comment extension of `blocks` one-byte sub-blocks before its image."""
    data = encode(Image.new("L", (28, 28), 255), "GIF")
    image = data.index(b"\x2c", 13)  # the image descriptor, after the header and the colour table
    return data[:image] + b"\x21\xfe" + b"\x01a" * blocks + b"\x00" + data[image:]


def _interlaced_rgba16(side: int) -> bytes:
    """A blank 16-bit RGBA PNG in Adam7 passes: twice the samples of an 8-bit one, in seven passes."""
    raw = bytearray()
    for x0, y0, dx, dy in [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ]:
        width, height = -(-(side - x0) // dx), -(-(side - y0) // dy)
        raw += bytes((width * 8 + 1) * height)
    return _png(side, side, bytes(raw), color=6, depth=16, interlace=1)


def _ztxt_bomb() -> bytes:
    body = b"k\x00\x00" + zlib.compress(b"a" * 1_000_000, 9)  # 1 MB of text from 1 KB, a hundred times
    return _blank_png(before=_chunk(b"zTXt", body) * 100)


def _exif_bomb() -> bytes:
    """A PNG whose EXIF directory has the most entries it can: 65,535."""
    n = 65535
    ifd = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", n) + struct.pack(">HHII", 0x010E, 2, 4, 0) * n
    return _blank_png(before=_chunk(b"eXIf", ifd + b"\x00" * 4))


RGBA_SIDE = _largest("PNG", 4)


WEBP_SIDE = _largest("WEBP", 4)  # libwebp decodes onto an RGBA canvas


CORPUS = [
    Hostile(
        "lossless WebP of 6324×6324",
        lambda: encode(Image.new("RGB", (6324, 6324), "white"), "WEBP", lossless=True),
        413,
    ),
    Hostile("RLE8 BMP of 6000×6000", lambda: _bmp_rle(6000, 6000, 8, b"\x00\x01"), 413),
    Hostile(
        "RLE4 BMP of 1000×1000 in runs",
        lambda: _bmp_rle(1000, 1000, 4, (b"\xff\x11" * 4 + b"\x00\x00") * 1000 + b"\x00\x01"),
        422,
    ),
    Hostile("PNG of 64,000 dots", _dots, 422),
    Hostile(f"PNG of {MAX_MARKS - 1} blobs", lambda: _blobs(MAX_MARKS - 1), 200),
    Hostile("PNG of 600,000 empty chunks", lambda: _blank_png(before=_chunk(b"abCD", b"") * 600_000), 413),
    Hostile("PNG of 800,000 empty IDAT chunks", lambda: _blank_png(idat=_chunk(b"IDAT", b"") * 800_000), 413),
    Hostile("PNG with 100 zTXt bombs", _ztxt_bomb, 400),
    Hostile("PNG with 65,535 EXIF entries", _exif_bomb, 413),
    Hostile("RGBA PNG of 6324×6324", lambda: _png(6324, 6324, bytes((6324 * 4 + 1) * 6324), color=6), 413),
    Hostile("16-bit interlaced RGBA PNG of 6324×6324", lambda: _interlaced_rgba16(6324), 413),
    Hostile(f"largest RGBA PNG accepted, {RGBA_SIDE}²", lambda: encode(with_digit("RGBA", RGBA_SIDE), "PNG"), 200),
    Hostile(
        f"largest WebP accepted, {WEBP_SIDE}²",
        lambda: encode(with_digit("RGB", WEBP_SIDE), "WEBP", lossless=True),
        200,
    ),
    Hostile("greyscale PNG of 6324×6324", lambda: encode(with_digit("L", 6324), "PNG"), 200),
    Hostile("GIF of 6324×6324", lambda: encode(with_digit("L", 6324), "GIF"), 200),
    Hostile("1-bit G4 TIFF of 6324×6324", lambda: encode(with_digit("1", 6324), "TIFF", compression="group4"), 200),
    Hostile(
        "progressive JPEG of 6324×6324",
        lambda: encode(with_digit("RGB", 6324), "JPEG", progressive=True, quality=50),
        200,
    ),
    Hostile("progressive JPEG of 7000×5000 in 5,000 scans", lambda: _progressive_scans(7000, 5000, 5000), 413, True),
    Hostile("JPEG with 2,000,000 comments", lambda: _jpeg(b"\xff\xfe\x00\x02" * 2_000_000), 413),
    Hostile("JPEG with 8 MB of junk", lambda: _jpeg(b"\x00" * 8_000_000), 413),
    Hostile("GIF with 1,000,000 sub-blocks", lambda: _gif_sub_blocks(1_000_000), 413),
    Hostile("TIFF in 200,000 strips", lambda: _tiff_strips(200_000), 413),
    Hostile("TIFF with 60,000 tags", lambda: _tiff_tags(60_000), 413),
]
