"""predict.py --number, as a person runs it."""

import csv
import io
import json
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_the_cli_reads_numbers(tmp_path, three_digits):
    data, truth, _ = three_digits
    path = tmp_path / "number.png"
    path.write_bytes(data)
    r = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--number", "--json", str(path)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["number"] == truth
    assert len(record["digits"]) == len(truth)


def test_a_number_read_as_one_digit_says_to_read_it_as_a_number(tmp_path, three_digits, seven_png):
    # Three digits squeezed into one digit's 28×28 read as some digit at about 10%: the line says why, and how to
    # read them, as /predict's hint does.
    data, _, _ = three_digits
    number, seven = tmp_path / "number.png", tmp_path / "seven.png"
    number.write_bytes(data)
    seven.write_bytes(seven_png)
    r = subprocess.run([sys.executable, str(ROOT / "predict.py"), str(number), str(seven)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(
        rf"{number}: several digits \(read them with --number\), at best \d \(\d+\.\d%\)\n{seven}: 7 \(\d+\.\d%\)\n",
        r.stdout,
    )
    r = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--format", "csv", str(number), str(seven)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert [row["several"] for row in csv.DictReader(io.StringIO(r.stdout))] == ["True", "False"]
