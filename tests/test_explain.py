import numpy as np
import pytest
import torch
from PIL import Image

from transferlab.backbones import create_model, get_spec, names
from transferlab.explain import GradCAM, overlay, save_overlay


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    from skimage import data
    return Image.fromarray(data.chelsea())


@pytest.mark.parametrize("name", names())
def test_gradcam_for_every_backbone(name, cat):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name, 2, pretrained=False)
    model.freeze_body(True)  # as in features mode: Grad-CAM must still get gradients
    model.eval()
    heat, seen, probs = GradCAM(model, spec.preprocess()).explain_image(cat)
    size = spec.preprocess()["input_size"]
    assert heat.shape == (size, size) and seen.shape == (size, size, 3)
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0) and heat.std() > 0.02  # not constant
    assert probs.shape == (2,) and model.frozen_body  # state restored


def test_overlay_and_save(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    heat = np.linspace(0, 1, 64).reshape(8, 8)
    out = overlay(img, heat)
    assert out.shape == (8, 8, 3) and out[0, 0].tolist() != out[-1, -1].tolist()
    p = save_overlay(tmp_path / "a" / "x.png", img, heat)
    assert Image.open(p).size == (16, 8)
