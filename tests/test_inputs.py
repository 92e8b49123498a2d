"""models/inputs.py: the neighbouring-pixel residual as the model's first layer, through the
model contract, checkpoints, export and Grad-CAM."""

import numpy as np
import pytest
import torch
from PIL import Image

from transferlab.models.inputs import NeighbourResidual, make_input
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model

SPEC = get_spec("efficientnet_lite0")
MEAN, STD = (torch.tensor(v).view(1, 3, 1, 1) for v in (SPEC.mean, SPEC.std))


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - MEAN) / STD


def test_an_image_upsampled_by_nearest_neighbour_has_no_residual():
    torch.manual_seed(0)
    small = torch.rand(2, 3, 8, 8)
    upsampled = small.repeat_interleave(2, -2).repeat_interleave(2, -1)  # what a 2x nearest upsampler makes
    r = NeighbourResidual(SPEC.mean, SPEC.std)(_normalised(upsampled))
    assert torch.allclose(r, _normalised(torch.full_like(upsampled, 0.5)), atol=1e-5)  # mid-grey: zero residual


def test_the_residual_is_the_pixel_minus_its_block_corner_scaled_and_clamped():
    torch.manual_seed(0)
    pixels = torch.rand(1, 3, 7, 9)  # odd sizes: the last row and column have no partner below/right
    r = NeighbourResidual(SPEC.mean, SPEC.std, gain=4.0)(_normalised(pixels)) * STD + MEAN
    corner = pixels[..., ::2, ::2].repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :7, :9]
    want = ((pixels - corner) * 4 + 0.5).clamp(0, 1)
    assert r.shape == pixels.shape
    assert torch.allclose(r, want, atol=1e-5)
    corners = r[..., ::2, ::2]  # each block's corner is its own reference: zero residual
    assert torch.allclose(corners, torch.full((1, 3, 4, 5), 0.5), atol=1e-5)
    assert (r - 0.5).abs().max() > 0.1


def test_unknown_inputs_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="image, residual"):
        make_input("noise", SPEC.mean, SPEC.std)
    with pytest.raises(ValueError, match="image, residual"):
        create_model("efficientnet_lite0", 2, pretrained=False, input="residuals")


def test_the_input_changes_what_the_body_sees_but_not_the_weights():
    torch.manual_seed(0)
    image = create_model("resnet18", 2, pretrained=False, features="stages").eval()
    residual = create_model("resnet18", 2, pretrained=False, features="stages", input="residual").eval()
    residual.load_state_dict(image.state_dict())  # the same keys: the filter holds no weights
    x = _normalised(torch.rand(2, 3, 64, 64))
    with torch.no_grad():
        assert not torch.allclose(image(x), residual(x), atol=1e-3)
        views = x.unsqueeze(1).expand(2, 4, 3, 64, 64)  # crop views go through the filter too
        assert torch.allclose(residual(views), residual(x), atol=1e-5)


def test_a_checkpoint_rebuilds_the_residual_model():
    from transferlab.models.checkpoint import model_from_checkpoint

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", input="residual").eval()
    ckpt = {"model": model.state_dict(), "classes": ["fake", "real"], "backbone": "efficientnet_lite0"}
    x = _normalised(torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        ref = model(x)
        again = model_from_checkpoint({**ckpt, "config": {"features": "stages", "input": "residual"}}).eval()
        assert again.input == "residual" and torch.allclose(again(x), ref, atol=1e-6)
        old = model_from_checkpoint({**ckpt, "config": {"features": "stages"}}).eval()  # before the choice existed
        assert old.input == "image" and not torch.allclose(old(x), ref, atol=1e-3)


def test_the_residual_travels_inside_the_onnx_export(tmp_path):
    import onnxruntime as ort

    from transferlab.deploy.export import Deployable, export_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", input="residual").eval()
    module = Deployable(model, SPEC.mean, SPEC.std).eval()
    path = export_model(module, "onnx", tmp_path / "m.onnx", 64)
    x = torch.rand(3, 3, 64, 64)
    image = create_model("efficientnet_lite0", 2, pretrained=False, features="stages").eval()
    image.load_state_dict(model.state_dict())
    with torch.inference_mode():
        ref = module(x)[1].numpy()
        as_image = Deployable(image, SPEC.mean, SPEC.std).eval()(x)[1].numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(as_image - ref).max() > 1e-3  # the filter matters, and it was exported


def test_gradcam_explains_a_residual_model():
    from skimage import data

    from transferlab.data.images import prepare
    from transferlab.evaluation.explain import GradCAM

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", input="residual")
    model.freeze_body(True)
    model.eval()
    cat, pre = Image.fromarray(data.chelsea()), SPEC.preprocess()
    maps = [GradCAM(model, pre).explain_image(cat, target=t) for t in (0, 1)]
    heat, _, probs = max(maps, key=lambda m: m[0].std())
    assert heat.shape == (224, 224) and heat.max() == pytest.approx(1.0) and heat.std() > 0.02
    with torch.no_grad():
        x = GradCAM(model, pre).transform(prepare(cat, pre.decode_size)).unsqueeze(0)
        assert np.allclose(probs, model(x).softmax(1)[0].numpy(), atol=1e-4)  # explained through the residual
        image = create_model("efficientnet_lite0", 2, pretrained=False, features="stages").eval()
        image.load_state_dict(model.state_dict())
        assert not np.allclose(probs, image(x).softmax(1)[0].numpy(), atol=1e-4)


def test_a_residual_run_records_its_input_and_keeps_its_own_feature_cache(tiny_folder, tmp_path, fast_overrides):
    from transferlab.config import load_config
    from transferlab.models.checkpoint import load_checkpoint, model_from_checkpoint
    from transferlab.training.trainer import train

    def run(name: str, **over):
        cfg = {
            **fast_overrides,
            "data": str(tiny_folder),
            "out": str(tmp_path / name),
            "model": "efficientnet_lite0",
            "mode": "features",
            "recipe": "detect",
            "cache_dir": str(tmp_path / "cache"),
            **over,
        }
        return train(load_config(None, cfg))

    res = run("residual", input="residual")
    assert res.summary["input"] == "residual"
    assert "input: residual" in (tmp_path / "residual" / "config.yaml").read_text()
    assert model_from_checkpoint(load_checkpoint(tmp_path / "residual" / "best.pt")).input == "residual"
    again = run("image")  # same data, same cache folder: the residual's features must not be reused
    notes = " ".join(again.summary["data"]["notes"])
    assert again.summary["input"] == "image" and " 0 came from the feature cache" in notes
    assert " 20 came from the feature cache" in " ".join(run("residual2", input="residual").summary["data"]["notes"])


@pytest.mark.parametrize("centre,parts", [(None, None), (0.6, None), (None, "face")])
def test_a_zoom_model_goes_through_checkpoint_onnx_and_gradcam(tmp_path, centre, parts):
    import onnxruntime as ort
    from skimage import data

    from transferlab.deploy.export import Deployable, export_model
    from transferlab.evaluation.explain import GradCAM
    from transferlab.models.checkpoint import model_from_checkpoint

    torch.manual_seed(1)  # random weights: some seeds give a heat map of zeros for both classes
    model = create_model(
        "efficientnet_lite0", 2, pretrained=False, features="stages", zoom=2, centre=centre, parts=parts
    ).eval()
    ckpt = {"model": model.state_dict(), "classes": ["fake", "real"], "backbone": "efficientnet_lite0"}
    x = torch.rand(3, 3, 128, 128)
    config = {"features": "stages", "zoom": 2, "centre": centre, "parts": parts}
    again = model_from_checkpoint({**ckpt, "config": config}).eval()
    module = Deployable(model, SPEC.mean, SPEC.std).eval()
    with torch.inference_mode():
        ref = module(x)[1].numpy()
        assert again.zoom == 2 and again.centre == centre and again.parts == parts
        assert np.allclose(Deployable(again, SPEC.mean, SPEC.std)(x)[1].numpy(), ref, atol=1e-6)
    path = export_model(module, "onnx", tmp_path / "m.onnx", 128)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    model.freeze_body(True)
    cam, cat = GradCAM(model, SPEC.preprocess(64, zoom=2)), Image.fromarray(data.chelsea())
    heat = max((cam.explain_image(cat, target=t)[0] for t in (0, 1)), key=lambda h: h.std())
    assert heat.shape == (128, 128) and heat.max() == pytest.approx(1.0) and heat.std() > 0.02


def test_a_zoom_run_records_it_and_predicts_at_twice_the_size(tiny_folder, tmp_path, fast_overrides):
    from transferlab.config import load_config
    from transferlab.models.checkpoint import load_checkpoint, model_from_checkpoint
    from transferlab.predict.predictor import Predictor
    from transferlab.training.trainer import train

    cfg = {
        **fast_overrides,
        "data": str(tiny_folder),
        "out": str(tmp_path / "zoom"),
        "model": "efficientnet_lite0",
        "mode": "features",
        "recipe": "detect",
        "image_size": 32,
        "zoom": 2,
        "cache_dir": str(tmp_path / "cache"),
    }
    res = train(load_config(None, cfg))
    assert res.summary["zoom"] == 2 and res.summary["preprocess"]["input_size"] == 64
    assert "zoom: 2" in (tmp_path / "zoom" / "config.yaml").read_text()
    assert model_from_checkpoint(load_checkpoint(tmp_path / "zoom" / "best.pt")).zoom == 2
    rows = Predictor.from_run(tmp_path / "zoom").predict_paths([str(p) for p in sorted(tiny_folder.rglob("*.png"))[:3]])
    assert len(rows) == 3 and all(r.error is None and abs(sum(r.probs.values()) - 1) < 1e-5 for r in rows)
    assert res.summary["centre"] is None  # the centre half: cut at the input's own pixels

    def notes(name: str, **over) -> str:
        summary = train(load_config(None, {**cfg, "out": str(tmp_path / name), **over})).summary
        assert summary["centre"] == (None if over["centre"] == 0.5 else over["centre"])
        return " ".join(summary["data"]["notes"])

    # 0.5 is 1 / zoom: the same views, so the same cached features; 0.6 is another view and is recomputed
    assert " 0 came from the feature cache" not in notes("c05", centre=0.5)
    assert " 0 came from the feature cache" in notes("c06", centre=0.6)
    assert model_from_checkpoint(load_checkpoint(tmp_path / "c06" / "best.pt")).centre == 0.6
    # the face's parts are more features of the same input: recorded, rebuilt, and never read from zoom's cache
    parts = train(load_config(None, {**cfg, "out": str(tmp_path / "parts"), "parts": "face"})).summary
    assert parts["parts"] == "face" and res.summary["parts"] is None
    assert " 0 came from the feature cache" in " ".join(parts["data"]["notes"])
    assert model_from_checkpoint(load_checkpoint(tmp_path / "parts" / "best.pt")).parts == "face"
    views = sum(model_from_checkpoint(load_checkpoint(tmp_path / "zoom" / "best.pt")).feature_blocks)
    assert [h["columns"] for h in parts["logistic"]["heads"]] == [views, 2 * views]  # fitted apart, then added
    assert res.summary["logistic"]["heads"] == []
    assert "2 heads fitted apart and added" in " ".join(parts["data"]["notes"])


def test_a_pooled_run_records_its_statistics_and_never_reads_another_pools_features(
    tiny_folder, tmp_path, fast_overrides
):
    from transferlab.config import load_config
    from transferlab.models.checkpoint import load_checkpoint, model_from_checkpoint
    from transferlab.predict.predictor import Predictor
    from transferlab.training.trainer import train

    cfg = {
        **fast_overrides,
        "data": str(tiny_folder),
        "model": "efficientnet_lite0",
        "mode": "features",
        "recipe": "detect",
        "image_size": 32,
        "cache_dir": str(tmp_path / "cache"),
    }

    def run(name: str, **over) -> dict:
        return train(load_config(None, {**cfg, "out": str(tmp_path / name), **over})).summary

    plain = run("plain", pool="mean,std")
    pooled = run("pooled")  # the detect recipe's frozen stage features keep each channel's extremes too
    assert plain["pool"] == "mean,std" and pooled["pool"] == "mean,std,max,min"
    assert "pool: mean,std,max,min" in (tmp_path / "pooled" / "config.yaml").read_text()
    assert "zoom 2, pool mean,std,max,min" in " ".join(pooled["data"]["notes"])
    assert " 0 came from the feature cache" in " ".join(pooled["data"]["notes"])  # other columns: computed again
    again = run("again", pool="mean,std,max,min")
    assert " 0 came from the feature cache" not in " ".join(again["data"]["notes"])
    model = model_from_checkpoint(load_checkpoint(tmp_path / "pooled" / "best.pt"))
    base = model_from_checkpoint(load_checkpoint(tmp_path / "plain" / "best.pt"))
    assert model.pool == "mean,std,max,min" and model.feature_dim == 2 * base.feature_dim
    rows = Predictor.from_run(tmp_path / "pooled").predict_paths(
        [str(p) for p in sorted(tiny_folder.rglob("*.png"))[:3]]
    )
    assert len(rows) == 3 and all(r.error is None and abs(sum(r.probs.values()) - 1) < 1e-5 for r in rows)
    # a checkpoint written before the pool choice existed rebuilds with the mean and std
    ckpt = load_checkpoint(tmp_path / "plain" / "best.pt")
    ckpt["config"].pop("pool")
    assert model_from_checkpoint(ckpt).pool == "mean,std"
