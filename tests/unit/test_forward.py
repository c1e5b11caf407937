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


def exact_probabilities(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """The same network in float64, where rounding moves nothing this test can see."""
    x = normalize(torch.from_numpy(images)).double().reshape(len(images), -1)
    with torch.inference_mode():
        for name in ("fc1", "fc2", "fc3"):
            weight, bias = (torch.from_numpy(predictor.state[f"{name}.{part}"]).double() for part in ("weight", "bias"))
            x = x @ weight.T + bias
            x = x.relu() if name != "fc3" else x
        return torch.softmax(x / predictor.temperature, dim=1).numpy()


def test_images_inked_all_over_agree_with_torch(predictor):
    # Past half of the pixels inked, the first layer reads its weights in place rather than gathering them.
    # Noise inked all over reaches logits of 860, where float32's rounding alone moves a probability by 3e-5 in
    # torch's own forward: ours is held to the exact arithmetic as closely as torch is, within twice its error.
    images = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    exact = exact_probabilities(predictor, images)
    bound = 2 * np.abs(torch_probabilities(predictor, images) - exact).max() + 1e-6
    ours = np.array([p.probabilities for p in predictor.classify(images)])
    alone = np.array([predictor.classify(image[None])[0].probabilities for image in images])
    assert np.abs(ours - exact).max() <= bound
    assert np.abs(alone - exact).max() <= bound


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


def test_each_probability_is_rounded_as_round_rounds(predictor, mnist_test):
    """The answer's probabilities are round(p, 6) of the calibrated ones, bit for bit (Predictor.classify rounds
    them all at once): the top one against the unrounded confidence, over the test set and noise."""
    noise = np.random.default_rng(1).random((500, 28, 28), dtype=np.float32)
    for images in (mnist_test[0].astype(np.float32) / 255, noise):
        for p in predictor.classify(images):
            assert p.probabilities[p.digit] == round(p.confidence, 6)
