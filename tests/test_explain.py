import numpy as np
import pytest
import torch
from PIL import Image

from transferlab.data.images import prepare
from transferlab.evaluation.explain import GradCAM, overlay, save_overlay
from transferlab.models.registry import get_spec, names
from transferlab.models.transfer import create_model


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.mark.parametrize("features", ["last", "stages"])
@pytest.mark.parametrize("name", names())
def test_gradcam_for_every_backbone(name, features, cat):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name, 2, pretrained=False, features=features)
    model.freeze_body(True)  # as in features mode: Grad-CAM must still get gradients
    model.eval()
    # a random head may hold no positive evidence for one class anywhere (an all-zero map): the other has some
    maps = [GradCAM(model, spec.preprocess()).explain_image(cat, target=t) for t in (0, 1)]
    heat, seen, probs = max(maps, key=lambda m: m[0].std())
    size = spec.preprocess().input_size
    assert heat.shape == (size, size) and seen.shape == (size, size, 3)
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0) and heat.std() > 0.02  # not constant
    assert probs.shape == (2,) and model.frozen_body and not model.training  # nothing about the model changed
    with torch.no_grad():
        pre = spec.preprocess()
        x = GradCAM(model, pre).transform(prepare(cat, pre.decode_size)).unsqueeze(0)
        assert np.allclose(probs, model(x).softmax(1)[0].numpy(), atol=1e-4)  # the probabilities of the plain forward


def test_gradcam_refuses_a_model_in_training_mode(cat):
    model = create_model("scratch_cnn", 2, pretrained=False)
    with pytest.raises(RuntimeError, match="eval"):
        GradCAM(model, get_spec("scratch_cnn").preprocess(32)).explain_image(cat)


def test_concurrent_gradcam_answers_equal_one_at_a_time():
    """Threads explaining different images with one shared model get their own image's map."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = create_model("resnet18", 2, pretrained=False).eval()
    model.freeze_body(True)
    cam = GradCAM(model, get_spec("resnet18").preprocess(64))
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (80, 80, 3), dtype=np.uint8)) for i in range(8)]
    alone = [cam.explain_image(im)[0] for im in images]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda im: cam.explain_image(im)[0], images * 3))
    for i, heat in enumerate(together):
        assert np.allclose(heat, alone[i % 8], atol=1e-5), i


def test_overlay_and_save(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    heat = np.linspace(0, 1, 64).reshape(8, 8)
    out = overlay(img, heat)
    assert out.shape == (8, 8, 3) and out[0, 0].tolist() != out[-1, -1].tolist()
    p = save_overlay(tmp_path / "a" / "x.png", img, heat)
    assert Image.open(p).size == (16, 8)
