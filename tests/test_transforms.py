import torch
from PIL import Image

from transferlab.backbones import get_spec
from transferlab.transforms import denormalize, eval_transform, train_transform


def test_eval_transform_shape_and_normalisation():
    pre = get_spec("resnet18").preprocess(64)
    x = eval_transform(pre)(Image.new("RGB", (100, 80), (255, 0, 0)))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    # red channel of pure red normalises to (1 - mean) / std
    assert abs(x[0, 0, 0].item() - (1 - pre["mean"][0]) / pre["std"][0]) < 1e-4
    assert torch.allclose(denormalize(x, pre)[:, 5, 5], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4)


def test_eval_is_deterministic_train_is_random():
    pre = get_spec("scratch_cnn").preprocess(32)
    img = Image.effect_noise((64, 48), 50).convert("RGB")
    assert torch.equal(eval_transform(pre)(img), eval_transform(pre)(img))
    t = train_transform(pre, "light")
    torch.manual_seed(0)
    a = t(img)
    assert a.shape == (3, 32, 32)
    assert any(not torch.equal(a, t(img)) for _ in range(5))


def test_no_augmentation_equals_eval():
    pre = get_spec("scratch_cnn").preprocess(32)
    img = Image.effect_noise((40, 40), 50).convert("RGB")
    assert torch.equal(train_transform(pre, "none")(img), eval_transform(pre)(img))


def test_native_size_input_is_not_resampled():
    """The demo relies on this: crop_pct 1.0 and input == image size keeps pixels exact."""
    pre = get_spec("efficientnet_lite0").preprocess(32)
    img = Image.effect_noise((32, 32), 80).convert("RGB")
    x = denormalize(eval_transform(pre)(img), pre)
    ref = torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, ref, atol=1e-5)
