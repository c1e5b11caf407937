"""A process that reads uploads keeps the memory one upload frees for the next (digits/inference/heap.py): canvases
read in turn cost a few page faults each, where the kernel zeroed some 1,300 pages for every one."""

import json
import subprocess
import sys

from tests.helpers import ROOT, bench_module

READ = """
import json, resource, sys
from digits.inference import predictor
from digits.inference.heap import keep_freed_memory

if sys.argv[2] == "as glibc has it":
    predictor.keep_freed_memory = lambda: False
canvases = [open(path, "rb").read() for path in sys.argv[3:]]
reader = predictor.Predictor()
for data in canvases:  # the heap grows to what reading them takes
    reader.predict(data)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for data in canvases:
    reader.predict(data)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(canvases)
json.dump({"faults": faults, "glibc": keep_freed_memory()}, open(sys.argv[1], "w"))
"""


def faults_a_canvas(tmp_path, canvases: list[str], heap: str) -> dict[str, float]:
    out = tmp_path / f"{heap}.json"
    subprocess.run([sys.executable, "-c", READ, str(out), heap, *canvases], cwd=ROOT, check=True, timeout=120)
    return json.loads(out.read_text())


def test_reading_canvases_in_turn_faults_few_pages(tmp_path, mnist_test):
    canvases = []
    for i, digit in enumerate(mnist_test[0][:12]):
        (path := tmp_path / f"canvas{i}.png").write_bytes(bench_module("in_process").canvas_png(digit))
        canvases.append(str(path))
    kept = faults_a_canvas(tmp_path, canvases, "kept")
    assert kept["glibc"], "this machine's C library is glibc, whose malloc can be told to keep freed memory"
    assert kept["faults"] < 50
    # The same process with glibc's own settings: what the test would see without them.
    assert faults_a_canvas(tmp_path, canvases, "as glibc has it")["faults"] > 10 * max(kept["faults"], 5)
