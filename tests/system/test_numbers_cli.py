"""predict.py --number, as a person runs it."""

import json
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
