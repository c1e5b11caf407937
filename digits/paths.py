"""Where the checkout's folders are: the package lives one level below them, and the container keeps the same shape."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"  # MNIST, and the per-machine secret and SQLite database when none is configured
WEIGHTS = ROOT / "weights"
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
REPORTS = ROOT / "reports"
