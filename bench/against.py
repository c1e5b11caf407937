"""The Predictor's time per upload in this checkout against another commit's, measured in one run, alternated;
or with --http, the requests a second that one worker of each answers on /predict.

    python bench/against.py 537ba7c              # 5 rounds, each side in a fresh process every round
    python bench/against.py HEAD~3 --rounds 9
    python bench/against.py HEAD --http          # serve.py --workers 1 of each side in turn, under wrk

Machines here are shared and noisy, so only ratios taken round by round mean much. The other commit is checked
out with `git worktree` into a temporary folder and timed with this checkout's Python; each side runs the same
measurement (MEASURE, below) on the same uploads: 200 MNIST test digits as 28×28 PNGs, 20 of them drawn on
the page's 560×560 canvas, a 4000×3000 phone photo of one digit, and one of a four-digit number. It prints each
side's median ms per upload, and the median of the rounds' ratios, this checkout's over the other's. With --http,
each round starts each side's `serve.py --workers 1` in turn and loads /predict with wrk (64 connections, a 28×28
PNG as the raw body, 2 s of warm-up), as the Workers section of `make bench` does, then times a 4000×3000 phone
photo on /predict alone.
"""

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from bench import number_strip
from common import digit_png, launch, post, wrk
from digits.imaging.png import encode
from digits.training import dataset
from digits.training.report import phone_photo
from in_process import canvas_png

# Run in each checkout, with that checkout first on the path: only what both commits have.
MEASURE = """
import json, pickle, statistics, sys, time
sys.path.insert(0, ".")
import torch
torch.set_num_threads(1)
try:
    from digits.inference.forward import limit_threads
    limit_threads(1)
except ImportError:
    pass  # a commit from before the numpy forward pass
from digits.inference.predictor import Predictor
from digits.inference.segment import read_number
uploads = pickle.load(open(sys.argv[1], "rb"))
predictor = Predictor()

def ms(fn, items, passes):
    for item in items[:3]:
        fn(item)
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - start) * 1000 / len(items))
    return statistics.median(times)

print(json.dumps({
    "28×28 PNG": ms(predictor.predict, uploads["png"], 5),
    "560×560 canvas PNG": ms(predictor.predict, uploads["canvas"], 5),
    "4000×3000 phone photo": ms(predictor.predict, [uploads["photo"]] * 3, 5),
    "four-digit photo, read_number": ms(lambda d: read_number(predictor, d), [uploads["number"]] * 3, 5),
}))
"""


def uploads(path: Path) -> None:
    images = dataset.load(train=False)[0].numpy()
    pickle.dump(
        {
            "png": [encode(255 - d) for d in images[:200]],
            "canvas": [canvas_png(d) for d in images[:20]],
            "photo": phone_photo(images[0]),
            "number": phone_photo(number_strip(list(images[10:14]), 4)),
        },
        path.open("wb"),
    )


def served(cwd: Path, image: Path, photo: bytes, seconds: int) -> dict[str, float]:
    """One worker of the checkout at cwd: its requests a second under wrk and their p99, and a phone photo's time
    on /predict alone (the median of 9)."""
    with launch([sys.executable, "serve.py", "--port", "{port}", "--workers", "1"], "/healthz", cwd=cwd) as (url, _):
        wrk(url + "/predict", image, 2, 64, mode="raw")  # warm-up
        run = wrk(url + "/predict", image, seconds, 64, mode="raw")
        alone = [post(url + "/predict", photo, "image/jpeg") for _ in range(10)][1:]  # the first wakes a decoder
    assert run["non_2xx"] + run["read_errors"] + run["timeouts"] == 0, f"failed requests in {cwd}"
    return {
        "/predict requests/s": run["rps"],
        "p99 ms": run["p99_ms"],
        "phone photo alone, ms": statistics.median(alone) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", help="the commit to measure against")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both sides (default: 5)")
    parser.add_argument("--http", action="store_true", help="requests a second of one worker, not the Predictor")
    parser.add_argument("--seconds", type=int, default=10, help="wrk's time on each side, with --http (default: 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", str(other), args.commit], cwd=ROOT, check=True)
        try:
            if args.http:
                image = digit_png(Path(tmp) / "seven.png")
                photo = phone_photo(dataset.load(train=False)[0].numpy()[0])
                # The catalogs are built, not committed: the other side compiles its own, where it has them.
                catalogs = other / "digits" / "i18n" / "locales"
                if catalogs.is_dir():
                    subprocess.run(
                        [Path(sys.executable).parent / "pybabel", "-q", "compile", "-d", catalogs], check=True
                    )
            else:
                uploads(Path(tmp) / "uploads.pkl")
            runs: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
            for r in range(args.rounds):
                sides = [("this", ROOT), ("other", other)]
                for side, cwd in sides if r % 2 == 0 else sides[::-1]:
                    if args.http:
                        runs[side].append(served(cwd, image, photo, args.seconds))
                        continue
                    out = subprocess.run(
                        [sys.executable, "-c", MEASURE, str(Path(tmp) / "uploads.pkl")],
                        cwd=cwd, capture_output=True, text=True, check=True,
                    ).stdout  # fmt: skip
                    runs[side].append(json.loads(out.splitlines()[-1]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=True)
    unit = "one worker under wrk" if args.http else "ms per upload"
    print(f"{unit}, medians of {args.rounds} rounds; ratio: this checkout's over {args.commit}'s, round by round")
    print(f"| measure | {args.commit} | this checkout | ratio |\n| --- | --- | --- | --- |")
    for name in runs["this"][0]:
        theirs, ours = [r[name] for r in runs["other"]], [r[name] for r in runs["this"]]
        ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
        print(
            f"| {name} | {statistics.median(theirs):.3f} | {statistics.median(ours):.3f} | "
            f"**{statistics.median(ratios):.2f}×** ({min(ratios):.2f}–{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
