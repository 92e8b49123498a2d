"""Batch norm folded into convolutions: same features, fewer modules, and refused where unsafe."""

import pytest
import torch
from torch import nn

from transferlab.models.fold import fold_batchnorm
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model


def _randomise_batchnorms(net: nn.Module) -> None:
    """Statistics and affine parameters far from the identity, as trained ones are."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


def _batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


# one backbone per way of building conv -> batch norm: timm blocks with "same" padding and
# BatchNormAct2d, torchvision's feature-extractor graphs, Conv2dNormActivation, pre-activation
# dense layers (half cannot fold), our own CNN
FAMILIES = ["efficientnet_lite0", "resnet18", "mobilenet_v3_large", "efficientnet_b0", "densenet121", "scratch_cnn"]


@pytest.mark.parametrize("name", FAMILIES)
def test_folded_body_gives_the_same_features(name):
    torch.manual_seed(0)
    model = create_model(name, 2, pretrained=False, features="stages").eval()
    _randomise_batchnorms(model.body)
    before = _batchnorms(model.body)
    size = max(get_spec(name).min_size, 96)
    folded = fold_batchnorm(model.body, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got = model.body(x), folded(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert _batchnorms(model.body) == before  # the model itself is untouched
    if name == "densenet121":  # norms after a concatenation stay: 58 dense layers' first, 3 transitions', the last
        assert (before, _batchnorms(folded)) == (121, 58 + 3 + 1)
    else:
        assert before > 0 and _batchnorms(folded) == 0


def test_a_model_folds_into_a_twin_and_keeps_its_own_body():
    model = create_model("efficientnet_lite0", 2, pretrained=False, features="stages").eval()
    body = model.body
    twin = model.folded(64)
    assert twin.body is not body and _batchnorms(twin.body) == 0
    assert twin.head is model.head and twin.feature_norm is model.feature_norm  # shared, not copied
    assert model.body is body and _batchnorms(body) == 49
    assert model.train().folded(64) is model  # a training model is not folded


def test_the_folded_copy_keeps_the_bodys_memory_format():
    model = create_model("efficientnet_lite0", 2, pretrained=False, features="stages").eval()
    model.to(memory_format=torch.channels_last)
    weights = [p for p in fold_batchnorm(model.body, 64).parameters() if p.ndim == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


class _ConvUsedTwice(nn.Module):
    """The convolution's output feeds the batch norm and the residual sum: folding would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_an_unsafe_fold_is_refused_and_a_training_body_is_left_alone():
    net = _ConvUsedTwice()
    _randomise_batchnorms(net)
    assert fold_batchnorm(net.eval(), 16) is net  # the check on a test input catches it
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    _randomise_batchnorms(plain)
    assert fold_batchnorm(plain.train(), 16) is plain
    folded = fold_batchnorm(plain.eval(), 16)
    assert folded is not plain and isinstance(folded[1], nn.Identity)
