"""What an upload costs to decode, bounded before the costly part starts.

Two things make a small file expensive (bench/hostile.py measures both, per format):
- Structure that Pillow parses in Python, one loop turn per part: PNG chunks, JPEG markers and the junk
  bytes between them, GIF extension sub-blocks, TIFF tags, strips and tiles. Ten megabytes of empty PNG
  chunks cost 1.7 s, and of empty JPEG comments 1.9 s. check_structure() walks the container itself and
  refuses a file with more parts than any real image has, having read no more of it than that.
- Pixels. Compressed formats decode many pixels per byte: a 1.6 KB lossless WebP holds 40 megapixels and
  cost 1.6 s and 626 MB. decode_ms() estimates the cost from the header, before a pixel is decoded, from
  rates measured on these machines' cores, and the caller refuses what would take over DECODE_BUDGET_MS.
"""

import struct
import zlib
from collections.abc import Callable, Iterator

from PIL import ImageFile, ImageMode, PngImagePlugin

from digits.i18n.message import N_
from digits.imaging.errors import ImageTooLarge

# No accepted upload takes longer than this to decode on one core (the estimate is of the worst case).
DECODE_BUDGET_MS = 250.0
# Parts (chunks, markers, sub-blocks, tags, strips) one image may have. Real files have tens, or up to a
# thousand or so for a big scan in small strips; Pillow spends 2-3 µs on each, so this bounds it to ~10 ms.
MAX_PARTS = 4096
# Decoding cost per megabyte of decoded samples, in ms, as bench/hostile.py measured the costliest mode of
# each format through decode() and ink_map() (best of 3, one core), rounded up. A JPEG is decoded scaled down
# in the DCT, so its cost follows the pixels in the file rather than the bytes decoded: ms per megapixel.
MS_PER_MB = {"PNG": 6.0, "GIF": 4.0, "BMP": 4.0, "TIFF": 6.0, "WEBP": 14.0}
JPEG_MS_PER_MEGAPIXEL = 5.0  # progressive, the slower kind: 2.7-4.1 ms
# Pillow runs compressed BMPs through a decoder written in Python, pixel by pixel.
BMP_RLE_MS_PER_MEGAPIXEL = 150.0
# Pillow inflates a PNG's compressed text as it opens the file, up to 64 MB of it by default: 100 chunks of
# 1 MB from 1 KB each cost 144 ms. A digit needs none of it; 1 MB in all is room for any real metadata.
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024
# EXIF's own limit in a JPEG (one APP1 segment). A PNG or WebP may carry more, and Pillow reads each entry in
# Python: 65,535 of them took 22 ms.
MAX_EXIF_BYTES = 65535
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG's pixels and what Pillow keeps beside them but never applies: colour space, significant bits, resolution,
# background, time.
_PLAIN_PNG_CHUNKS = {b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"pHYs", b"sBIT", b"bKGD", b"tIME"}


class CostlyImage(ImageTooLarge):
    """A file whose structure or size would cost more to decode than the service allows; the message says why."""


def check_structure(data: bytes) -> None:
    """Refuse a file with more parts than MAX_PARTS, walking only as far as Pillow would before decoding."""
    walk, smallest = _WALKERS.get(data[:4]) or _WALKERS.get(data[:3]) or _WALKERS.get(data[:2]) or (None, 0)
    if walk is None or len(data) <= smallest * MAX_PARTS:
        return  # too short to hold that many parts (a TIFF's count of strips is a number, so it is always read)
    if walk(data) > MAX_PARTS:
        raise CostlyImage(
            N_(
                "the file is made of over %(limit)s chunks, markers or strips, far more than any photo or scan; "
                "export it again as a plain PNG or JPEG"
            ),
            limit=MAX_PARTS,
        )


def check_metadata(im: ImageFile.ImageFile) -> None:
    """Refuse EXIF larger than a JPEG can hold, which the orientation check would otherwise parse."""
    if len(im.info.get("exif") or b"") > MAX_EXIF_BYTES:
        raise CostlyImage(
            N_("the image's EXIF is over %(limit)s bytes; export it again without metadata"), limit=MAX_EXIF_BYTES
        )


def decode_ms(im: ImageFile.ImageFile) -> float:
    """The estimated cost, in ms on one core, of decoding an opened image and reducing it to the working size."""
    megapixels = im.width * im.height / 1e6
    if im.format in ("JPEG", "MPO"):
        return megapixels * JPEG_MS_PER_MEGAPIXEL
    if im.format == "BMP" and im.tile and im.tile[0].codec_name == "bmp_rle":
        return megapixels * BMP_RLE_MS_PER_MEGAPIXEL
    if im.format == "WEBP":
        # libwebp decodes every frame onto a full RGBA canvas, whatever the file's own mode.
        return megapixels * 4 * MS_PER_MB["WEBP"]
    return megapixels * _sample_bytes(im) * MS_PER_MB.get(im.format or "", max(MS_PER_MB.values()))


def _sample_bytes(im: ImageFile.ImageFile) -> int:
    """Bytes of decoded samples per pixel: 16-bit RGB(A) files decode into 8-bit modes from twice the data."""
    mode = ImageMode.getmode(im.mode)
    sample = int(mode.typestr[-1])  # "|u1", "<u2", "<f4": the size is the last character
    rawmode = im.tile[0].args[0] if im.tile and im.tile[0].args and isinstance(im.tile[0].args[0], str) else ""
    return len(mode.bands) * (2 if sample == 1 and "16" in rawmode else sample)


def _png(data: bytes) -> int:
    """Chunks, up to IEND: Pillow reads each one's header in Python, the empty ones included."""
    return sum(1 for _ in _png_chunks(data))


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk's type, where its type starts and where its body ends, up to IEND and no more than MAX_PARTS + 1
    of them."""
    pos = 8
    for _ in range(MAX_PARTS + 1):
        if pos + 8 > len(data):
            return
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos + 4, pos + 8 + length
        if kind == b"IEND":
            return
        pos += 12 + length


def plain_png(data: bytes) -> bool:
    """Whether a PNG is 8-bit grey, RGB or RGBA, not interlaced, whole, and holds nothing that Pillow applies to its
    pixels or their orientation: no transparency, palette, EXIF, text (which may carry EXIF or XMP) or
    animation. Any decoder reads the same pixels from such a file (decode.py). Whole: every chunk's checksum
    holds, and the file ends with IEND (a few µs: crc32 runs at gigabytes a second)."""
    if data[:16] != PNG_SIGNATURE + b"\0\0\0\x0dIHDR" or len(data) < 33:
        return False
    depth, colour, _, _, interlace = data[24:29]
    if depth != 8 or colour not in (0, 2, 6) or interlace:
        return False
    view, kind = memoryview(data), b""
    for kind, start, end in _png_chunks(data):
        if kind not in _PLAIN_PNG_CHUNKS and start != 12:  # the first is IHDR, and only the first
            return False
        if data[end : end + 4] != zlib.crc32(view[start:end]).to_bytes(4, "big"):
            return False
    return kind == b"IEND"


def plain_png_header(data: bytes) -> tuple[int, int, int, float]:
    """A plain PNG's width, height and samples a pixel, and the estimated ms that decoding it will take (as
    decode_ms() estimates a PNG's), from its header alone."""
    width, height = struct.unpack_from(">II", data, 16)
    samples = {0: 1, 2: 3, 6: 4}[data[25]]  # grey, RGB, RGBA: 8 bits each
    return width, height, samples, width * height / 1e6 * samples * MS_PER_MB["PNG"]


# JPEG markers with no length after them: SOI, EOI, TEM and the restart markers.
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}


def _jpeg(data: bytes) -> int:
    """Markers up to the first scan, and every junk or fill byte between them: Pillow steps over each in Python.
    Everything after the scan's header is libjpeg's."""
    pos, parts = 2, 0
    while pos + 1 < len(data) and parts <= MAX_PARTS:
        parts += 1
        if data[pos] != 0xFF or data[pos + 1] in (0x00, 0xFF):
            pos += 1  # junk, or fill bytes: skipped one at a time
            continue
        marker = data[pos + 1]
        if marker == 0xDA:
            break
        pos += 2 if marker in _STANDALONE or pos + 4 > len(data) else 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return parts


def _gif(data: bytes) -> int:
    """Extension sub-blocks before the first image: Pillow reads each in Python; the image's own are decoded in C."""
    if len(data) < 13:
        return 0
    flags = data[10]
    pos, parts = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0), 0
    while pos < len(data) and data[pos] == 0x21 and parts <= MAX_PARTS:  # an extension block
        pos += 2
        while pos < len(data) and data[pos] and parts <= MAX_PARTS:
            parts += 1
            pos += 1 + data[pos]
        pos += 1
    return parts


def _tiff(data: bytes) -> int:
    """The first directory's tags, and its strips or tiles: Pillow builds and decodes each strip in Python."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43  # BigTIFF: 64-bit counts and offsets
    entry, count, offset = (20, "Q", 8) if big else (12, "I", 4)
    try:
        ifd = struct.unpack_from(order + ("Q" if big else "I"), data, offset)[0]
        tags = struct.unpack_from(order + ("Q" if big else "H"), data, ifd)[0]
        parts = tags
        for i in range(min(tags, MAX_PARTS + 1)):
            at = ifd + (8 if big else 2) + i * entry
            tag, values = struct.unpack_from(order + "H2x" + count, data, at)
            if tag in (273, 324):  # StripOffsets, TileOffsets
                parts += values
    except (struct.error, OverflowError):  # OverflowError: a BigTIFF's offset past any file (the fuzzer's)
        return 0  # cut short: Pillow says so
    return parts


# Each walk, by the file's first bytes, with the fewest bytes one of its parts can take: a chunk's header and
# checksum, a junk byte, a sub-block's length and one byte.
_WALKERS: dict[bytes, tuple[Callable[[bytes], int], int]] = {
    b"\x89PNG": (_png, 12),
    b"\xff\xd8": (_jpeg, 1),
    b"GIF": (_gif, 2),
    b"II*\x00": (_tiff, 0),
    b"MM\x00*": (_tiff, 0),
    b"II+\x00": (_tiff, 0),
    b"MM\x00+": (_tiff, 0),
}
