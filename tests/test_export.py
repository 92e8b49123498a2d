import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from transferlab.cli import main
from transferlab.deploy.export import Deployable, ExportError, export_model, export_run
from transferlab.models.registry import get_spec, names
from transferlab.models.transfer import create_model

# TorchScript for every registered backbone; ONNX (whose dynamo exporter takes 5-25 s per model on
# two cores) for one backbone of each kind of graph the contract must survive: timm with the
# default bundled weights, torchvision with a residual body, a conv head pooled before the new head,
# inception's auxiliary classifier and input transform, and a backbone with layer norm.
ONNX_KINDS = ["efficientnet_lite0", "resnet18", "squeezenet1_0", "inception_v3", "convnext_tiny"]
ROUND_TRIPS = [(n, "torchscript") for n in names()] + [(n, "onnx") for n in ONNX_KINDS]


@pytest.mark.parametrize("name, fmt", ROUND_TRIPS, ids=[f"{f}-{n}" for n, f in ROUND_TRIPS])
def test_export_round_trip_matches_eager_for_every_backbone(name, fmt, tmp_path):
    torch.manual_seed(0)
    spec = get_spec(name)
    size = max(spec.min_size, 64)
    module = Deployable(create_model(name, 2, pretrained=False).eval(), spec.mean, spec.std, temperature=1.7).eval()
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    path = export_model(module, fmt, tmp_path / f"m.{fmt}", size)
    assert [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)] == norms  # folded in a copy
    if fmt == "torchscript" and name in ("efficientnet_lite0", "resnet18", "inception_v3", "vgg11_bn"):
        assert "batch_norm" not in str(torch.jit.load(str(path)).inlined_graph)  # folded into the convolutions
    x = torch.rand(3, 3, size, size)  # a batch size other than the example's 2: the batch axis is dynamic
    with torch.inference_mode():
        ref_p, ref_l = (t.numpy() for t in module(x))
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got_p, got_l = sess.run(["probs", "logits"], {"image": x.numpy()})
    else:
        with torch.inference_mode():
            got_p, got_l = (t.numpy() for t in torch.jit.load(str(path))(x))
    scale = max(1.0, float(np.abs(ref_l).max()))  # random-init logits can be huge (inception: ~1e4)
    assert np.abs(got_l - ref_l).max() <= 1e-4 * scale
    assert np.abs(got_p - ref_p).max() < 1e-4 and (got_p.argmax(1) == ref_p.argmax(1)).all()


def test_export_run_writes_model_and_contract_and_checks_parity(tiny_run, tmp_path):
    r = export_run(tiny_run, "onnx", tmp_path / "exp")
    contract = json.loads((tmp_path / "exp" / "model.onnx.json").read_text())
    ckpt = torch.load(tiny_run / "best.pt", weights_only=False)
    assert contract["classes"] == ckpt["classes"] and contract["threshold"] == ckpt["threshold"]
    assert contract["preprocess"]["input_size"] == 32 and contract["temperature"] == ckpt["temperature"]
    assert r["parity"]["identical_predictions"] == 1.0 and r["parity"]["max_abs_diff"] < 1e-4
    assert r["parity_from_files"]["max_abs_diff"] < 1e-4 and r["parity"]["n"] > 0
    assert (tmp_path / "exp" / "export_onnx.json").is_file()


def test_export_fails_loudly_when_the_export_disagrees(tiny_run, tmp_path, monkeypatch):
    import transferlab.deploy.export as ex

    real = ex.export_model

    def broken(module, fmt, path, size, views=1):  # an exporter that loses the normalisation
        module.mean.zero_()
        module.std.fill_(1.0)
        return real(module, fmt, path, size, views)

    monkeypatch.setattr(ex, "export_model", broken)
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_run(tiny_run, "torchscript", tmp_path / "bad")
    assert (tmp_path / "bad" / "model.torchscript.pt.failed").is_file()
    assert not (tmp_path / "bad" / "model.torchscript.pt.json").exists()  # nothing usable left behind


def test_a_run_whose_images_cannot_be_read_fails_before_exporting_anything(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export*"))
    rows = (run / "split.csv").read_text().splitlines()
    # every listed image moved away: the manifest now points nowhere
    (run / "split.csv").write_text("\n".join([rows[0], *(r.replace(",", "_gone.png,", 1) for r in rows[1:])]) + "\n")
    with pytest.raises(ExportError, match=r"none of the run's \d+ validation images could be read \(e\.g\. .*_gone"):
        export_run(run, "torchscript", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no model file without its contract


def test_int8_reports_accuracy_size_and_speed(tiny_run, tmp_path):
    q = export_run(tiny_run, "onnx", tmp_path / "q", int8=True)["int8"]
    assert (tmp_path / "q" / "model.int8.onnx").is_file() and (tmp_path / "q" / "model.int8.onnx.json").is_file()
    assert 0 < q["size_ratio"] < 0.7 and q["int8_images_per_s"] > 0 and q["float_images_per_s"] > 0
    assert set(q["int8"]) == {"accuracy", "accuracy_at_threshold"}
    # int8 keeps the float model's answers on (nearly) every validation image, and its accuracy
    assert q["parity_vs_float"]["identical_predictions"] >= 0.75 and q["parity_vs_float"]["n"] > 0
    assert abs(q["int8"]["accuracy"] - q["float"]["accuracy"]) <= 0.25
    with pytest.raises(ExportError, match="--format onnx"):
        export_run(tiny_run, "torchscript", tmp_path / "x", int8=True)


def test_predict_with_an_exported_model_matches_the_run_and_needs_no_torch(tiny_run, tmp_path, capsys):
    from conftest import make_folder

    imgs = make_folder(tmp_path / "imgs", n=3)
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "e")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tiny_run), str(imgs), "--json", str(tmp_path / "run.json")]) == 0
    assert main(["predict", str(tmp_path / "e" / "model.onnx"), str(imgs), "--json", str(tmp_path / "onnx.json")]) == 0
    a = json.loads((tmp_path / "run.json").read_text())
    b = json.loads((tmp_path / "onnx.json").read_text())
    assert a["decision"]["rule"] == b["decision"]["rule"]
    assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
    assert (
        max(
            abs(p["probs"][c] - q["probs"][c]) for p, q in zip(a["predictions"], b["predictions"]) for c in a["classes"]
        )
        < 1e-4
    )
    # the same command in a Python where importing torch fails
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from transferlab.cli import main\n"
        f"rc = main(['predict', {str(tmp_path / 'e' / 'model.onnx')!r}, {str(imgs)!r}, '--json', "
        f"{str(tmp_path / 'notorch.json')!r}])\n"
        "assert 'torch' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = json.loads((tmp_path / "notorch.json").read_text())
    assert [p["label"] for p in c["predictions"]] == [p["label"] for p in b["predictions"]]


@pytest.mark.parametrize(
    "name, views, pool",
    [("resnet18", 1, "mean,std"), ("efficientnet_lite0", 4, "mean,std"), ("efficientnet_lite0", 1, "mean,std,max,min")],
)
def test_stage_model_exports_with_its_standardisation(name, views, pool, tmp_path):
    """The fitted feature standardisation (and the averaging of crop views, and each pooled
    statistic) travel inside the export."""
    import onnxruntime as ort

    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name, 2, pretrained=False, features="stages", pool=pool).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.rand(16, 3, 64, 64))
        model.feature_norm.fit(feats * 3 + 1)  # a mean and scale far from the identity
    module = Deployable(model, spec.mean, spec.std).eval()
    path = export_model(module, "onnx", tmp_path / "m.onnx", 64, views)
    x = torch.rand(3, 3, 64, 64) if views == 1 else torch.rand(3, views, 3, 64, 64)
    with torch.inference_mode():
        ref = module(x)[1].numpy()
        model.feature_norm.mean.zero_()
        model.feature_norm.scale.fill_(1.0)
        unnormalised = module(x)[1].numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(unnormalised - ref).max() > 1e-2  # the standardisation matters, and it was exported


def test_a_model_the_dynamo_exporter_cannot_take_goes_through_the_older_exporter(tmp_path, monkeypatch):
    import onnxruntime as ort

    real, used = torch.onnx.export, []

    def export(*args, dynamo=True, **kwargs):
        used.append(dynamo)
        if dynamo:
            raise RuntimeError("torch.export cannot trace this")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    torch.manual_seed(0)
    spec = get_spec("scratch_cnn")
    module = Deployable(create_model("scratch_cnn", 2, pretrained=False).eval(), spec.mean, spec.std).eval()
    path = export_model(module, "onnx", tmp_path / "m.onnx", 32)
    x = torch.rand(5, 3, 32, 32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["probs"], {"image": x.numpy()})[0]
    with torch.inference_mode():
        assert np.abs(got - module(x)[0].numpy()).max() < 1e-5
    assert used == [True, False]


def test_onnx_export_computes_in_place_activations_out_of_place_and_restores_them(tmp_path, monkeypatch):
    """torch.export sees no in-place activation (it decomposes each one, slowly); the user's module
    gets its flags back, and a module that had no such flag gets none."""
    seen = []
    real = torch.onnx.export

    def export(module, *args, **kwargs):
        seen.append([m.inplace for m in module.modules() if hasattr(m, "inplace")])
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.ReLU6(inplace=False))
    model = torch.nn.Sequential(body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    export_model(Deployable(model, [0.5] * 3, [0.25] * 3), "onnx", tmp_path / "m.onnx", 16)
    assert seen == [[False, False]]
    assert [m.inplace for m in model.modules() if hasattr(m, "inplace")] == [True, False]
    assert not hasattr(model[1], "inplace")
