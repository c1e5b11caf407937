import io
import os
import pickle

import numpy as np
import pytest
from torchvision.datasets.mnist import read_image_file, read_label_file

from digits.training import dataset


def test_real_mnist_is_in_place_and_verified(mnist_test):
    dataset.verify()  # raises unless all four files match the originals' MD5s
    images, labels = mnist_test
    assert images.shape == (10_000, 28, 28)
    assert images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _fake_root(tmp_path):
    raw = dataset.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in dataset.IDX_MD5:
        (raw / name).symlink_to(dataset.raw_dir() / name)
    return raw


def test_a_changed_byte_is_an_error_naming_the_file(tmp_path):
    raw = _fake_root(tmp_path)
    labels = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[100] = (data[100] + 1) % 10
    labels.unlink()
    labels.write_bytes(bytes(data))
    with pytest.raises(dataset.DataError, match="t10k-labels-idx1-ubyte has MD5"):
        dataset.verify(tmp_path)


def test_a_missing_file_says_how_to_fetch_it(tmp_path):
    raw = _fake_root(tmp_path)
    (raw / "train-images-idx3-ubyte").unlink()
    with pytest.raises(dataset.DataError, match=r"python dataset\.py"):
        dataset.verify(tmp_path)


def test_idx_files_are_what_torchvision_reads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4], dtype=np.int64)
    dataset.write_idx(tmp_path / "images", images)
    dataset.write_idx(tmp_path / "labels", labels)
    assert np.array_equal(read_image_file(str(tmp_path / "images")).numpy(), images)
    assert read_label_file(str(tmp_path / "labels")).tolist() == [3, 1, 4]


def test_the_unpickler_rebuilds_arrays():
    arrays: tuple[np.ndarray, ...] = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    loaded = dataset._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=4))).load()
    assert isinstance(loaded, tuple)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, loaded, strict=True))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_unpickler_refuses_anything_but_numpy():
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        dataset._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_Exploit()))).load()
