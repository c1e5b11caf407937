"""Decoding: any accepted image file opened with its cost bounded before a pixel is decoded, then read upright
and reduced to the size a digit needs."""

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pyspng
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401

from digits.i18n.message import N_
from digits.imaging import formats
from digits.imaging.errors import ImageError, ImageTooLarge, UnreadableImage

# Pillow warns of an upload's flaws that it reads past (corrupt EXIF, a TIFF tag longer than the file) and reads
# on, as load() does: the image as stored. The warnings tell an operator nothing, and strangers could fill the
# log with them; the fuzzer made one a line per upload. (Set here, not around each read: catch_warnings is not
# thread-safe, and uploads are read in a threadpool.)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

DEFAULT_MAX_PIXELS = 40_000_000  # a 12-megapixel phone photo fits with room to spare
# No EPS, PDF, etc.: fewer parsers facing the internet. Pillow registers PNG, JPEG, GIF and BMP on its own;
# the plugin imports above register the rest without loading all fifty.
# Phone photos in MPO open through the JPEG plugin. One more parser sees only plain PNGs (PlainPng), each with
# its chunks walked and checksummed first: libspng, fuzzed continuously by OSS-Fuzz.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
WORK_SIZE = 512  # big images are reduced to this longer side first; a digit needs no more
OPAQUE = 252  # alpha over this, 0.99 of 255, is opaque (ink.py)
FULL_SIZE = "digits.full_size"  # where decode() leaves the upload's size before it was scaled down

# What a malformed file can make Pillow raise while it parses or decodes.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class PlainPng:
    """A plain PNG (formats.plain_png), opened from its header alone: libspng decodes it as Pillow would, the same
    pixels, with none of Pillow's Python around it. decode() in one process, alternated with Pillow's way (9 rounds
    of 50 files): a 28×28 grey digit 0.65× the time, colour from 28×28 to 280×280 0.52-0.77×, the page's 560×560
    canvas 0.55×, grey at 112×112 and 280×280 0.9×. pyspng skips the zlib stream's own checksum, as browsers do: a
    file whose chunks' checksums were forged over a damaged stream is read as the stream says, where Pillow refused
    it. It holds the GIL while it decodes, which in the service is for under a millisecond: a worker reads only
    cheap uploads itself, the sandbox the rest."""

    data: bytes
    size: tuple[int, int]
    grey: bool  # else RGB or RGBA

    def pixels(self) -> np.ndarray:
        """The pixels as libspng decodes them; RuntimeError where it refuses the file."""
        return pyspng.load(self.data)


Opened = Image.Image | PlainPng  # an upload whose cost is known and whose pixels are not yet decoded


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Opened, float]:
    """Open an upload's header, refusing one that would cost too much before any pixel is decoded: the image,
    and the estimated ms on one core that decode() will take to load it (formats.py)."""
    if not data:
        raise UnreadableImage(N_("the file is empty; choose an image of a digit"))
    try:
        formats.check_structure(data)
        if formats.plain_png(data):
            width, height, samples, cost = formats.plain_png_header(data)
            if width * height <= max_pixels and cost <= formats.DECODE_BUDGET_MS:
                return PlainPng(data, (width, height), samples == 1), cost
            # Pillow's way, below, says which limit it is over.
        im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
        formats.check_metadata(im)
    except formats.CostlyImage:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(
            N_("the image has more than %(limit)s pixels; scale it down and try again"), limit=max_pixels
        ) from e
    except (UnidentifiedImageError, *_DECODE_ERRORS) as e:
        raise UnreadableImage(
            N_("the file is not an image we can read; send a PNG, JPEG, GIF, BMP, TIFF or WebP file")
        ) from e
    if im.width * im.height > max_pixels:
        raise ImageTooLarge(
            N_("the image is %(size)s pixels, over the limit of %(limit)s; scale it down and try again"),
            size=f"{im.width}×{im.height}",
            limit=max_pixels,
        )
    cost = formats.decode_ms(im)
    if cost > formats.DECODE_BUDGET_MS:
        raise ImageTooLarge(
            N_(
                "the image is %(size)s pixels, too many to read quickly as a %(format)s of this kind; "
                "scale it down, or send it as a JPEG"
            ),
            size=f"{im.width}×{im.height}",
            format=str(im.format),
        )
    return im, cost


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image, refusing absurd dimensions and costly files before any pixel is decoded."""
    return load(open_image(data, max_pixels)[0])


def load(opened: Opened) -> Image.Image:
    """Decode an opened image upright, reduced to at most WORK_SIZE on its longer side."""
    try:
        im, full = _libspngs(opened) if isinstance(opened, PlainPng) else _pillows(opened)
        im = luminance(im)
        if max(im.size) > WORK_SIZE:
            im.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    except _DECODE_ERRORS as e:
        raise UnreadableImage(N_("the image file is damaged or truncated; export it again and retry")) from e
    im.info[FULL_SIZE] = full  # as the user sees it, for boxes drawn on the upload
    return im


def _libspngs(png: PlainPng) -> tuple[Image.Image, tuple[int, int]]:
    """A plain PNG's pixels, upright (it holds no EXIF), and its size; one that libspng refuses, Pillow reads or
    refuses as before."""
    try:
        pixels = png.pixels()
    except RuntimeError:
        return _pillows(Image.open(io.BytesIO(png.data), formats=("PNG",)))
    im = Image.fromarray(pixels)
    if pixels.ndim == 3 and _opaque(pixels):
        im = im.convert("L")  # luminance()'s answer, without reading the alpha again
    return im, png.size


def grey_pixels(opened: Opened) -> np.ndarray | None:
    """A plain grey PNG's pixels as libspng decodes them, with no Pillow image made of them; None for any other
    upload, and for one that libspng refuses (load() gives Pillow's answer to it)."""
    if not isinstance(opened, PlainPng) or not opened.grey:
        return None
    try:
        return opened.pixels()
    except RuntimeError:
        return None


def _pillows(im: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
    """An image that Pillow opened, decoded upright, and its size as the user sees it."""
    full = im.size
    if im.format in ("JPEG", "MPO"):
        # Let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT, keeping at least half of WORK_SIZE:
        # a 12-megapixel phone photo decodes at 500×375, several times faster than in full.
        im.draft("L", (WORK_SIZE // 2, WORK_SIZE // 2))
    im.load()  # first frame only, for animations and multi-page files
    orientation = im.getexif().get(ExifTags.Base.Orientation)
    if orientation in (5, 6, 7, 8):  # a quarter turn swaps the sides
        full = full[::-1]
    if orientation in range(2, 9):  # else upright: exif_transpose would read the EXIF again to do nothing
        ImageOps.exif_transpose(im, in_place=True)
    return im, full


def _opaque(pixels: np.ndarray) -> bool:
    """Whether RGBA pixels, as libspng gives them, are opaque (alpha over OPAQUE everywhere). Alpha is the high
    byte of each pixel read as a little-endian word, so the least word holds the least alpha: 0.07 ms for a
    560×560 canvas, where Pillow's alpha band and its extrema took 0.33."""
    return pixels.shape[2] == 4 and int(pixels.view("<u4").min()) >> 24 > OPAQUE


def luminance(im: Image.Image) -> Image.Image:
    """A colour image as luminance, with its opacity where it has any: all that ink.py reads, converted once
    and before the reduction, which then has fewer channels to average. A 560×560 canvas, opaque RGBA as
    browsers send it, took 7.4 ms to reduce and convert, and takes 1.5 as L. 16-bit and float images stay as
    they are, for their depth."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        return im
    if im.mode == "RGBA":
        least = im.getchannel("A").getextrema()[0]  # of one band: an int
        if not isinstance(least, tuple) and least > OPAQUE:
            return im.convert("L")
    if im.mode in ("RGBA", "PA", "RGBa", "La") or "transparency" in im.info:
        return im.convert("RGBA").convert("LA")
    return im if im.mode in ("L", "LA") else im.convert("L")


def decode_cost(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """The estimated ms that decoding an upload will take (formats.decode_ms); 0 for one that will be refused."""
    try:
        return open_image(data, max_pixels)[1]
    except ImageError:
        return 0.0
