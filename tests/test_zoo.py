import torch

from transferlab.models.zoo import ScratchCNN


def test_scratch_cnn_any_input_size():
    net = ScratchCNN(num_classes=5).eval()
    for size in (16, 33, 64, 224):
        assert net(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_scratch_cnn_has_batchnorm_and_global_pooling():
    net = ScratchCNN()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) < 2_000_000
