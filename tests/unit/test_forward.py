"""The serving forward pass (numpy) against the model it was taken from (torch), over MNIST's test set."""

import numpy as np
import torch

from digits.inference import explain
from digits.inference.predictor import Predictor
from digits.training.splits import normalize
from model import model_from_state


def torch_probabilities(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = model_from_state(predictor.state)(normalize(torch.from_numpy(images)))
        return torch.softmax(logits / predictor.temperature, dim=1).numpy()


def test_numpy_forward_agrees_with_torch_over_the_test_set(predictor, mnist_test):
    images = mnist_test[0].astype(np.float32) / 255
    ours = np.array([p.probabilities for p in predictor.classify(images)])
    theirs = torch_probabilities(predictor, images)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_images_inked_all_over_agree_with_torch(predictor):
    # Past half of the pixels inked, the first layer reads its weights in place rather than gathering them.
    images = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    ours = np.array([p.probabilities for p in predictor.classify(images)])
    assert np.abs(ours - torch_probabilities(predictor, images)).max() <= 1e-5
    alone = np.array([p.probabilities for p in predictor.classify(images[:1])])
    np.testing.assert_allclose(alone, ours[:1], atol=1e-6)


def test_one_image_alone_reads_as_in_a_batch(predictor, mnist_test):
    images = mnist_test[0][:64].astype(np.float32) / 255
    batch = predictor.forward(images)
    alone = np.concatenate([predictor.forward(image[None]) for image in images])
    np.testing.assert_allclose(alone, batch, atol=1e-4)


def test_blanking_a_patch_reads_as_the_blanked_image_does(predictor, mnist_test):
    images = mnist_test[0][:8].astype(np.float32) / 255
    logits = predictor.forward.blanked(images, explain.PATCHES)
    assert logits.shape == (8, 1 + len(explain.PATCHES), 10)
    np.testing.assert_allclose(logits[:, 0], predictor.forward(images), atol=1e-4)
    for k in (0, 17, 48):
        blank = images.reshape(8, -1).copy()
        blank[:, explain.PATCHES[k]] = 0
        np.testing.assert_allclose(logits[:, 1 + k], predictor.forward(blank), atol=1e-4)
