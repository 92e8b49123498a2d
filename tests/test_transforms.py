import pytest
import torch
from PIL import Image

from transferlab.data.transforms import denormalize, eval_transform, train_transform
from transferlab.models.registry import get_spec


def test_eval_transform_shape_and_normalisation():
    pre = get_spec("resnet18").preprocess(64)
    x = eval_transform(pre)(Image.new("RGB", (100, 80), (255, 0, 0)))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    # red channel of pure red normalises to (1 - mean) / std
    assert abs(x[0, 0, 0].item() - (1 - pre.mean[0]) / pre.std[0]) < 1e-4
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


def test_robust_preset_degrades_reproducibly():
    from transferlab.data.transforms import AugmentSpec

    pre = get_spec("scratch_cnn").preprocess(32)
    img = (
        torch.from_numpy(__import__("numpy").asarray(Image.effect_noise((48, 48), 60).convert("RGB")).copy())
        .permute(2, 0, 1)
        .contiguous()
    )
    always = AugmentSpec("robust", crop_scale_min=1.0, blur_prob=1.0, jpeg_prob=1.0, noise_prob=1.0)
    never = AugmentSpec("robust", crop_scale_min=1.0, blur_prob=0.0, jpeg_prob=0.0, noise_prob=0.0)

    def views(spec):
        torch.manual_seed(3)
        return train_transform(pre, spec)(img)

    a, b = views(always), views(always)
    assert torch.equal(a, b)  # same seed, same degradation
    plain = views(never)
    light = views(AugmentSpec("light", crop_scale_min=1.0))  # p = 0 is light (up to the random flip)
    assert torch.equal(plain, light) or torch.equal(plain, light.flip(-1))
    from transferlab.data.transforms import RandomDegrade

    assert RandomDegrade(never)(img) is img
    # blur + JPEG + noise on a noise image: neighbouring pixels become more alike than in the original
    assert (a[:, :, 1:] - a[:, :, :-1]).abs().mean() < (plain[:, :, 1:] - plain[:, :, :-1]).abs().mean()
    assert "RandomDegrade" in repr(train_transform(pre, always))


def test_native_crop_keeps_pixels_and_tta_views():
    import numpy as np

    pre = get_spec("efficientnet_lite0").preprocess(32, crop="native")
    assert pre.crop == "native" and pre.decode_size is None
    arr = np.asarray(Image.effect_noise((96, 64), 80).convert("RGB"))
    x = denormalize(eval_transform(pre)(Image.fromarray(arr)), pre)
    ref = torch.from_numpy(arr[16:48, 32:64].copy()).permute(2, 0, 1).float() / 255  # centre 32 x 32, no resize
    assert torch.allclose(x, ref, atol=1e-5)
    v = eval_transform(pre, tta=True)(Image.fromarray(arr))
    assert v.shape == (10, 3, 32, 32)  # 4 corners + centre, each mirrored
    assert torch.allclose(v[4], eval_transform(pre)(Image.fromarray(arr)))  # FiveCrop's 5th is the centre
    assert torch.equal(v[5], v[0].flip(-1))
    small = eval_transform(pre, tta=True)(Image.fromarray(arr[:20, :20]))  # smaller than the crop: padded
    assert small.shape == (10, 3, 32, 32)
    resized = eval_transform(get_spec("scratch_cnn").preprocess(32), tta=True)(Image.fromarray(arr))
    assert resized.shape == (2, 3, 32, 32) and torch.equal(resized[1], resized[0].flip(-1))


def test_strong_preset_moves_pixels_and_adds_salt_and_pepper():
    import numpy as np

    from transferlab.data.transforms import AugmentSpec

    pre = get_spec("scratch_cnn").preprocess(48)
    img = torch.full((3, 48, 48), 128, dtype=torch.uint8)
    img[:, 20:28, 20:28] = 200  # a grey square on grey: affine moves it, salt-and-pepper adds 0/255
    only_sp = AugmentSpec(
        "strong",
        crop_scale_min=1.0,
        blur_prob=0,
        jpeg_prob=0,
        noise_prob=0,
        rotate_deg=0,
        translate=0,
        scale_jitter=0,
        color_jitter=0,
        sp_prob=1.0,
        sp_amount_max=0.05,
    )
    torch.manual_seed(0)
    x = (denormalize(train_transform(pre, only_sp)(img), pre) * 255).round().numpy()
    extreme = ((x == 0) | (x == 255)).all(0)
    assert 0 < extreme.mean() < 0.06  # some pixels, at most the amount asked for
    assert AugmentSpec("robust", sp_prob=1.0).preset == "robust"  # robust never adds salt-and-pepper
    torch.manual_seed(0)
    assert (
        not (
            (
                denormalize(
                    train_transform(
                        pre,
                        AugmentSpec("robust", crop_scale_min=1.0, blur_prob=0, jpeg_prob=0, noise_prob=0, sp_prob=1.0),
                    )(img),
                    pre,
                )
                * 255
            )
            .round()
            .numpy()
            == 0
        )
        .all(0)
        .any()
    )
    moved = AugmentSpec(
        "strong",
        crop_scale_min=1.0,
        blur_prob=0,
        jpeg_prob=0,
        noise_prob=0,
        sp_prob=0,
        rotate_deg=30,
        translate=0.2,
        color_jitter=0,
    )
    torch.manual_seed(1)
    outs = [np.asarray(train_transform(pre, moved)(img)) for _ in range(4)]
    assert any(not np.allclose(o, outs[0]) for o in outs[1:])
    assert "RandomAffine" in repr(train_transform(pre, moved)) and "ColorJitter" in repr(train_transform(pre, moved))


def test_auto_augment_is_robust_for_real_fake_data_only():
    from transferlab.data.transforms import resolve_augment

    assert resolve_augment("auto", ["fake", "real"]) == "robust"
    assert resolve_augment("auto", ["0_real", "1_fake"]) == "robust"
    assert resolve_augment("auto", ["ants", "bees"]) == "light"
    assert resolve_augment("auto", ["fake", "real", "other"]) == "light"
    assert resolve_augment("light", ["fake", "real"]) == "light"


def test_eval_pixels_match_the_export_contract_preprocessing():
    """PyTorch evaluation (torchvision resize on tensors) and the torch-free contract of exported
    models (PIL resize): at most one grey level apart, on a few per cent of the pixels."""
    import numpy as np
    from skimage import data

    from transferlab.data.images import prepare
    from transferlab.predict.contract import preprocess

    photos = [
        Image.fromarray(data.chelsea()),
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 71, 3), dtype=np.uint8)),
        Image.fromarray(data.astronaut()).resize((700, 520)),
    ]
    for name, size, crop, views in [
        ("scratch_cnn", 32, "resize", 1),
        ("efficientnet_lite0", None, "resize", 1),
        ("resnet18", None, "resize", 1),
        ("inception_v3", None, "resize", 1),
        ("efficientnet_lite0", 64, "native", 1),
        ("efficientnet_lite0", 48, "native", 9),
    ]:
        pre = get_spec(name).preprocess(size, crop, views)
        for im in photos:
            x = (denormalize(eval_transform(pre)(prepare(im, pre.decode_size)), pre) * 255).round().numpy()
            y = (preprocess(im, {"preprocess": pre.to_dict()}) * 255).round()
            assert x.shape == y.shape and np.abs(x - y).max() <= 1, (name, crop, im.size)
            assert (x != y).mean() < 0.05, (name, crop, im.size)
            if crop == "native":
                assert np.array_equal(x, y)  # no resampling at all: identical


def test_crop_views_are_a_grid_at_native_resolution():
    import numpy as np

    from transferlab.data.images import crop_grid

    assert crop_grid(100, 100, 32, 1) == [(34, 34)]
    assert crop_grid(100, 150, 32, 4) == [(0, 0), (0, 118), (68, 0), (68, 118)]  # the four corners
    assert crop_grid(64, 64, 32, 9)[4] == (16, 16)  # a 3 x 3 grid: the middle one is the centre
    pre = get_spec("efficientnet_lite0").preprocess(32, "native", 4)
    arr = np.asarray(Image.effect_noise((96, 64), 80).convert("RGB"))
    views = eval_transform(pre)(Image.fromarray(arr))
    assert views.shape == (4, 3, 32, 32)
    seen = denormalize(views, pre)
    ref = torch.from_numpy(arr[32:64, 64:96].copy()).permute(2, 0, 1).float() / 255  # bottom-right, no resize
    assert torch.allclose(seen[3], ref, atol=1e-5)
    train = train_transform(pre, "light")(Image.fromarray(arr))
    assert train.shape == (4, 3, 32, 32) and not torch.allclose(train[0], train[1])  # K random crops
    small = eval_transform(pre)(Image.fromarray(arr[:20, :20]))  # smaller than a crop: zero-padded
    assert small.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="drop --tta"):
        eval_transform(pre, tta=True)
