"""The preprocessing's shortcuts, each against the long way round it skips: the same pixels to the last bit, over
MNIST's test set and the realism benchmark's conditions."""

import io
import struct
import zlib

import numpy as np
import pyspng
import pytest
from PIL import ExifTags, Image

from digits.imaging import formats
from digits.imaging.decode import FULL_SIZE, OPAQUE, _opaque, decode, open_image
from digits.imaging.errors import ImageError, UnreadableImage
from digits.imaging.fit import ink_box, one_pen
from digits.imaging.ink import INK_PIXELS, _extremes, _gray_and_alpha, _percentile, _surroundings, ink_map
from digits.imaging.png import encode
from tests.helpers import bench_module, realism_uploads


def test_a_crop_already_boxed_is_what_pillows_resize_returns(mnist_test):
    """fit_and_centre() skips the resize of a crop whose longer side is already 20 px, as MNIST's own are."""
    boxed = 0
    for digit in mnist_test[0]:
        x = ink_map(Image.fromarray(255 - digit))
        crop = one_pen(ink_box(x))
        if max(crop.shape) == 20:
            boxed += 1
            resized = np.asarray(Image.fromarray(crop).resize(crop.shape[::-1], Image.Resampling.BILINEAR))
            assert resized.tobytes() == crop.tobytes()
    assert boxed > 9_000  # the shortcut is the usual way for MNIST-style uploads


def test_the_extremes_are_what_partition_finds(mnist_test):
    """_ink() takes the 16th darkest and lightest pixels without sorting when they repeat, as a drawing's do, and
    from the few beyond a sample's own when they don't, as a photo's."""
    grays = [_gray_and_alpha(decode(u))[0] for u in realism_uploads(mnist_test)]
    drawing = np.full((512, 512), 1.0, np.float32)
    drawing[100:400, 240:272] = 0
    rng = np.random.default_rng(5)
    grain = np.where(drawing == 1, rng.random(drawing.shape, np.float32), 0)  # paper grainy, ink flat
    dots = np.full((384, 512), 0.5, np.float32)
    dots.flat[rng.choice(dots.size, 40, replace=False)] = rng.random(40)  # the darkest and lightest off the sample
    shortcut = 0
    for gray in [
        *grays,
        drawing,
        1 - drawing,
        grain,
        1 - grain,
        dots,
        np.float32(1) - mnist_test[0][0] / np.float32(255),
    ]:
        k, n = INK_PIXELS, gray.size
        found = np.partition(gray.ravel(), (k, n - 1 - k))
        assert _extremes(gray, k) == (found[k], found[n - 1 - k])
        shortcut += (gray == gray.min()).sum() > k and (gray == gray.max()).sum() > k
    assert shortcut >= 2


def test_the_percentiles_are_numpys():
    """_ink() takes the paper's percentiles from a sort, as np.percentile interpolates them: the same to the bit,
    over few levels (a canvas's blocks), many, and one, in float32 and float64."""
    rng = np.random.default_rng(3)
    for trial in range(3000):
        size = int(rng.integers(1, 5000))
        levels = rng.random(int(rng.integers(1, 4))) if trial % 2 else rng.random(size) ** 3
        a: np.ndarray = rng.choice(levels, size).astype(np.float32 if trial % 5 else np.float64)
        for q in (0, 10, 37, 50, 90, 100):
            assert _percentile(a, q) == float(np.percentile(a, q))


def test_flat_paper_is_what_smoothing_would_give():
    """_paper() skips smoothing paper that is one level all over: Pillow's bilinear resize keeps a constant."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        level = np.float32(rng.random())
        blocks, size = rng.integers(3, 17, 2), rng.integers(40, 520, 2)
        flat = Image.fromarray(np.full(blocks, level, np.float32))
        assert (np.asarray(flat.resize(tuple(size), Image.Resampling.BILINEAR)) == level).all()


def test_the_surroundings_of_a_box_are_the_whole_images_cut_to_it():
    """_surroundings() reads only what lies within reach of the box it is asked for, the frame's edge included."""
    rng = np.random.default_rng(2)
    for _ in range(300):
        x = rng.random(rng.integers(20, 120, 2)).astype(np.float32)
        reach = int(rng.integers(2, 40))
        (top, bottom), (left, right) = (np.sort(rng.choice(n + 1, 2, replace=False)) for n in x.shape)
        box = np.s_[top:bottom, left:right]
        assert _surroundings(x, reach, box).tobytes() == _surroundings(x, reach)[box].tobytes()


def test_an_opaque_canvas_reads_as_its_gray_does():
    """decode() reads an opaque RGBA upload as L, before reducing it; alpha over 0.99 was always ignored."""
    rng = np.random.default_rng(1)
    # Noisy paper with a noisy bar of ink: noise alone is no digit (ink.py), and there would be no ink to compare.
    gray = rng.integers(150, 256, (600, 560), dtype=np.uint8)
    gray[150:450, 250:310] = rng.integers(0, 60, (300, 60))
    for alpha in (255, 253):
        rgba = np.dstack([gray, gray, gray, np.full_like(gray, alpha)])
        assert (ink_map(decode(encode(rgba))) == ink_map(decode(encode(gray)))).all()


def decoded(data: bytes) -> Image.Image | type[ImageError]:
    """decode()'s image, or the kind of error it raises."""
    try:
        return decode(data)
    except ImageError as e:
        return type(e)


def pillows(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Image.Image | type[ImageError]:
    """decoded() the long way, with Pillow alone."""
    with monkeypatch.context() as m:
        m.setattr(formats, "plain_png", lambda _: False)
        return decoded(data)


def same(a: Image.Image | type[ImageError], b: Image.Image | type[ImageError]) -> bool:
    """The same image as the preprocessing reads it (its notes, the colour profile and resolution that Pillow
    keeps, are never read: libspng's has none), or the same kind of error."""
    if isinstance(a, Image.Image) and isinstance(b, Image.Image):
        return (a.mode, a.size, a.info[FULL_SIZE], a.tobytes()) == (b.mode, b.size, b.info[FULL_SIZE], b.tobytes())
    return a == b


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def png(parts: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of these chunks, each with its checksum."""
    return formats.PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in parts
    )


def plain_pngs(mnist_test) -> list[bytes]:
    """Grey, RGB and RGBA PNGs from a pixel to past the working size, compressed every way Pillow does; MNIST's
    digits as they are, in colour, and on the page's canvas."""
    rng = np.random.default_rng(4)
    digits = mnist_test[0][:10]
    files = [bench_module("in_process").canvas_png(d) for d in digits[:3]]
    files += [encode(Image.fromarray(255 - d).resize((140, 140)).convert("RGB")) for d in digits]
    files += [encode(255 - d) for d in digits]
    for mode, bands in (("L", 1), ("RGB", 3), ("RGBA", 4)) * 8:
        h, w = rng.integers(1, 700, 2)
        pixels = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
        pixels[: h // 2] = pixels[:1]  # compressible, as paper is
        image = Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode)
        level, optimize = int(rng.integers(0, 10)), bool(rng.random() < 0.3)
        # With the notes Pillow keeps and never applies: resolution and colour profile, and the rest that
        # formats.plain_png allows (gamma, significant bits, chromaticities, colour space, background, time).
        body = chunks(encode(image, compress_level=level, optimize=optimize, dpi=(300, 300), icc_profile=b"\0" * 64))
        notes = [
            (b"gAMA", struct.pack(">I", int(rng.integers(1, 200_000)))),
            (b"sBIT", bytes([int(rng.integers(1, 9))] * bands)),
            (b"cHRM", rng.bytes(32)),
            (b"sRGB", bytes([int(rng.integers(4))])),
            (b"bKGD", rng.bytes(2 if bands == 1 else 6)),
            (b"tIME", struct.pack(">HBBBBB", 2026, 12, 6, 22, 30, 0)),
        ]
        files.append(png([body[0], *notes, *body[1:]]))
    # Opaque but for one pixel, each side of OPAQUE, anywhere: read as L (decode._opaque) or with its alpha.
    for least in (0, OPAQUE, OPAQUE + 1, 255):
        pixels = np.dstack([rng.integers(0, 256, (120, 130, 3), dtype=np.uint8), np.full((120, 130), 255, np.uint8)])
        pixels[rng.integers(120), rng.integers(130), 3] = least
        files.append(encode(pixels))
    return files


def test_a_plain_png_decodes_to_pillows_pixels(mnist_test, monkeypatch):
    """decode() reads a plain PNG with libspng (formats.plain_png), opening it from its own header: the same image as
    Pillow's, to the last bit, after the same estimate of its cost."""
    files, read, load = plain_pngs(mnist_test), [], pyspng.load

    def reading(data: bytes) -> np.ndarray:
        read.append(data)
        return load(data)

    monkeypatch.setattr(pyspng, "load", reading)
    for data in files:
        assert same(decode(data), pillows(data, monkeypatch))
        assert open_image(data)[1] == formats.decode_ms(Image.open(io.BytesIO(data)))
        if (pixels := load(data)).ndim == 3 and pixels.shape[2] == 4:  # the alpha read as Pillow reads it
            assert _opaque(pixels) == (np.asarray(Image.open(io.BytesIO(data)).getchannel("A")).min() > OPAQUE)
    assert read == files


def test_a_png_with_more_in_it_is_pillows(mnist_test):
    """Transparency, a palette, 16 or 1 bit, grey with alpha, EXIF and text (before or after the pixels) and
    animation all change what Pillow makes of a PNG, so it reads them; an EXIF turn after the pixels still turns."""
    digit = 255 - mnist_test[0][0]
    seven = Image.fromarray(digit).resize((140, 140)).convert("RGB")
    body = encode(seven)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    after = [
        (b"eXIf", exif.tobytes()),
        (b"tEXt", b"Comment\0hi"),
        (b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(b"x")),
    ]
    others = [
        encode(seven, transparency=(255, 255, 255)),
        encode(seven.convert("P")),
        encode(Image.fromarray(digit.astype(np.uint16) * 257)),
        encode(seven.convert("1")),
        encode(seven.convert("LA")),
        encode(seven, exif=exif),
        encode(seven, save_all=True, append_images=[seven]),
        *(png([*chunks(body)[:-1], note, (b"IEND", b"")]) for note in after),
    ]
    assert formats.plain_png(body)
    assert not any(formats.plain_png(data) for data in others)
    assert (np.asarray(decode(others[-3])) == np.rot90(np.asarray(decode(body)), -1)).all()


def test_a_damaged_plain_png_gets_pillows_answer(mnist_test, monkeypatch):
    """Damage that a checksum catches, bytes flipped or cut anywhere in a file, is Pillow's to read or refuse.
    Pixels changed and the chunks' checksums forged to match read as Pillow reads them too, or are refused as
    Pillow refuses them, except where the stream's own checksum fails: Pillow refuses those, and libspng, which
    skips it as browsers do, reads what the stream says."""
    rng = np.random.default_rng(5)
    files = plain_pngs(mnist_test)[::3]
    answers: dict[str, list] = {"damaged": [], "forged": []}
    for _ in range(400):
        data = files[rng.integers(len(files))]
        if rng.random() < 0.5:
            damaged = bytearray(data)
            if rng.random() < 0.3:
                damaged = damaged[: rng.integers(8, len(data))]
            else:
                for at in rng.integers(8, len(data), rng.integers(1, 4)):
                    damaged[at] = rng.integers(256)
            ours, theirs = decoded(bytes(damaged)), pillows(bytes(damaged), monkeypatch)
            assert same(ours, theirs)
            answers["damaged"].append(isinstance(ours, Image.Image))
            continue
        parts = chunks(data)
        idat = [k for k, (kind, _) in enumerate(parts) if kind == b"IDAT"]
        k = idat[rng.integers(len(idat))]
        body = bytearray(parts[k][1])
        for at in rng.integers(0, len(body), rng.integers(1, 3)):
            body[at] = rng.integers(256)
        parts[k] = (b"IDAT", bytes(body))
        forged = png(parts)
        assert formats.plain_png(forged)
        ours, theirs = decoded(forged), pillows(forged, monkeypatch)
        if not same(ours, theirs):
            assert isinstance(ours, Image.Image)
            assert theirs is UnreadableImage
            with pytest.raises(zlib.error, match="incorrect data check"):
                zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
        answers["forged"].append((isinstance(ours, Image.Image), isinstance(theirs, Image.Image)))
    # Every kind of answer was compared: read both ways, refused both ways, and read by libspng alone.
    assert any(answers["damaged"])
    assert not all(answers["damaged"])
    assert {(True, True), (False, False), (True, False)} <= set(answers["forged"])
