import torch

from model import MLP


def test_architecture_is_784_256_128_10():
    model = MLP()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]
    assert sum(p.numel() for p in model.parameters()) == 235_146


def test_forward_returns_logits_per_image():
    model = MLP().eval()
    out = model(torch.zeros(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert model(torch.zeros(3, 784)).shape == (3, 10)


def test_dropout_adds_no_parameters():
    assert MLP(dropout=0.3).state_dict().keys() == MLP().state_dict().keys()
