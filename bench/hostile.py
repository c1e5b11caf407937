"""Hostile inputs: what each costs the service in CPU and memory, and the service's bounds held under attack.

    python bench/hostile.py                  # both sections; writes bench/HOSTILE.md
    python bench/hostile.py --only cost      # each input's CPU and memory in process, /predict and /predict/number
    python bench/hostile.py --only service   # the attacks on `serve.py --workers 2`, as the issue measured them

CORPUS is the list that tests/test_hostile.py holds to its bounds: every input is refused with a 4xx, or
decoded within the pixel budget of formats.py and the mark budget of predict.py. Each is built here, small
and deterministic, from the shape of the attack: a few bytes that claim millions of pixels, or millions of
tiny parts that Pillow would walk one by one in Python.
"""

import argparse
import contextlib
import io
import json
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import machine, serve, tree_rss_mb
from digits.imaging import formats
from digits.imaging.decode import decode_cost
from digits.imaging.errors import ImageError
from digits.imaging.groups import MAX_MARKS
from digits.inference.predictor import Predictor
from digits.inference.segment import read_number
from digits.service.answers import CHEAP_BYTES, CHEAP_MS

OUT = Path(__file__).resolve().parent / "HOSTILE.md"


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[], bytes]
    status: int  # what /predict answers: 413 refused for its cost, 400 unreadable, 422 no digit, 200 read


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


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
    data = _encode(Image.new("L", (28, 28), 255), "JPEG")
    return data[:2] + before_scan + data[2:]


def _with_digit(mode: str, side: int) -> Image.Image:
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
    return _encode(Image.fromarray(a), "PNG", optimize=True)


def _blobs(count: int) -> bytes:
    """count separate blobs of equal ink on a grid, 16 to a row: each passes the dust filter."""
    rows = -(-count // 16)
    a = np.full((rows * 12 + 4, 16 * 12 + 4), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, 16)
        a[4 + r * 12 : 4 + r * 12 + 6, 4 + c * 12 : 4 + c * 12 + 6] = 0
    return _encode(Image.fromarray(a), "PNG")


def _tiff_strips(strips: int) -> bytes:
    return _encode(Image.new("L", (8, strips), 255), "TIFF", tiffinfo={278: 1})  # RowsPerStrip 1


def _tiff_tags(tags: int) -> bytes:
    """A TIFF whose first directory holds `tags` entries of an unknown tag."""
    entries = b"".join(struct.pack("<HHII", 60000 + i % 5000, 1, 1, 0) for i in range(tags))
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", tags) + entries + b"\x00\x00\x00\x00"


def _gif_sub_blocks(blocks: int) -> bytes:
    """A GIF with a comment extension of `blocks` one-byte sub-blocks before its image."""
    data = _encode(Image.new("L", (28, 28), 255), "GIF")
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
        lambda: _encode(Image.new("RGB", (6324, 6324), "white"), "WEBP", lossless=True),
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
    Hostile(f"largest RGBA PNG accepted, {RGBA_SIDE}²", lambda: _encode(_with_digit("RGBA", RGBA_SIDE), "PNG"), 200),
    Hostile(
        f"largest WebP accepted, {WEBP_SIDE}²",
        lambda: _encode(_with_digit("RGB", WEBP_SIDE), "WEBP", lossless=True),
        200,
    ),
    Hostile("greyscale PNG of 6324×6324", lambda: _encode(_with_digit("L", 6324), "PNG"), 200),
    Hostile("GIF of 6324×6324", lambda: _encode(_with_digit("L", 6324), "GIF"), 200),
    Hostile("1-bit G4 TIFF of 6324×6324", lambda: _encode(_with_digit("1", 6324), "TIFF", compression="group4"), 200),
    Hostile(
        "progressive JPEG of 6324×6324",
        lambda: _encode(_with_digit("RGB", 6324), "JPEG", progressive=True, quality=50),
        200,
    ),
    Hostile("JPEG with 2,000,000 comments", lambda: _jpeg(b"\xff\xfe\x00\x02" * 2_000_000), 413),
    Hostile("JPEG with 8 MB of junk", lambda: _jpeg(b"\x00" * 8_000_000), 413),
    Hostile("GIF with 1,000,000 sub-blocks", lambda: _gif_sub_blocks(1_000_000), 413),
    Hostile("TIFF in 200,000 strips", lambda: _tiff_strips(200_000), 413),
    Hostile("TIFF with 60,000 tags", lambda: _tiff_tags(60_000), 413),
]


def _status_kb(field: str) -> int:
    line = next(row for row in Path("/proc/self/status").read_text().splitlines() if row.startswith(field + ":"))
    return int(line.split()[1])


def _cost(predictor: Predictor, data: bytes, number: bool) -> tuple[float, float, str]:
    """CPU seconds and peak extra memory (MB) of one prediction in this process."""
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from what is resident now
    before = _status_kb("VmRSS")
    start = time.process_time()
    try:
        outcome = read_number(predictor, data).number if number else str(predictor.predict(data).digit)
    except ImageError as e:
        outcome = type(e).__name__
    cpu = time.process_time() - start
    return cpu, max(0, _status_kb("VmHWM") - before) / 1024, outcome


def measure_cost(runs: int) -> str:
    """Each input's CPU and memory on /predict's path and /predict/number's, medians of `runs`."""
    predictor = Predictor()
    lines = [
        "| input | bytes | /predict CPU | peak memory | /predict/number CPU | answer (/predict, number) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h in CORPUS:
        data = h.make()
        single = [_cost(predictor, data, False) for _ in range(runs)]
        number = [_cost(predictor, data, True) for _ in range(runs)]
        cpu = statistics.median(c for c, _, _ in single) * 1000
        mb = statistics.median(m for _, m, _ in single)
        cpu_n = statistics.median(c for c, _, _ in number) * 1000
        lines.append(
            f"| {h.name} | {len(data):,} | {cpu:.0f} ms | {mb:.0f} MB | {cpu_n:.0f} ms "
            f"| {single[0][2]}, {number[0][2]} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _post(url: str, data: bytes, ctype: str = "image/png", timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def measure_service() -> str:
    """The issue's attacks on `serve.py --workers 2`: memory after bombs, isolation, and the /feedback bounds."""
    seven = _encode(Image.fromarray(np.asarray(_with_digit("L", 280).resize((28, 28)))), "PNG")
    lines = ["| goal | measured |", "| --- | --- |"]
    database = f"sqlite:///{tempfile.mkdtemp(prefix='hostile-')}/feedback.db"  # no earlier run's corrections
    with serve(workers=2, env={"DATABASE_URL": database}) as (url, proc):
        time.sleep(2)
        baseline = tree_rss_mb(proc.pid)
        webp = CORPUS[0].make()
        peak = baseline
        for _ in range(40):
            _post(url + "/predict", webp, "image/webp")
            peak = max(peak, tree_rss_mb(proc.pid))
        batch_body, boundary = _multipart([webp] * 16)
        _post(url + "/predict/batch", batch_body, f"multipart/form-data; boundary={boundary}")
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(30)
        after = tree_rss_mb(proc.pid)
        lines.append(
            f"| 40 WebP bombs, then a batch of 16: RSS under baseline + 1 GB, back under + 300 MB in 30 s "
            f"| peak +{peak - baseline:.0f} MB, +{after - baseline:.0f} MB after 30 s |"
        )
        # The costliest input of all, prepared apart; and the costliest of those cheap enough to be prepared on
        # the model's thread with the micro-batch (answers.CHEAP_MS), which would hold the batch back.
        predictor = Predictor()
        made = {h.name: h.make() for h in CORPUS}
        cpu = {name: _cost(predictor, data, False)[0] for name, data in made.items()}
        cheap = [h for h in CORPUS if len(made[h.name]) <= CHEAP_BYTES and decode_cost(made[h.name]) <= CHEAP_MS]
        for worst in (max(CORPUS, key=lambda h: cpu[h.name]), max(cheap, key=lambda h: cpu[h.name])):
            latencies = _under_attack(url, made[worst.name], seven)
            p50, p90 = np.percentile(latencies, [50, 90]) * 1000
            lines.append(
                f"| /predict every 100 ms while 4 clients loop on {worst.name} ({cpu[worst.name] * 1000:.0f} ms of "
                f"CPU each) for 15 s: p50 ≤ 100 ms, p90 ≤ 500 ms | p50 {p50:.0f} ms, p90 {p90:.0f} ms "
                f"({len(latencies)} requests) |"
            )
        before = tree_rss_mb(proc.pid)
        start = time.perf_counter()
        status = _huge_feedback(url, 20_000_000)
        seconds = time.perf_counter() - start
        grown = tree_rss_mb(proc.pid) - before
        lines.append(
            f"| a 20 MB /feedback body: 413 within 2 s, RSS up by under 100 MB "
            f"| {status} in {seconds:.2f} s, RSS up {grown:.0f} MB |"
        )
        ids = [json.loads(_post(url + "/predict", seven)[1])["prediction_id"] for _ in range(800)]
        stored = _flood(url, ids)
        lines.append(f"| one client flooding corrections for 20 s over 8 connections: at most 100 stored | {stored} |")
    return "\n".join(lines)


def _huge_feedback(url: str, size: int) -> int:
    """The status a /feedback body of `size` bytes gets, sent as a client would until the server stops it."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode())
        with contextlib.suppress(OSError):  # the server answers and closes before the body is all sent
            for _ in range(size // 65536):
                s.sendall(b"a" * 65536)
        with contextlib.suppress(OSError):
            return int(s.recv(65536).split(b" ", 2)[1])
    return 0


def _multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = "hostile-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="f{i}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def _under_attack(url: str, worst: bytes, normal: bytes, seconds: float = 15) -> list[float]:
    """Latencies of a normal /predict every 100 ms while 4 clients send `worst` back to back."""
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():
            _post(url + "/predict", worst)

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for t in attackers:
        t.start()
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        status, _ = _post(url + "/predict", normal)
        latencies.append(time.perf_counter() - start)
        assert status == 200, status
        time.sleep(max(0.0, 0.1 - latencies[-1]))
    stop.set()
    for t in attackers:
        t.join()
    return latencies


def _flood(url: str, ids: list[str], seconds: float = 20) -> int:
    """Corrections of every id as a 1, from 8 connections for `seconds`: how many were stored (201)."""
    stored, lock = 0, threading.Lock()
    deadline = time.monotonic() + seconds
    queue = iter(ids)

    def send() -> None:
        nonlocal stored
        while time.monotonic() < deadline:
            with lock:
                prediction_id = next(queue, None)
            if prediction_id is None:
                return
            body = json.dumps({"prediction_id": prediction_id, "label": 1}).encode()
            status, _ = _post(url + "/feedback", body, "application/json")
            with lock:
                stored += status == 201

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["cost", "service"], help="one section (default: both)")
    parser.add_argument("--runs", type=int, default=3, help="runs per input for the CPU medians (default: 3)")
    args = parser.parse_args()
    stamp = f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, with `python bench/hostile.py --only {{}}`."
    # Each section replaces its namesake in HOSTILE.md, so that --only keeps the other.
    titles = {"cost": "## Cost of each input, in process", "service": "## The service under attack"}
    old = OUT.read_text() if OUT.exists() else ""
    sections = {title: "## " + part.strip() for part in old.split("\n## ")[1:] for title in titles.values()
                if ("## " + part).startswith(title)}  # fmt: skip
    if args.only in (None, "cost"):
        intro = (
            f"{stamp.format('cost')} CPU is the median of {args.runs} runs. Peak memory is what the process grew "
            "by, so it reads low after a larger input: the allocator keeps and reuses what that one freed."
        )
        sections[titles["cost"]] = f"{titles['cost']}\n{intro}\n\n" + measure_cost(args.runs)
    if args.only in (None, "service"):
        intro = f"{stamp.format('service')} `serve.py --workers 2`."
        sections[titles["service"]] = f"{titles['service']}\n{intro}\n\n" + measure_service()
    ordered = [sections[t] for t in titles.values() if t in sections]
    OUT.write_text("# Hostile inputs\n\n" + "\n\n".join(ordered) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
