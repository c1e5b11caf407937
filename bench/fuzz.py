"""Coverage-guided fuzzing of what reads uploads: atheris (libFuzzer) over decoding and preprocessing, and over
reading a number, as the service runs them.

    python bench/fuzz.py                       # or `make fuzz`: FUZZ_S seconds (600 by default)
    python bench/fuzz.py --seconds 60 --seed 1 # make test's short run, so that the harness can't rot

Each input goes the way an upload goes. In process, the cheap path: Predictor.prepare_within with answers.CHEAP_MS
and CHEAP_BYTES, which parses every upload's header and structure and reads the small ones whole; it has no
deadline but its own bounds, so an input it takes more than CHEAP_LIMIT_MS over is a find. Then what the
sandbox runs (Predictor.prepare and read_number), for inputs small enough to fuzz quickly; the sandbox's deadline
bounds the rest, and tests/api/test_sandbox.py holds it to that. Any exception but an ImageError is a find: the
service would answer it with a 500. libFuzzer's limits are set to the service's: 10 s an input (a find of the
cheap path trips CHEAP_LIMIT_MS long before) and 4 GB of memory, this process's and an input's, in runs of
CHUNK_S in fresh processes, since atheris's own memory grows with every input.

The seeds are real files of every format the service reads, progressive and interlaced ones included, and the
hostile corpus's small members (bench/hostile_files.py); the corpus grows in out/fuzz/corpus. A find is written
to out/fuzz/; kept in tests/api/fuzzed/, it is sent to the service by tests/api/test_hostile.py.
"""

import argparse
import io
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import atheris
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "out" / "fuzz"
MAX_LEN = 65536
# The bound on any upload's CPU (issue 33), which the in-process path has no deadline to hold it to: a cheap upload
# takes 0.3 ms (a 28×28 PNG) to 3 ms, about ten times that instrumented for coverage. The least of three runs
# counts, since the first run of a codec pays for its set-up.
CHEAP_LIMIT_MS = 500.0
FULL_MS = 20.0  # estimated decoding past which an input is left to the sandbox's deadline, unfuzzed
CHUNK_S, CHUNK_RUNS = 120, 5000  # libFuzzer's runs: 5,000 inputs grow this process by about 1.6 GB

with atheris.instrument_imports(include=["digits", "PIL"]):
    from digits.imaging.decode import decode_cost
    from digits.imaging.errors import ImageError
    from digits.inference.predictor import Predictor, Prepared
    from digits.inference.segment import read_number
    from digits.service.answers import CHEAP_BYTES, CHEAP_MS

predictor = Predictor()


def in_process(data: bytes) -> tuple[Prepared | None, float]:
    """The service's cheap path over an upload, and the ms of CPU it took."""
    start = time.process_time()
    cheap = predictor.prepare_within(data, CHEAP_MS, CHEAP_BYTES)
    return cheap, (time.process_time() - start) * 1000


def one_input(data: bytes) -> None:
    """One upload, read as the service reads it; raises for what the service would answer with a 500, or for
    an in-process path too slow (the cheap path; a number is always read in the sandbox)."""
    try:
        cheap, took = in_process(data)
        if took > CHEAP_LIMIT_MS:
            took = min([took] + [in_process(data)[1] for _ in range(2)])
        if took > CHEAP_LIMIT_MS:
            raise AssertionError(f"the in-process path took {took:.0f} ms of CPU over this input")
        if decode_cost(data, predictor.max_pixels) <= FULL_MS:
            if cheap is None:
                predictor.prepare(data)
            read_number(predictor, data)
    except ImageError:
        pass


def seeds(folder: Path) -> None:
    """Real files of every format the service reads, a digit in each, and the small hostile inputs."""
    sys.path.insert(0, str(ROOT / "bench"))
    from digits.training import dataset
    from hostile_files import CORPUS, _interlaced_rgba16, _progressive_scans

    folder.mkdir(parents=True, exist_ok=True)
    digit = 255 - dataset.load(train=False)[0].numpy()[0]
    page = Image.fromarray(np.kron(digit, np.ones((3, 3), np.uint8)))  # 84×84, dark on light
    colour = Image.merge("RGB", [page, page.point(lambda v: v * 0.8), page]).resize((120, 90))
    files: dict[str, tuple[Image.Image, str, dict[str, Any]]] = {
        "png-l": (page, "PNG", {}),
        "png-rgb": (colour, "PNG", {}),
        "png-rgba": (colour.convert("RGBA"), "PNG", {}),
        "png-palette": (colour.convert("P"), "PNG", {}),
        "png-1bit": (page.convert("1"), "PNG", {}),
        "png-16bit": (page.convert("I;16"), "PNG", {}),
        "jpeg": (colour, "JPEG", {"quality": 80}),
        "jpeg-progressive": (colour, "JPEG", {"quality": 80, "progressive": True}),
        "jpeg-grey": (page, "JPEG", {}),
        "jpeg-cmyk": (colour.convert("CMYK"), "JPEG", {}),
        "gif": (colour.convert("P"), "GIF", {}),
        "gif-interlaced": (colour.convert("P"), "GIF", {"interlace": True}),
        "bmp": (colour, "BMP", {}),
        "bmp-rle8": (colour.convert("P"), "BMP", {"compression": 1}),
        "tiff": (colour, "TIFF", {}),
        "tiff-lzw": (colour, "TIFF", {"compression": "tiff_lzw"}),
        "tiff-packbits": (page, "TIFF", {"compression": "packbits"}),
        "tiff-g4": (page.convert("1"), "TIFF", {"compression": "group4"}),
        "webp": (colour, "WEBP", {"quality": 80}),
        "webp-lossless": (colour, "WEBP", {"lossless": True}),
    }
    for name, (im, fmt, params) in files.items():
        buffer = io.BytesIO()
        try:
            im.save(buffer, fmt, **params)
        except (OSError, ValueError):
            continue  # a writer this Pillow lacks (RLE BMP): the hostile corpus has one
        (folder / name).write_bytes(buffer.getvalue())
    (folder / "png-interlaced-16bit").write_bytes(_interlaced_rgba16(48))  # Pillow writes no Adam7
    (folder / "jpeg-many-scans").write_bytes(_progressive_scans(120, 90, 50))
    for i, h in enumerate(CORPUS):
        data = h.make()
        if len(data) <= MAX_LEN:
            (folder / f"hostile-{i}").write_bytes(data)


def fuzz(seconds: int, seed: int) -> None:
    """One run of libFuzzer over the corpus, in this process, which it ends."""
    flags = [
        f"-max_total_time={seconds}",
        f"-runs={CHUNK_RUNS}",
        "-timeout=10",
        # This process holds 1.3 GB before the first input (torch, and the coverage of every instrumented line),
        # and grows by about 300 KB an input under atheris, whatever the input: hence runs of CHUNK_S.
        "-rss_limit_mb=4096",
        f"-max_len={MAX_LEN}",
        f"-seed={seed}",
        f"-artifact_prefix={OUT}/",
        "-print_final_stats=1",
        str(OUT / "corpus"),
        str(OUT / "seeds"),
    ]
    atheris.Setup([sys.argv[0], *flags], one_input)
    atheris.Fuzz()  # libFuzzer exits the process: 0 when nothing was found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_S", "600")))
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's seed; 0 for a new one each run")
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)  # one run, in this process
    args = parser.parse_args()
    if args.run:
        return fuzz(args.seconds, args.seed)
    shutil.rmtree(OUT / "seeds", ignore_errors=True)
    seeds(OUT / "seeds")
    (OUT / "corpus").mkdir(parents=True, exist_ok=True)
    # Runs of at most CHUNK_S and CHUNK_RUNS in fresh processes, each from the corpus the ones before grew.
    end = time.monotonic() + args.seconds
    for i in itertools.count():
        seconds, seed = min(CHUNK_S, round(end - time.monotonic())), args.seed and args.seed + i
        if seconds <= 0:
            break
        run = subprocess.run([sys.executable, __file__, "--run", "--seconds", str(seconds), "--seed", str(seed)])
        if run.returncode:
            sys.exit(f"a find: see {OUT}/ (libFuzzer's exit code {run.returncode})")
    print(f"nothing found in {args.seconds} s")


if __name__ == "__main__":
    main()
