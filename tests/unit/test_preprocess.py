"""Preprocessing on synthetic images: whatever the upload looks like, the model gets an MNIST-style digit."""

import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from digits.imaging.decode import decode
from digits.imaging.errors import ImageTooLarge, NoDigitFound, UnreadableImage
from digits.imaging.fit import (
    MNIST_STROKE,
    STROKE_SIDE,
    THICK,
    _shape,
    at_most,
    fit_and_centre,
    ink_box,
    one_pen,
    preprocess,
    stroke_width,
)
from digits.imaging.groups import several_digits
from digits.imaging.ink import ink_map
from digits.imaging.png import encode
from digits.training import redraw


def prep(data: bytes) -> np.ndarray:
    return preprocess(decode(data))


def draw_one(size=(200, 300), box=(80, 40, 120, 260), ink=0, paper=255, mode="L") -> Image.Image:
    """A thick vertical bar: a '1' of dark ink on light paper, by default."""
    im = Image.new(mode, size, paper)
    ImageDraw.Draw(im).rectangle(box, fill=ink)
    return im


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    idx = np.arange(28)
    return (x.sum(1) * idx).sum() / x.sum(), (x.sum(0) * idx).sum() / x.sum()


def bbox(x: np.ndarray) -> tuple[int, ...]:
    return ink_box(x).shape


def test_output_is_mnist_style():
    x = prep(encode(draw_one()))
    assert x.shape == (28, 28)
    assert x.dtype == np.float32
    assert x.min() == 0
    assert x.max() == pytest.approx(1)
    assert x[0].sum() == 0
    assert x[-1].sum() == 0
    h, w = bbox(x)
    assert h == 20
    assert w <= 5


def test_polarity_is_detected_both_ways():
    dark_on_light = prep(encode(draw_one(ink=20, paper=235)))
    light_on_dark = prep(encode(draw_one(ink=235, paper=20)))
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-5)
    assert dark_on_light[14].max() == pytest.approx(1)  # the stroke is bright, the background black
    assert dark_on_light[:, :5].max() == 0


def seven_found(im: Image.Image, level: int, seven: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A 7 drawn on the image at `level`, 12 px wide: the ink that ink_map finds, and the 7's own pixels."""
    truth = Image.new("L", im.size, 0)
    for canvas, fill in ((im, level), (truth, 255)):
        ImageDraw.Draw(canvas).line(seven, fill=fill, width=12, joint="curve")
    return ink_map(im) > 0, np.asarray(truth) > 0


@pytest.mark.parametrize("desk", [40, 110])
def test_a_note_on_a_dark_desk_is_read_as_paper(desk):
    # A sticky note a quarter of the frame, on a desk darker than its ink or a little lighter: the frame's median
    # was the desk's, and the note was taken for chalk on a board, its paper for the ink.
    im = Image.new("L", (512, 384), desk)
    ImageDraw.Draw(im).rectangle((150, 90, 370, 300), fill=225)
    found, digit = seven_found(im, 30, [(200, 130), (320, 130), (240, 270)])
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.02 * digit.sum()
    assert (found & digit).sum() > 0.9 * digit.sum()


@pytest.mark.parametrize(
    "desk",
    [[(0, 0), (70, 0), (0, 100)], [(0, 0), (20, 0), (20, 384), (0, 384)], [(0, 0), (512, 0), (512, 18), (0, 30)]],
)
def test_a_note_on_a_lighter_desk_is_read_as_paper(desk):
    # A coloured note filling most of the frame, a white desk in a corner or along a side: the desk lies further
    # from the note's level than the ink does, and the note was taken for a board, the desk for its chalk ("no
    # digit found"). The desk has the frame on one side; chalk has the board on both.
    im = Image.new("L", (512, 384), 120)
    ImageDraw.Draw(im).polygon(desk, fill=250)
    found, digit = seven_found(im, 30, [(200, 100), (320, 100), (240, 280)])
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.02 * digit.sum()
    assert (found & digit).sum() > 0.9 * digit.sum()


def test_chalk_beside_a_lighter_wall_is_chalk():
    # A board with a strip of white wall along the frame's side, lighter than the chalk: the chalk is the ink
    # still. (The strip is kept as chalk beside it, as it was; a wall over two blocks wide is taken for the paper,
    # as it was: docs/model.md, "Polarity".)
    im = Image.new("L", (512, 384), 40)
    ImageDraw.Draw(im).rectangle((0, 0, 24, 384), fill=250)
    found, digit = seven_found(im, 200, [(200, 100), (320, 100), (240, 280)])
    assert (found & digit).sum() > 0.9 * digit.sum()


def test_off_centre_digit_is_centred_by_mass():
    corner = draw_one(size=(600, 600), box=(20, 20, 60, 200))
    x = prep(encode(corner))
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 1
    assert abs(cx - 14) <= 1


def test_small_digit_is_enlarged_to_20px():
    tiny = draw_one(size=(400, 400), box=(300, 300, 303, 312))
    assert bbox(prep(encode(tiny)))[0] == 20


def test_oversized_photo_is_reduced_and_fitted():
    big = draw_one(size=(3000, 4000), box=(1000, 500, 1400, 3500))
    x = prep(encode(big, "JPEG", quality=90))
    assert bbox(x)[0] == 20
    assert abs(centre_of_mass(x)[1] - 14) <= 1


def test_dark_strokes_on_a_transparent_canvas():
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(im).rectangle((120, 40, 160, 240), fill=(0, 0, 0, 255))
    x = prep(encode(im))
    np.testing.assert_allclose(x, prep(encode(draw_one((280, 280), (120, 40, 160, 240)))), atol=1e-5)


def test_light_strokes_on_a_transparent_canvas():
    im = Image.new("RGBA", (280, 280), (255, 255, 255, 0))
    ImageDraw.Draw(im).rectangle((120, 40, 160, 240), fill=(255, 255, 255, 255))
    assert bbox(prep(encode(im)))[0] == 20


@pytest.mark.parametrize("light_strokes", [False, True], ids=["white keyed out", "black keyed out"])
@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.NEAREST], ids=["soft", "blocky"])
def test_a_gif_with_its_paper_keyed_out_reads_as_the_image_it_came_from(mnist_test, light_strokes, resample):
    """Its strokes' soft edges stay opaque, between their ink and the paper: the transparency is the paper."""
    for digit in mnist_test[0][:12]:
        a = np.asarray(Image.fromarray(digit if light_strokes else 255 - digit).resize((280, 280), resample))
        keyed = Image.frombytes("P", a.shape[::-1], a.tobytes())
        keyed.putpalette([level for grey in range(256) for level in (grey, grey, grey)])
        paper = 0 if light_strokes else 255
        np.testing.assert_array_equal(prep(encode(keyed, "GIF", transparency=paper)), prep(encode(a)))


@pytest.mark.parametrize("pen", [24, 32])
def test_a_digit_cropped_tight_reads_as_with_paper_around_it(pen):
    """A marker's 0 cropped to its ink fills a third of the frame or more, its soft edges most of the rest: the
    paper's level and noise are still the paper's, not the median pixel's."""
    im = Image.new("L", (200, 240), 255)
    ImageDraw.Draw(im).ellipse((20, 20, 179, 219), outline=0, width=pen)
    tight = np.asarray(im.filter(ImageFilter.GaussianBlur(3)))[20:-20, 20:-20]
    np.testing.assert_array_equal(prep(encode(tight)), prep(encode(np.pad(tight, 40, constant_values=255))))


def test_exif_orientation_is_honoured():
    upright = draw_one(size=(300, 200), box=(40, 80, 260, 120))  # a horizontal bar...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...stored sideways: "rotate 90° clockwise to display"
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    x = prep(encode(stored, "JPEG", exif=exif, quality=95))
    h, w = bbox(x)
    assert (h, w) == bbox(prep(encode(upright, "JPEG", quality=95)))
    assert w == 20
    assert h < 8


def test_16_bit_greyscale():
    a = np.full((100, 100), 60000, dtype=np.uint16)
    a[20:80, 45:55] = 1000
    x = prep(encode(Image.fromarray(a)))
    assert bbox(x)[0] == 20


@pytest.mark.parametrize("colour", [0, 128, 255])
def test_uniform_image_is_no_digit(colour):
    with pytest.raises(NoDigitFound, match="no digit found"):
        prep(encode(Image.new("L", (64, 64), colour)))


def test_fully_transparent_image_is_no_digit():
    with pytest.raises(NoDigitFound, match="transparent"):
        prep(encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0))))


@pytest.mark.parametrize("depth", [0.4, 0.6, 0.8])
@pytest.mark.parametrize(("edge", "slope"), [(300, 1.0), (150, 0.2)])
def test_a_blank_sheet_under_a_hard_shadow_is_no_digit(depth, edge, slope):
    # A blank sheet with a phone's sharp shadow over a corner, as a JPEG: its edge leaves a faint trace of ink. In the
    # units of the strongest ink as it stands out of the paper beneath it, the trace itself, it was ink at full
    # strength, and a digit was read in it; it is shading against the darkest pixel's contrast.
    ys, xs = np.mgrid[:384, :512]
    sheet = np.full((384, 512), 0.85)
    sheet[ys < edge - xs * slope] *= depth
    seen = sheet + np.random.default_rng(0).normal(0, 0.006, sheet.shape)
    with pytest.raises(NoDigitFound, match="no digit found"):
        ink_map(decode(encode(np.clip(seen * 255, 0, 255).astype(np.uint8), "JPEG", quality=85)))


def test_garbage_is_unreadable():
    with pytest.raises(UnreadableImage):
        decode(b"definitely not an image")


@pytest.mark.timed
def test_decompression_bomb_is_refused_before_decoding():
    data = encode(Image.new("1", (20_000, 20_000)), optimize=True)  # 400 megapixels, a few KB on disk
    assert len(data) < 100_000
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="scale it down"):
        decode(data)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("pen", [4, 40])
def test_thin_or_thick_pen_photo_under_uneven_light(pen):
    """A phone photo: 4000x3000 JPEG, grey paper darkening by a third across the frame, a 0 drawn with a ballpoint
    (4 px, half a pixel once decoded at 1/8 scale) or a marker."""
    from digits.inference.predictor import Predictor

    page = Image.new("L", (4000, 3000), 205)
    ImageDraw.Draw(page).ellipse((1600, 700, 2400, 2300), outline=60, width=pen)
    a = np.asarray(page, dtype=np.float32) * (1 - 0.35 * np.linspace(0, 1, 4000))[None, :]
    a += np.random.default_rng(0).normal(0, 5, a.shape)
    photo = encode(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB"), "JPEG", quality=85)
    prediction = Predictor().predict(photo)
    assert prediction.digit == 0
    assert not prediction.uncertain


@pytest.mark.parametrize("width", [3, 8, 20])
def test_stroke_width_of_a_ring_and_a_bar(width):
    # stroke_width() is a share of the mask's longer side: 200 px here.
    # A ring's outline curves all round, as a digit's does: the edge count's 4/π overcount is taken off.
    yy, xx = np.mgrid[0:200, 0:200]
    r = np.hypot(yy - 100, xx - 100)
    ring = (r >= 60) & (r < 60 + width)
    assert stroke_width(ring) * 200 == pytest.approx(width, rel=0.1)
    # A straight bar along the pixel grid has no overcount, so it reads 4/π wider, less for its short ends.
    bar = np.zeros((200, 200), dtype=bool)
    bar[40:160, 100 : 100 + width] = True
    assert stroke_width(bar) * 200 == pytest.approx(width * 4 / np.pi * 120 / (120 + width), rel=0.02)


def redrawn_upload(mnist_test, i: int, pen: float) -> bytes:
    images, _ = mnist_test
    return redraw.with_pen(redraw.skeleton(images[i]), np.random.default_rng(i), pen)


def input_stroke(x: np.ndarray) -> float:
    """The stroke width of a 28×28 input, as a share of its ink's longer side."""
    return stroke_width(ink_box(x >= 0.5))


def test_a_thin_pen_is_brought_to_mnists_width_and_loops_stay_open(mnist_test):
    images, labels = mnist_test
    eights = np.flatnonzero(labels == 8)[:5]
    mnist = np.median([input_stroke(images[i] / 255) for i in range(200)])
    for i in eights:
        thin = prep(redrawn_upload(mnist_test, i, 0.03))
        as_mnist = prep(redrawn_upload(mnist_test, i, 0.12))
        # The ballpoint's 8 reaches MNIST's width, as the same 8 drawn with MNIST's pen does.
        assert input_stroke(thin) == pytest.approx(mnist, rel=0.3)
        # Both loops are still there: background enclosed by ink, not reached from the border.
        _, holes = ndimage.label(thin == 0)
        _, holes_as_mnist = ndimage.label(as_mnist == 0)
        assert holes >= 3  # the outside, and the two loops
        assert holes_as_mnist >= 3


def test_a_stroke_near_mnists_width_is_left_as_it_is(mnist_test):
    upload = redrawn_upload(mnist_test, 0, 0.12)
    crop = ink_box(ink_map(decode(upload)))
    assert one_pen(crop) is crop


def test_a_thick_pen_is_brought_to_mnists_width_keeping_pieces_and_holes(mnist_test):
    images, _ = mnist_test
    mnist = np.median([input_stroke(images[i] / 255) for i in range(200)])
    thinned = 0
    for i in range(40):
        crop = ink_box(ink_map(decode(redrawn_upload(mnist_test, i, 0.30))))
        assert input_stroke(crop) > 1.4 * mnist
        thin = one_pen(crop)
        if thin is not crop:
            thinned += 1
            assert input_stroke(thin) == pytest.approx(mnist, rel=0.4)
            # An 8 keeps both loops; a 9 whose loop the marker filled keeps it filled.
            assert _shape(thin >= 0.5) == _shape(at_most(crop, STROKE_SIDE) >= 0.5)
    assert thinned >= 30  # most marker digits are thinned; the rest would lose a piece or a hole


def test_a_thick_pen_is_left_where_thinning_would_open_a_loop():
    yy, xx = np.mgrid[:60, :60]
    ring = ((np.hypot(yy - 30, xx - 30) - 18.5) ** 2 < 10.5**2).astype(np.float32)  # a 0 in a marker
    assert _shape(one_pen(ring) >= 0.5) == (1, 1)  # worn down to MNIST's width, still a loop
    ring[25:35, :19] = 0  # a notch that leaves the loop closed by a bridge 3 px wide
    assert stroke_width(ring >= 0.5) > THICK * MNIST_STROKE
    assert _shape(ring >= 0.5) == (1, 1)
    assert one_pen(ring) is ring


def photo_ink(mnist_test, i: int, light: str, paper: str) -> tuple[np.ndarray, np.ndarray]:
    """A redrawn test digit photographed under `light` on `paper`: the ink the service finds, and the
    digit's own ink drawn alone on the same page."""
    images, _ = mnist_test
    skel = redraw.skeleton(images[i])
    upload = redraw.photo(skel, np.random.default_rng(i), light, paper)
    clean = redraw.photo(skel, np.random.default_rng(i), "even", "plain")
    return ink_map(decode(upload)), ink_map(decode(clean))


# Not a sheet on a desk: the desk is found as ink yet (docs/model.md, "Real handwriting").
@pytest.mark.parametrize(
    ("light", "paper"), [(light, paper) for light in redraw.LIGHTS for paper in redraw.PAPERS if paper != "on a desk"]
)
def test_shading_and_rules_are_not_ink(mnist_test, light, paper):
    for i in range(3):
        ink, digit = photo_ink(mnist_test, i, light, paper)
        found, truth = ink > 0, digit > 0
        # Nearly all that is found is the digit, and nearly all the digit is found, rules crossing it or not.
        assert (found & ~ndimage.binary_dilation(truth, iterations=3)).sum() < 0.05 * truth.sum()
        assert (found & truth).sum() > 0.9 * truth.sum()
        # So no corner, rule or shadow's edge is left to widen the crop, or to count as a second digit.
        assert not several_digits(ink)


def test_a_dark_desks_grain_beside_the_sheet_is_not_ink():
    # A 7 on a sheet, and beyond its edge a dark desk whose grain the light's share strengthens as it would ink
    # in a shadow: stripes that pass the ink threshold and half the ink's strength, but hold near it nowhere.
    im = Image.new("L", (512, 384), 225)
    ImageDraw.Draw(im).line([(120, 90), (240, 90), (160, 300)], fill=30, width=14, joint="curve")
    pixels = np.asarray(im).astype(np.float32)
    pixels[:, 340:] = 50 + 20 * np.sin(np.arange(340, 512) / 2)
    found = ink_map(Image.fromarray(pixels.astype(np.uint8))) > 0
    assert not found[:, 345:].any()
    assert found[80:310, 110:250].sum() > 2000


def test_specks_on_a_dark_desk_are_not_ink():
    # A 7 on a sheet, and beyond its edge a dark desk with darker knots: each as dark beside the desk, once the
    # light's share strengthens it, as two thirds of the ink, but a speck beside the 7 and lit four times less.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(100, 90), (220, 90), (140, 300)], fill=30, width=14, joint="curve")
    draw.rectangle((330, 0, 511, 383), fill=60)
    for y, x in np.random.default_rng(0).uniform((10, 345), (374, 500), (12, 2)):
        draw.ellipse((x - 4, y - 3, x + 4, y + 3), fill=25)
    x = ink_map(im)
    assert not x[:, 335:].any()
    assert (x[80:310, 90:230] > 0).sum() > 2000
    assert not several_digits(x)


def test_a_desks_wedge_with_more_ink_than_the_digit_is_not_ink():
    # A 7 on a sheet, and beyond its edge a desk with a darker wedge, as a shadow's edge meeting the sheet's casts
    # one: more ink than the 7 once the light's share strengthens it, but half as strong. The 7 is the mark the
    # others are judged beside, and the wedge is too soft beside it.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(100, 90), (220, 90), (140, 300)], fill=30, width=14, joint="curve")
    draw.rectangle((330, 0, 511, 383), fill=80)
    draw.polygon([(330, 120), (460, 200), (330, 330)], fill=45)
    x = ink_map(im)
    assert not x[:, 335:].any()
    assert (x[80:310, 90:230] > 0).sum() > 4000
    assert not several_digits(x)


@pytest.mark.parametrize("touching", [False, True])
def test_a_notes_corner_on_a_desk_is_not_ink(touching):
    # A 7 on a grey note turned 15° on a white desk, its corner in the frame, under light falling off towards the
    # top and bottom. The paper's level takes the corner, narrower than its reach, for the desk, and it stood out
    # as ink as strong as the 7: a flat piece, with the note running on beyond it at its own level. The 7 is
    # written clear of the corner, or its bar runs into it.
    ys, xs = np.mgrid[:384, :512]
    turn = np.radians(15)
    u, v = (xs - 40) * np.cos(turn) + (ys - 80) * np.sin(turn), (ys - 80) * np.cos(turn) - (xs - 40) * np.sin(turn)
    note = np.clip(0.5 + np.minimum(u, v), 0, 1)
    light = 1 - 0.2 * (np.abs(ys - 192) / 192) ** 2
    im = Image.fromarray(((note * 0.5 + (1 - note) * 0.97) * light * 250).astype(np.uint8))
    left, top = (60, 120) if touching else (230, 200)
    digit = np.s_[top - 10 : top + 180, left - 10 : left + 120]
    ImageDraw.Draw(im).line([(left, top), (left + 110, top), (left + 50, top + 170)], fill=40, width=10, joint="curve")
    found = ink_map(im) > 0
    assert found[digit].sum() > 2500
    assert found.sum() - found[digit].sum() < 0.05 * found[digit].sum()


def test_a_sheets_punched_holes_are_not_ink():
    # A 7 in a ballpoint's pen on a sheet whose punched holes show a dark desk through them along its edge: each
    # as dark as the ink and as large as a piece of a digit, but a dot, no longer than it is wide, not a stroke.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(140, 90), (260, 90), (180, 300)], fill=30, width=8, joint="curve")
    for y in (70, 190, 310):
        draw.ellipse((450, y - 14, 478, y + 14), fill=60)
    x = ink_map(im)
    assert not x[:, 440:].any()
    assert (x[80:310, 130:270] > 0).sum() > 1500
    assert not several_digits(x)


@pytest.mark.parametrize(
    ("body", "shade", "digit", "kept"),
    [(24, 40, 30, False), (8, 120, 30, False), (8, 40, 30, True), (24, 30, 110, False)],
)
def test_a_pen_lying_on_the_sheet_is_not_ink(body, shade, digit, kept):
    # A 7 in a pen 8 px wide, and above it a bar running off the frame's edge: a pen 24 px across lying on the
    # sheet, or the edge of a finger holding it, softer than the 7, which the person framing the 7 left half in
    # the photo; or darker than the 7, written in pencil. A mark the frame cuts as strong as the 7, in its pen,
    # could be writing, a 1 of a number framed tight, and stays.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 130), (320, 130), (240, 340)], fill=digit, width=8, joint="curve")
    draw.line([(250, 70), (511, 20)], fill=shade, width=body)
    x = ink_map(im)
    assert (x[120:345, 190:330] > 0).sum() > 2000
    assert x[:100, 340:].any() == kept
    assert kept or not several_digits(x)


def test_a_forms_printed_box_is_not_ink():
    # A 7 in a pen 12 px wide, written in a form's box printed 2 px wide and as dark: too short for rules across
    # the sheet, and strong, but far finer than the pen that wrote the 7, and as long as the 7 is.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 110), (310, 110), (240, 300)], fill=30, width=12, joint="curve")
    draw.rectangle((160, 70, 350, 340), outline=40, width=2)
    x = ink_map(im)
    assert not x[60:80].any()
    assert not x[:, 150:170].any()
    assert (x[100:310, 190:320] > 0).sum() > 2500
    assert not several_digits(x)


def test_a_notebooks_margin_beside_a_digit_in_pencil_is_not_ink():
    # A 7 in pencil, 12 px wide, and left of it a notebook's margin printed 2 px wide and darker than the graphite,
    # running off the frame: the line is judged beside the 7, the mark the person framed, not beside itself.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 110), (310, 110), (240, 300)], fill=130, width=12, joint="curve")
    draw.line([(140, 0), (140, 383)], fill=40, width=2)
    x = ink_map(im)
    assert not x[:, 130:150].any()
    assert (x[100:310, 190:320] > 0).sum() > 2500


@pytest.mark.parametrize(
    ("number", "bottom", "gap"), [(False, 360, 0), (True, 360, 0), (False, 420, 0), (False, 360, 6), (True, 360, 6)]
)
def test_a_ring_drawn_round_the_digits_is_not_ink(number, bottom, gap):
    # A 7, or a 17, circled by hand in the pen that wrote it: the ring is as strong and as wide as the strokes, but
    # it holds them inside its loop, and no digit holds another's stroke. It was read as a 0. Where the frame cuts
    # the ring, its edge closes the loop; where the hand stopped short of closing it, by `gap` degrees (1.6 pens),
    # the loop is closed all the same.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(230, 130), (340, 130), (280, 270)], fill=30, width=10, joint="curve")
    if number:
        draw.line([(155, 130), (155, 270)], fill=30, width=10)
    draw.arc((100, 40, 400, bottom), gap - 60, 300, fill=30, width=10)
    x = ink_map(im)
    assert not x[:50].any()
    assert not x[290:].any()
    assert (x[120:280, 220:350] > 0).sum() > 1500
    assert (x[120:280, 145:165] > 0).any() == number
    assert several_digits(x) == number


def test_a_number_framed_tight_is_no_ring():
    # A 101 framed tight, its 1s running off the frame's top and bottom: the frame's edge closes no loop of theirs
    # round the 0, which lies beside them, not inside either.
    im = Image.new("L", (300, 160), 225)
    draw = ImageDraw.Draw(im)
    for column in (60, 240):
        draw.line([(column, 0), (column, 159)], fill=30, width=10)
    draw.ellipse((110, 30, 190, 130), outline=30, width=10)
    x = ink_map(im)
    assert (x[:, 50:70] > 0).sum() > 1200
    assert (x[:, 230:250] > 0).sum() > 1200
    assert (x[20:140, 100:200] > 0).sum() > 2000


@pytest.mark.parametrize(
    "line", [[(180, 330), (330, 324)], [(170, 345), (330, 318)], [(170, 318), (250, 342), (330, 318)]]
)
def test_a_line_drawn_under_the_digit_is_not_ink(line):
    # A 7 underlined by hand in the pen that wrote it, apart from it: one stroke across, under all the ink and as wide
    # as the 7. It joined the 7's group and was read with it. Drawn at a slant, or bowed, its box is over three pens
    # tall, but it is one stroke wherever it is crossed, and clear of the 7.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 110), (310, 110), (240, 290)], fill=30, width=10, joint="curve")
    draw.line(line, fill=30, width=10, joint="curve")
    x = ink_map(im)
    assert not x[305:].any()
    assert (x[100:300, 190:320] > 0).sum() > 2000


def test_a_stroke_broken_off_the_digit_is_no_line_under_it():
    # A 3 in a thin pen whose lower arc broke off the rest, as a thin pen's stroke does: as flat as a line, under
    # all the rest, and crossed once wherever it is crossed, but near the rest where it broke, not clear of it.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 80), (300, 80), (250, 150), (300, 190)], fill=30, width=6, joint="curve")
    draw.line([(306, 201), (292, 222), (200, 230), (110, 224)], fill=30, width=6, joint="curve")
    assert (ink_map(im)[198:240] > 0).sum() > 900


@pytest.mark.parametrize(("top", "bottom", "shade"), [(90, 180, 0.8), (90, 180, 0.7), (180, 230, 0.8)])
def test_a_highlighters_band_across_the_digit_is_not_ink(top, bottom, shade):
    # A 7 in a pen 10 px wide under light falling off, a highlighter's band drawn across it: a fifth to a third
    # darker than the sheet, over the 7's bar or its stem. The band joined the 7's strokes in one mark, which was
    # read whole as a stroke, or dropped whole as shading ("no digit found").
    im = Image.new("L", (512, 384), 225)
    ImageDraw.Draw(im).line([(200, 110), (310, 110), (240, 300)], fill=30, width=10, joint="curve")
    sheet = np.asarray(im, np.float32)
    band = sheet[top:bottom, 90:450]
    band[band > 100] *= shade
    light = 1 - 0.4 * (np.arange(384, dtype=np.float32)[:, None] / 384 - 0.5) ** 2
    x = ink_map(Image.fromarray((sheet * light).astype(np.uint8)))
    assert not x[top:bottom, 90:190].any()
    assert not x[top:bottom, 330:450].any()
    assert (x[100:310, 190:320] > 0).sum() > 2000
    assert not several_digits(x)


def in_pencil(stroke: list[tuple[int, int]]) -> tuple[Image.Image, np.ndarray]:
    """A stroke through the points in pencil on a 512×384 sheet, as a phone sees it, and where it lies: graphite
    reflecting 0.55 of the light on paper reflecting 0.88, 8 px wide, covering three quarters of the paper's tooth
    on average, with the sensor's noise."""
    im = Image.new("L", (512, 384), 0)
    ImageDraw.Draw(im).line(stroke, fill=255, width=8, joint="curve")
    drawn = np.asarray(im) > 0
    rng = np.random.default_rng(0)
    grain = np.clip(0.75 + ndimage.gaussian_filter(rng.normal(0, 0.5, drawn.shape), 0.7), 0, 1)
    seen = 0.88 + (0.55 - 0.88) * drawn * grain + rng.normal(0, 0.015, drawn.shape)
    return Image.fromarray(np.clip(np.rint(255 * seen), 0, 255).astype(np.uint8)), drawn


@pytest.mark.parametrize("low", [0.8, 0.6])
def test_a_pencils_stroke_is_as_strong_wherever_the_light_falls(low):
    # A 7 in pencil under light falling off towards the bottom, to `low` of the top's. Ink is measured in the
    # light's share, as it stands out of the paper beneath it, but its unit was the darkest pixel against the
    # lightest paper: graphite in the dim part is darker than the lit paper by the light lost as well, so the whole
    # 7 was weaker the less light reached its end, and its grainy edges fell under the ink threshold.
    im, seven = in_pencil([(200, 110), (310, 110), (240, 300)])
    light = 1 - (1 - low) * np.linspace(0, 1, 384, dtype=np.float32)[:, None] ** 2
    even = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85)))
    dim = ink_map(decode(encode((np.asarray(im) * light).astype(np.uint8), "JPEG", quality=85)))
    assert np.percentile(dim[seven], 90) > 0.95 * np.percentile(even[seven], 90)


@pytest.mark.parametrize("beside", ["holes", "box", "fine margin", "margin", "wide margin"])
def test_a_pencils_digit_beside_darker_marks_is_the_ink(beside):
    # A 7 in pencil, grey and grainy, beside what is darker than it: a sheet's punched holes with a dark desk
    # through them, a form's box printed round it, or a notebook's margin running off the frame, with the page's
    # rules across it all. Judged beside those, the 7 was too soft to be ink, and the holes, the box or the margin
    # were taken for the digit. Looked at again in the units of the marks that never reached the strongest ink, the
    # 7 is a stroke, and the rest is beside it. The rules had joined the margin and the 7 in one mark as strong as
    # the margin, and no mark was soft enough to be looked at again; and a margin 2 px wide, finer than the
    # graphite but not a third as fine, stayed beside the 7 as a stroke that the frame cuts. A margin 4 px wide, as
    # wide as the grainy graphite measures, stayed alone: the second look found the 7 but kept the margin too, so it
    # seemed the first look's digit, and the 7 shading beside it.
    im, seven = in_pencil([(200, 110), (310, 110), (240, 300)])
    if beside == "holes":
        for y in (70, 190, 310):
            ImageDraw.Draw(im).ellipse((450, y - 14, 478, y + 14), fill=40)
    elif beside == "box":
        ImageDraw.Draw(im).rectangle((160, 70, 350, 340), outline=40, width=2)
    else:
        for y in range(35, 384, 30):
            ImageDraw.Draw(im).line([(0, y), (511, y)], fill=170, width=2)
        width = {"fine margin": 1, "margin": 2, "wide margin": 4}[beside]
        ImageDraw.Draw(im).line([(140, 0), (140, 383)], fill=40, width=width)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(seven, iterations=3)].sum() < 0.05 * seven.sum()
    assert (found & seven).sum() > 0.8 * seven.sum()


@pytest.mark.parametrize("pen", [[(320, 383), (511, 330)], [(0, 40), (260, 0)], [(360, 0), (511, 200)]])
def test_a_pencils_digit_beside_a_pen_lying_on_the_sheet_is_the_ink(pen):
    # A 7 in pencil, and a pen lying on the sheet beside it, far darker and wider, running off the frame. The pen
    # was kept, as all the ink there was, and the 7 judged shading beside it, so nothing was looked at again. Where
    # all the first look kept runs off the frame, the second look is taken: a person frames what they wrote, and
    # in the 7's units the pen is wider than any stroke framed.
    im, seven = in_pencil([(200, 110), (310, 110), (240, 300)])
    ImageDraw.Draw(im).line(pen, fill=35, width=16)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(seven, iterations=3)].sum() < 0.05 * seven.sum()
    assert (found & seven).sum() > 0.8 * seven.sum()


@pytest.mark.parametrize("stroke", [[(270, 120), (235, 280)], [(220, 140), (290, 140), (240, 260)]])
def test_a_pencils_digit_beside_punched_holes_with_more_ink_than_it_is_the_ink(stroke):
    # A 1, or a small 7, in pencil beside a sheet's punched holes, each a disc of the dark desk: the holes were kept
    # and the digit judged shading beside them, and as they held most of what passed for ink, nothing was looked
    # at again ("not a digit"). A hole is a surface, not a stroke: where all the first look kept are surfaces, the
    # second look is taken, and what the first kept is not the digit it is judged beside.
    im, digit = in_pencil(stroke)
    for y in (70, 190, 310):
        ImageDraw.Draw(im).ellipse((440, y - 20, 480, y + 20), fill=40)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.05 * digit.sum()
    assert (found & digit).sum() > 0.8 * digit.sum()


@pytest.mark.parametrize("stroke", [[(200, 110), (310, 110), (240, 300)], [(250, 90), (262, 300)]])
@pytest.mark.parametrize("dots", [140, 170])
def test_a_pencils_digit_on_dot_grid_paper_leaves_the_grids_dots(stroke, dots):
    # A 7, or a 1, in pencil on dot-grid paper, its dots as dark as the graphite or fainter. The dots beyond the
    # digit's box were specks astray, but those inside it were kept as the digit's own, and widened the crop: a
    # 1 read as a box of dots. The dots are the paper's, wherever they lie: no larger inside the box than beyond it.
    im, digit = in_pencil(stroke)
    draw = ImageDraw.Draw(im)
    for y in range(14, 384, 29):
        for x in range(9, 512, 29):
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=dots)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 10
    assert (found & digit).sum() > 0.8 * digit.sum()


@pytest.mark.parametrize("stroke", [[(200, 110), (310, 110), (240, 300)], [(250, 90), (262, 300)]])
def test_a_pencils_digit_inside_a_darker_ring_is_the_ink(stroke):
    # A 7, or a 1, in pencil, and a ring drawn round it in a dark pen. The ring was kept, as all the ink there was,
    # and the digit judged shading inside it: a 0. A loop round most of what was judged no ink is beside it, as a
    # surface is: the second look is taken, and the ring, round the digit it finds, is no stroke of it.
    im, digit = in_pencil(stroke)
    ImageDraw.Draw(im).ellipse((150, 50, 370, 350), outline=40, width=8)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.05 * digit.sum()
    assert (found & digit).sum() > 0.8 * digit.sum()


def test_a_zero_keeps_the_dot_written_inside_it():
    # A 0 with a dot in its middle, as some write it to tell it from an O: the dot is no digit, so the 0 is no ring.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.ellipse((190, 70, 320, 310), outline=30, width=12)
    draw.ellipse((247, 182, 263, 198), fill=30)
    x = ink_map(im)
    assert (x[60:320, 180:330] > 0).sum() > 5000
    assert not several_digits(x)


def test_a_dark_desks_grain_that_the_frame_cuts_is_not_ink_however_strong():
    # A 7 in a grey pencil on a sheet, and beyond its edge a desk darker than a third of the paper, with two
    # darker streaks of grain running off the frame's edge: the light's share, at its cap of three there, makes
    # them as strong as the 7, but no shadow leaves paper that dark (ink.DESK). They were a second digit.
    im = Image.new("L", (512, 384), 225)
    draw = ImageDraw.Draw(im)
    draw.line([(100, 90), (220, 90), (140, 300)], fill=110, width=10, joint="curve")
    draw.rectangle((330, 0, 511, 383), fill=50)
    draw.line([(380, 60), (511, 110)], fill=12, width=5)
    draw.line([(400, 300), (511, 230)], fill=12, width=5)
    x = ink_map(im)
    assert not x[:, 335:].any()
    assert (x[80:310, 90:230] > 0).sum() > 3000
    assert not several_digits(x)


@pytest.mark.parametrize("cut", [0, 80])
def test_a_desks_wedge_between_the_sheets_edge_and_a_shadows_is_not_ink(cut):
    # A 7 on a sheet turned on a desk, a hard shadow over the corner: where the shadow's edge meets the sheet's, the
    # desk in the shadow lies between the sheet and the lit desk, darker than both, and narrower than a sheet
    # across one diagonal. Strong as soft ink, as wide as the 7's pen by twice the area over the perimeter, but a
    # surface: across it, the paper lies farther than a few pens away. With the frame's edge across it (`cut` px
    # taken off the left), no paper beyond can be looked for, and it never reaches the 7's strength.
    im = Image.new("L", (512, 384), 225)
    ImageDraw.Draw(im).line([(250, 130), (370, 130), (290, 330)], fill=30, width=10, joint="curve")
    pixels = np.asarray(im, np.float32).copy()
    ys, xs = np.mgrid[0:384, 0:512].astype(np.float32)
    desk = xs < 40 + ys * 110 / 384  # beyond the sheet's edge, from (40, 0) to (150, 384)
    pixels[desk] = 95
    pixels[ys < 270 - xs * 270 / 380] *= 0.5  # the shadow, over the corner, to its edge from (0, 270) to (380, 0)
    pixels = ndimage.gaussian_filter(pixels, 1.5)[:, cut:]
    x = ink_map(Image.fromarray(np.rint(pixels).astype(np.uint8)))
    assert not x[desk[:, cut:]].any()
    assert (x > 0).sum() > 4000
    assert not several_digits(x)


@pytest.mark.parametrize("pinholes", [True, False])
def test_a_soft_mark_riddled_with_pinholes_in_a_dim_room_is_not_ink(pinholes):
    # A 7 in a dim room's sensor noise, and beside it a strip as soft as a faint stroke, as the noise leaves a dim
    # desk along a sheet's edge: riddled with pinholes, which no pen leaves, it is noise over a surface. Solid, it
    # could be a faint digit of a number, and stays.
    im = Image.new("L", (512, 384), 200)
    ImageDraw.Draw(im).line([(100, 90), (220, 90), (140, 300)], fill=30, width=12, joint="curve")
    pixels = np.asarray(im, np.float32).copy()
    strip = pixels[60:320, 380:410]
    strip[:] = 100  # 0.59 of the 7's strength: past SOLID and SHADING, short of STRONG
    if pinholes:  # 3 px across, as the noise's grain is once smoothed
        for y, x in np.random.default_rng(0).integers([4, 4], [255, 25], (40, 2)):
            strip[y - 1 : y + 2, x - 1 : x + 2] = 200
    pixels += np.random.default_rng(1).normal(0, 12, pixels.shape)
    x = ink_map(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))
    assert (x[80:310, 90:230] > 0).sum() > 3000
    assert x[60:320, 380:410].any() != pinholes


def test_specks_astray_are_not_ink():
    # A 7 in a pen 14 px wide, a short piece of its stroke apart below it, a sliver beside its top as a shadow's
    # edge leaves one, and far from it specks of noise or dust as dark as the ink, 3 px across: the specks are
    # no touch of the pen, and the digit fills the fit.
    im = Image.new("L", (512, 384), 220)
    draw = ImageDraw.Draw(im)
    draw.line([(100, 60), (220, 60), (150, 250)], fill=40, width=14, joint="curve")
    draw.line([(140, 290), (135, 330)], fill=40, width=14)
    draw.rectangle((100, 44, 112, 46), fill=40)
    for y, x in np.random.default_rng(1).uniform((10, 300), (374, 500), (8, 2)):
        draw.rectangle((x, y, x + 2, y + 2), fill=40)
    x = ink_map(im)
    assert not x[:, 280:].any()
    assert (x[280:340, 120:160] > 0).sum() > 400
    assert (x[40:50, 95:115] > 0).sum() > 20
    assert fit_and_centre(x)[:, 4:24].any(0).sum() < 20  # as tall as the box, narrower


def test_a_digit_across_a_shadows_edge_from_the_rest_is_ink():
    # A marker's 5 in the light and a ballpoint's 1 beside it, in a deep shadow whose edge runs between them: the
    # 1 is lit 2.5 times less, and softer beside the 5, but a digit, not a speck of the shadow's surface.
    im = Image.new("L", (512, 384), 0)
    draw = ImageDraw.Draw(im)
    draw.line([(220, 90), (120, 90), (115, 180), (200, 190), (210, 280), (110, 290)], fill=195, width=24)
    draw.line([(350, 80), (330, 300)], fill=150, width=6)
    light = np.where(np.arange(512) < 280, 1.0, 0.4).astype(np.float32)[None, :]
    x = ink_map(Image.fromarray(np.rint((225 - np.asarray(im, np.float32)) * light).astype(np.uint8)))
    assert (x[70:320, 320:360] > 0).sum() > 0.8 * 6 * 220


def test_a_5_whose_bar_stands_apart_is_one_digit():
    # A 5 whose bar was drawn apart, off to the right of the rest: the two wider than tall together, the bar under a
    # third of the rest's height. Beside the median of two marks, their mean, it was tall enough to be a digit.
    im = Image.new("L", (640, 480), 225)
    draw = ImageDraw.Draw(im)
    draw.line(
        [(350, 250), (345, 315), (420, 305), (435, 360), (400, 385), (340, 380)], fill=30, width=10, joint="curve"
    )
    draw.line([(425, 244), (530, 212)], fill=30, width=10)
    assert not several_digits(ink_map(im))


def test_a_faint_piece_of_a_digit_is_ink_where_the_light_is_even():
    # A 4 whose stem stands apart from the rest and is drawn half as dark, on paper a little darker to the right:
    # as soft beside the rest as a desk's grain, but where the light's share strengthened nothing.
    strokes = Image.new("L", (384, 384), 0)
    ImageDraw.Draw(strokes).line([(150, 80), (110, 220), (250, 220)], fill=195, width=12, joint="curve")
    ImageDraw.Draw(strokes).line([(275, 60), (275, 320)], fill=100, width=12)
    paper = 225 - 20 * np.linspace(0, 1, 384, dtype=np.float32)[None, :]
    found = ink_map(Image.fromarray((paper - np.asarray(strokes)).astype(np.uint8))) > 0
    assert found[:, 265:286].sum() > 2000


@pytest.mark.parametrize("rules", [[((20, 228), (500, 238))], [((100, 228), (400, 228)), ((100, 288), (400, 288))]])
def test_a_lone_faint_rule_across_the_frame_is_not_ink(rules):
    # A rule left alone: the rest of the sheet's rules too faint to be ink, this one darker where the light or
    # the blur left it, thin and faint beside the digit, across most of the frame and the digit's loop. Or two,
    # across a small note, about half the frame: no longer than the note is wide.
    im = Image.new("L", (512, 384), 225)
    truth = Image.new("L", (512, 384), 0)
    for canvas, fill in ((im, 30), (truth, 255)):
        ImageDraw.Draw(canvas).ellipse((180, 170, 300, 300), outline=fill, width=12)
        ImageDraw.Draw(canvas).line([(190, 230), (260, 60)], fill=fill, width=12)
    for rule in rules:
        ImageDraw.Draw(im).line(rule, fill=170, width=1)
    found, digit = ink_map(im) > 0, np.asarray(truth) > 0
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.02 * digit.sum()
    assert (found & digit).sum() > 0.9 * digit.sum()


def test_a_notebooks_margin_is_not_ink():
    # The margin down a school notebook's page, left of the digit and across the whole frame: darker than its rules,
    # 0.55 of the digit's ink, and alone. Under half of it was the limit, and the margin widened the crop.
    im = Image.new("L", (512, 384), 225)
    truth = Image.new("L", (512, 384), 0)
    for canvas, fill in ((im, 30), (truth, 255)):
        ImageDraw.Draw(canvas).line([(260, 90), (380, 90), (300, 300)], fill=fill, width=10, joint="curve")
    ImageDraw.Draw(im).line([(120, 0), (120, 383)], fill=118, width=2)
    found, digit = ink_map(im) > 0, np.asarray(truth) > 0
    assert not found[:, 100:140].any()
    assert (found & digit).sum() > 0.9 * digit.sum()


def test_a_long_thin_stroke_alone_is_ink():
    # A 1 in a fine pen across most of a tight crop: as long and thin as a rule, but the strongest ink there is.
    im = Image.new("L", (300, 400), 230)
    ImageDraw.Draw(im).line([(150, 20), (140, 380)], fill=40, width=3)
    found = ink_map(im) > 0
    assert found[:, 130:160].sum() > 0.9 * 3 * 360


@pytest.mark.parametrize("width", [1, 2])
def test_rules_seen_in_perspective_are_not_ink(width):
    # A phone tilted over lined paper: rules every 26 px, their slopes turning from -4° at the top to +4° at the
    # bottom as they converge, over a thick 7, drawn at 4× and reduced, so that their edges are soft as a
    # photo's. One slope for all of them left most as ink: 49 rows with 100 px of it, against the 7's 14.
    h, w, up = 420, 512, 4
    im = Image.new("L", (w * up, h * up), 235)
    truth = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for y in range(13, h, 26):
        rise = np.tan(np.deg2rad(8 * y / h - 4)) * w / 2
        draw.line([(0, up * (y - rise)), (up * w, up * (y + rise))], fill=120, width=width * up)
    seven = [(190, 110), (330, 110), (240, 320)]
    draw.line([(up * x, up * y) for x, y in seven], fill=30, width=14 * up, joint="curve")
    ImageDraw.Draw(truth).line(seven, fill=255, width=14, joint="curve")
    found, digit = ink_map(im.resize((w, h), Image.Resampling.BOX)) > 0, np.asarray(truth) > 0
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.02 * digit.sum()
    assert (found & digit).sum() > 0.9 * digit.sum()


@pytest.mark.parametrize("turn", [-25, -8, 0, 14, 30])
def test_the_rules_of_a_note_turned_on_a_desk_are_not_ink(turn):
    # A lined note half the frame's width, turned on a dark desk: its rules reach across less than half of the
    # frame, at the note's own angle. They were left as ink where they didn't reach across 80% of it at ±6°.
    h, w, up = 384, 512, 4
    note = Image.new("L", (240 * up, 220 * up), 225)
    draw = ImageDraw.Draw(note)
    for y in range(14, 220, 24):
        draw.line([(0, up * y), (up * 240, up * y)], fill=130, width=up + up // 2)
    seven = [(70, 50), (170, 50), (110, 180)]
    draw.line([(up * x, up * y) for x, y in seven], fill=30, width=12 * up, joint="curve")
    truth = Image.new("L", note.size, 0)
    ImageDraw.Draw(truth).line([(up * x, up * y) for x, y in seven], fill=255, width=12 * up, joint="curve")
    # Turned about its middle, in the middle of a dark desk.
    im, drawn = Image.new("L", (w * up, h * up), 60), Image.new("L", (w * up, h * up), 0)
    mask = Image.new("L", note.size, 255).rotate(turn, expand=True)
    corner = ((w * up - mask.width) // 2, (h * up - mask.height) // 2)
    im.paste(note.rotate(turn, expand=True, fillcolor=60), corner, mask)
    drawn.paste(truth.rotate(turn, expand=True), corner, mask)
    found = ink_map(im.resize((w, h), Image.Resampling.BOX)) > 0
    digit = np.asarray(drawn.resize((w, h), Image.Resampling.BOX)) > 127
    assert found[~ndimage.binary_dilation(digit, iterations=3)].sum() < 0.02 * digit.sum()
    assert (found & digit).sum() > 0.9 * digit.sum()


def test_a_stroke_in_pencil_crosses_the_rules_whole():
    # A 7 in pencil on lined paper, the rules printed as dark as the graphite where they cross it: taken off with
    # the rules, its strokes were cut into as many pieces as rules crossed them (a 2, a 7, a 5 in pieces side by
    # side were "several digits"). Where the ink kept lies beyond a rule on both sides, the stroke crossed it.
    im, seven = in_pencil([(150, 100), (330, 100), (160, 300)])
    for y in range(35, 384, 30):
        ImageDraw.Draw(im).line([(0, y), (511, y)], fill=150, width=2)
    found = ink_map(decode(encode(np.asarray(im), "JPEG", quality=85))) > 0
    assert found[~ndimage.binary_dilation(seven, iterations=3)].sum() < 0.02 * seven.sum()
    assert (found & seven).sum() > 0.95 * seven.sum()
    assert ndimage.label(found, structure=np.ones((3, 3)))[1] == 1


def test_thin_parallel_strokes_as_far_apart_as_they_are_long_are_not_rules():
    # 1111 in a ballpoint, each 1 as long as a rule on a small note and as thin: four parallel lines, but as far
    # apart as they are long, where rules lie closer than a third of their length.
    im = Image.new("L", (512, 384), 240)
    for x in (96, 196, 296, 396):
        ImageDraw.Draw(im).line([(x, 60), (x + 20, 320)], fill=20, width=2)
    drawn = np.asarray(im) < 128
    found = ink_map(im) > 0
    assert (found & drawn).sum() > 0.9 * drawn.sum()


@pytest.mark.parametrize("size", [(100, 120, 2), (118, 135, 3)])
def test_a_ballpoints_strokes_that_cross_are_not_rules(size, predictor):
    # A 4 with a loop in a ballpoint, cropped close: its loop's sides, its stem and its tick each reach across a
    # quarter of the frame, thin and straight enough for rules, but they meet inside the frame and rules never
    # do. Taken for rules, they lost 60-80% of the 4's ink.
    w, h, pen = size
    im = Image.new("L", (w, h), 235)
    strokes = [
        [(48, 20), (38, 45), (34, 72), (52, 72), (56, 50), (66, 34), (76, 32)],
        [(34, 72), (84, 67)],
        [(44, 72), (38, 112)],
        [(38, 45), (54, 55)],
    ]
    for stroke in strokes:
        ImageDraw.Draw(im).line([(x * w / 118, y * h / 135) for x, y in stroke], fill=60, width=pen)
    drawn = np.asarray(im) < 150
    assert (ink_map(im) > 0)[drawn].sum() > 0.9 * drawn.sum()
    assert predictor.predict(encode(np.asarray(im))).digit == 4


def test_an_image_many_times_wider_than_high_is_read():
    """The rule search counted rows from `h` above the image, and a slope of 6° over 84 px reached further: the
    fuzzer's 84×3 TIFF was a 500 (tests/api/fuzzed/)."""
    strip = np.full((3, 200), 255, np.uint8)
    strip[1, 20:180] = 0
    assert prep(encode(strip)).shape == (28, 28)
