"""A decompression bomb, decoded in a process of its own so that its memory can be measured."""

import subprocess
import sys

from PIL import Image

from digits.imaging.png import encode
from tests.helpers import ROOT


def test_decompression_bomb_never_allocates_its_size(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(encode(Image.new("1", (20_000, 20_000))))
    code = (
        "import resource, sys\n"
        "from digits.imaging.decode import decode\n"
        "from digits.imaging.errors import ImageTooLarge\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "data = open(sys.argv[1], 'rb').read(); before = peak()\n"
        "try: decode(data)\n"
        "except ImageTooLarge: print(peak() - before)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 20  # MB of peak memory added; decoding its pixels would take 400 MB
