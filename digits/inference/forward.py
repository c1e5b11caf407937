"""The network's forward pass for serving: plain numpy over the MLP's own float32 weights.

At batch 1, torch's module machinery costs more than the arithmetic (235,146 multiply-adds). Measured in one run
on this CPU (one thread, `make bench`'s "Forward pass"): torch's module 43 µs, TorchScript 25, torch's addmm
on pre-transposed weights 22, numpy 20, onnxruntime 15; at batch 64, 345-383 µs for all but onnxruntime's 149.
numpy needs nothing installed; onnxruntime would save a few µs an upload against the preprocessing's hundreds,
for two packages more (docs/benchmarks.md). Training stays torch's; the weights file stays the one train.py
writes.
"""

import sys
from collections.abc import Mapping

import numpy as np
from threadpoolctl import threadpool_limits

from digits.imaging.fit import MEAN, STD


class Forward:
    """The MLP's logits for N×28×28 (or N×784) inputs in [0,1], standardized as in training."""

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        """`state`: model.MLP's weights by name (weights.load_state); ValueError if they can't be its layers, each
        a float32 weight and bias taking the last one's outputs, from the 784 pixels to the 10 digits."""
        names = sorted({key.rpartition(".")[0] for key in state})  # fc1, fc2, fc3
        if set(state) != {f"{name}.{part}" for name in names for part in ("weight", "bias")}:
            raise ValueError("the weights are not a weight and a bias for each layer")
        # Transposed once, so that each layer is one x @ W + b over contiguous rows.
        self.layers = [(np.ascontiguousarray(state[f"{n}.weight"].T), state[f"{n}.bias"].copy()) for n in names]
        inputs = 28 * 28
        for w, b in self.layers:
            if w.dtype != np.float32 or b.dtype != np.float32 or w.ndim != 2 or b.shape != w.shape[1:]:
                raise ValueError("a layer's weights are not a float32 matrix and its bias")
            if w.shape[0] != inputs:
                raise ValueError("a layer doesn't take the outputs of the one before it")
            inputs = w.shape[1]
        if inputs != 10:
            raise ValueError("the last layer doesn't give one output for each digit")
        # Paper is 0 before standardizing, and -MEAN/STD after it at every pixel: its share of the first layer's
        # sums is the same for every image, added once to the bias.
        w1, b1 = self.layers[0]
        self.paper_bias = (b1 + np.float32(-MEAN / STD) * w1.sum(0, dtype=np.float64)).astype(np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.head(self.first(images))

    def first(self, images: np.ndarray) -> np.ndarray:
        """The first layer's sums, before its ReLU: N×256. Only the weights of the pixels that hold ink are read:
        a digit inks about a fifth of the 784, and at batch 1 all 0.8 MB of them came from memory, the
        preprocessing having pushed them out of the cache since the last upload (a 28×28 PNG's prediction took
        0.238 ms, 0.218 reading the inked rows alone: docs/benchmarks.md). Gathering a row reads it and writes
        it again, so past half of them all are read in place (every pixel inked: 10 µs, where gathering took 45).
        Those are standardized as in training: noise inked all over reaches logits of 860, and the paper's share
        folded into the bias lost 5e-4 of them to rounding against torch's 2e-4."""
        x = images.reshape(len(images), -1).astype(np.float32, copy=False) / np.float32(STD)
        w1, b1 = self.layers[0]
        inked = np.flatnonzero(x.any(0))
        if 2 * inked.size < x.shape[1]:
            return x[:, inked] @ w1[inked] + self.paper_bias
        return (x - np.float32(MEAN / STD)) @ w1 + b1

    def head(self, sums: np.ndarray) -> np.ndarray:
        """The logits from the first layer's sums."""
        (w2, b2), (w3, b3) = self.layers[1:]
        return np.maximum(np.maximum(sums, 0) @ w2 + b2, 0) @ w3 + b3

    def blanked(self, images: np.ndarray, patches: np.ndarray) -> np.ndarray:
        """N×(1+P)×10 logits: each of N×28×28 images whole, then with each of P patches of pixels (P×K indices
        into the 784) blanked to paper. Blanking takes only the patch's own rows out of the first layer's sums:
        for 49 patches of 16 pixels, 49×16 rows where recomputing would take 49×784 (358 µs to 13 µs)."""
        x = images.reshape(len(images), -1).astype(np.float32, copy=False)
        whole = self.first(x)
        # Paper is 0 before standardizing, so a blanked pixel moves by its own value over STD.
        lost = np.matmul((x[:, patches] / np.float32(STD))[:, :, None, :], self.layers[0][0][patches][None])
        sums = np.concatenate([whole[:, None], whole[:, None] - lost[:, :, 0]], axis=1)
        return self.head(sums.reshape(-1, sums.shape[-1])).reshape(len(x), len(patches) + 1, -1)


def limit_threads(threads: int) -> None:
    """The threads of this process's forward passes: numpy's BLAS, and torch's where the process has loaded it
    (serving doesn't). The server runs one per worker (settings.torch_threads): at a batch of 64, BLAS's default
    of one per core took 3.2× the CPU time for 1.7× the speed, taken from the other workers."""
    threadpool_limits(threads, user_api="blas")
    if (torch := sys.modules.get("torch")) is not None:
        torch.set_num_threads(threads)
