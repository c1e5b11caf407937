"""Bad input from the open internet: every case gets a right answer or a 4xx that says what to do, never a 5xx."""

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.imaging.png import encode
from digits.training.report import phone_photo
from main import app
from tests.helpers import ROOT


def big_seven(seven: np.ndarray) -> Image.Image:
    """The 7 as dark ink on white paper, 280 px."""
    return Image.fromarray(255 - seven).resize((280, 280), Image.Resampling.BICUBIC)


def png_with_bad_crc(seven: np.ndarray) -> bytes:
    data = bytearray(encode(seven))
    ihdr_crc = 8 + 8 + 13  # signature, IHDR length and type, IHDR data
    data[ihdr_crc] ^= 0xFF
    return bytes(data)


def animated_gif(seven: np.ndarray) -> bytes:
    frames = [Image.fromarray(seven)] + [Image.fromarray(np.roll(seven, i, axis=1)) for i in range(1, 120)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)


def multipage_tiff(seven: np.ndarray) -> bytes:
    return encode(seven, "TIFF", save_all=True, append_images=[Image.new("L", (28, 28), 0)] * 3)


def exif_rotated_jpeg(seven: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    return encode(big_seven(seven).transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=90)


def palette_with_transparency(seven: np.ndarray) -> bytes:
    im = Image.fromarray(255 - seven).convert("P")
    return encode(im, transparency=255)  # white paper made transparent, dark strokes kept


def la_mode(seven: np.ndarray) -> bytes:
    return encode(Image.merge("LA", [Image.new("L", (28, 28), 0), Image.fromarray(seven)]))


def sixteen_bit(seven: np.ndarray) -> bytes:
    return encode(Image.fromarray(seven.astype(np.uint16) * 257))


def line_strip() -> bytes:
    a = np.full((5000, 1), 255, np.uint8)
    a[2000:3000] = 0
    return encode(a)


def noise() -> bytes:
    return encode(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))


# (name, bytes factory taking the 7, expected): expected is the digit, or the 4xx status.
CORPUS = [
    ("zero bytes", lambda s: b"", 400),
    ("random bytes", lambda s: np.random.default_rng(1).bytes(4096), 400),
    ("text", lambda s: b"seven\n" * 20, 400),
    ("html", lambda s: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", 400),
    (
        "svg",
        lambda s: b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><text y="20">7</text></svg>',
        400,
    ),
    ("pdf", lambda s: b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n", 400),
    ("png cut after the signature", lambda s: encode(s)[:8], 400),
    ("png cut inside the header", lambda s: encode(s)[:20], 400),
    ("png cut inside the pixels", lambda s: encode(big_seven(s))[:-200], 400),
    ("png cut before the end chunk", lambda s: encode(big_seven(s))[:-12], 7),  # every pixel is there
    ("png with a bad crc", png_with_bad_crc, 400),
    ("jpeg cut in half", lambda s: (lambda d: d[: len(d) // 2])(encode(big_seven(s), "JPEG")), 400),
    ("gif header only", lambda s: b"GIF89a\x1c\x00\x1c\x00", 400),
    ("1x1 pixel", lambda s: encode(Image.new("L", (1, 1), 0)), 422),
    ("1x5000 strip", lambda s: line_strip(), 1),
    ("decompression bomb", lambda s: encode(Image.new("1", (20_000, 20_000))), 413),
    ("animated gif, 120 frames", animated_gif, 7),
    ("16-bit greyscale png", sixteen_bit, 7),
    ("cmyk jpeg", lambda s: encode(big_seven(s).convert("CMYK"), "JPEG", quality=95), 7),
    ("palette png with transparency", palette_with_transparency, 7),
    ("LA png", la_mode, 7),
    ("exif-rotated jpeg", exif_rotated_jpeg, 7),
    ("webp", lambda s: encode(big_seven(s), "WEBP", quality=90), 7),
    ("bmp", lambda s: encode(s, "BMP"), 7),
    ("tiff", lambda s: encode(big_seven(s), "TIFF"), 7),
    ("multi-page tiff", multipage_tiff, 7),
    ("1-bit png", lambda s: encode(Image.fromarray(s).convert("1")), 7),
    ("progressive jpeg", lambda s: encode(big_seven(s), "JPEG", progressive=True, quality=85), 7),
    ("rgba canvas png", lambda s: encode(np.dstack([np.zeros((28, 28, 3), np.uint8), s])), 7),
    ("4000x3000 phone photo", phone_photo, 7),
    ("all white", lambda s: encode(Image.new("L", (100, 100), 255)), 422),
    ("all black", lambda s: encode(Image.new("L", (100, 100), 0)), 422),
    ("all transparent", lambda s: encode(Image.new("RGBA", (100, 100), (0, 0, 0, 0))), 422),
    ("pure noise", lambda s: noise(), None),
]


@pytest.fixture(scope="module")
def client():
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def disk_writes():
    """Every temp file opened, new file under the project and new entry in the temporary directory while the corpus
    runs."""

    def snapshot() -> set[str]:
        skip = (".venv", "__pycache__", ".pytest_cache", "out", ".git", ".hypothesis", "mutants")
        found: set[str] = set()
        for path, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in skip]
            found.update(os.path.join(path, f) for f in files)
        # Temporary files and directories are made at the top of the temporary directory: a new entry there is
        # enough to see one, and walking all of it would take seconds on a machine that keeps a lot in /tmp.
        tmp = tempfile.gettempdir()
        found.update(os.path.join(tmp, name) for name in os.listdir(tmp) if not name.startswith("pytest-"))
        return found

    before = snapshot()
    opened = []
    patch = pytest.MonkeyPatch()

    def spy(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            opened.append(name)
            return original(*args, **kwargs)

        return recorded

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        patch.setattr(tempfile, name, spy(name, getattr(tempfile, name)))
    yield opened
    patch.undo()
    assert opened == []  # no temporary file, named or not
    assert snapshot() - before == set()


def check(r, expected) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        detail = r.json()["detail"]
        assert isinstance(detail, str), detail
        assert len(detail) > 15, detail
    if isinstance(expected, int) and expected >= 400:
        assert r.status_code == expected, r.text
    elif expected is not None:
        assert r.status_code == 200, r.text
        assert r.json()["digit"] == expected


@pytest.mark.parametrize(("name", "make", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_multipart(client, disk_writes, seven, name, make, expected):
    check(client.post("/predict", files={"file": ("upload", make(seven), "application/octet-stream")}), expected)


@pytest.mark.timed
def test_a_decompression_bomb_is_refused_before_it_is_decoded(client, seven):
    (make,) = [make for name, make, _ in CORPUS if name == "decompression bomb"]
    data = make(seven)
    start = time.perf_counter()
    r = client.post("/predict", files={"file": ("upload", data, "application/octet-stream")})
    assert r.status_code == 413, r.text
    assert time.perf_counter() - start < 1, "refused before its 400 megapixels were decoded"


@pytest.mark.parametrize(("name", "make", "expected"), CORPUS[::3], ids=[c[0] for c in CORPUS[::3]])
def test_corpus_raw_body(client, disk_writes, seven, name, make, expected):
    expected = 422 if name == "zero bytes" else expected  # an empty raw body is a missing image, not a broken one
    check(client.post("/predict", content=make(seven), headers={"Content-Type": "image/png"}), expected)


def test_corpus_as_one_batch(client, disk_writes, seven):
    files = [("files", (name, make(seven), "application/octet-stream")) for name, make, _ in CORPUS]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200
    for (name, _, expected), result in zip(CORPUS, r.json()["predictions"], strict=True):
        if isinstance(expected, int) and expected >= 400:
            assert len(result["error"]) > 15, name
        elif expected is not None:
            assert result["digit"] == expected, name


def test_a_body_without_a_length_is_cut_off_as_it_passes_the_limit(client):
    """Chunked, with no Content-Length to refuse it by: the stream itself is counted."""
    chunks = (b"\0" * (1024 * 1024) for _ in range(20))
    r = client.post("/predict", content=chunks, headers={"Content-Type": "image/png"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert "over the limit of 10,485,760 bytes" in r.json()["detail"]


BAD_REQUESTS = [
    (
        "body over the limit",
        {"content": b"\0" * (10 * 1024 * 1024 + 1), "headers": {"Content-Type": "image/png"}},
        413,
        "over the limit",
    ),
    ("wrong content type", {"content": b"{}", "headers": {"Content-Type": "application/json"}}, 415, "is not an image"),
    (
        "form-urlencoded",
        {"content": b"file=7", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "is not an image",
    ),
    ("no content type", {"content": b"\x00\x01garbage"}, 400, "not an image we can read"),
    ("missing field", {"files": {"picture": ("a.png", b"x", "image/png")}}, 422, "no file in the upload"),
    (
        "field without a file",
        {"data": {"file": "seven"}, "files": {"other": ("a", b"x")}},
        422,
        "no file in the upload",
    ),
    (
        "multipart without a boundary",
        {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "malformed (Missing boundary",
    ),
    (
        "multipart never closed",
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        400,
        "before its closing boundary",
    ),
    (
        "multipart header garbage",
        {
            "content": b"--b\r\n\x00\x01\x02\r\n\r\n--b--\r\n",
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        400,
        "malformed",
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "status", "hint"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests(client, disk_writes, name, kwargs, status, hint):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert hint in r.json()["detail"]


def test_two_files_to_predict(client, seven):
    r = client.post("/predict", files=[("file", ("a.png", encode(seven), "image/png"))] * 2)
    assert r.status_code == 400
    assert "/predict/batch" in r.json()["detail"]


def test_more_files_than_the_batch_limit(client, seven):
    r = client.post("/predict/batch", files=[("files", ("a.png", encode(seven), "image/png"))] * 300)
    assert r.status_code == 413
    assert "at most 256" in r.json()["detail"]


@pytest.mark.parametrize(
    "filename",
    [
        "../../../../etc/passwd",
        "..\\..\\boot.ini",
        "<script>alert(1)</script>.png",
        "数字の七.png",
        "sept\u0301.png",
        "\u202egnp.exe",
        "a" * 500,
    ],
    # ASCII ids: pytest escapes the others, and an escaped id can't be passed back to select its test.
    ids=["parent dirs", "windows dirs", "script tag", "japanese", "combining accent", "right-to-left", "long"],
)
def test_hostile_filenames_are_only_ever_displayed_escaped(client, disk_writes, seven, filename):
    r = client.post("/predict", files={"file": (filename, encode(seven), "image/png")})
    assert r.status_code == 200
    assert r.json()["digit"] == 7
    page = client.post("/upload", files={"file": (filename, encode(seven), "image/png")})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text


def test_an_absurdly_long_part_header_is_400(client, seven):
    r = client.post("/predict", files={"file": ("a" * 20_000, encode(seven), "image/png")})
    assert r.status_code == 400
    assert "multipart" in r.json()["detail"]


def test_healthy_after_the_corpus(client, seven):
    assert client.get("/healthz").status_code == 200
    r = client.post("/predict", files={"file": ("seven.png", encode(seven), "image/png")})
    assert r.status_code == 200
    assert r.json()["digit"] == 7


def test_no_5xx_was_ever_counted(client):
    metrics = client.get("/metrics").text
    served = [line for line in metrics.splitlines() if line.startswith("http_requests_total{")]
    assert served
    assert not [line for line in served if 'status="5' in line]
