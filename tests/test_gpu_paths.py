"""The GPU code paths: precision choice and float16 loss scaling run on the CPU here; the tests
marked ``cuda`` run wherever a GPU is present (skipped elsewhere)."""

from __future__ import annotations

import copy

import pytest
import torch

from transferlab.config import TrainConfig
from transferlab.data.loading import collate_skipping
from transferlab.training.engine import amp_dtype, grad_scaler, train_one_epoch
from transferlab.training.features import FeatureDataset

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_precision_is_bf16_where_supported_else_fp16_with_a_scaler(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(cpu, True) is None and grad_scaler(cpu, True) is None
    assert amp_dtype(cuda, False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(cuda, True) == torch.bfloat16 and grad_scaler(cuda, True) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype(cuda, True) == torch.float16


def _loader(n: int = 32):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, 5, generator=g)
    labels = (feats[:, 0] > 0).long()
    return torch.utils.data.DataLoader(FeatureDataset(feats, labels), batch_size=8, collate_fn=collate_skipping)


def test_loss_scaling_path_takes_the_same_steps_as_full_precision():
    """The GradScaler branch of train_one_epoch (float16 on GPUs without bfloat16), exercised with
    the CPU scaler: scaled, unscaled and stepped, it must match plain SGD."""
    torch.manual_seed(0)
    plain = torch.nn.Linear(5, 2)
    scaled = copy.deepcopy(plain)
    cfg = TrainConfig(data="x", progress=False, amp=False, channels_last=False)
    cpu = torch.device("cpu")
    results = []
    for model, scaler in ((plain, None), (scaled, torch.amp.GradScaler("cpu", init_scale=1024.0))):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        results.append(train_one_epoch(model, _loader(), opt, None, cpu, cfg, scaler=scaler))
    assert results[0]["n"] == results[1]["n"] == 32
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain.weight, torch.nn.Linear(5, 2).weight)


@pytest.mark.cuda
@needs_cuda
def test_cuda_training_and_prediction_agree_with_the_cpu(tmp_path):
    from conftest import make_folder
    from transferlab.config import load_config
    from transferlab.predict.predictor import Predictor
    from transferlab.training.trainer import train

    data = make_folder(tmp_path / "data", n=12)
    flags = {"model": "efficientnet_lite0", "mode": "finetune", "image_size": 64, "epochs": 2, "batch_size": 8}
    flags.update({"num_workers": 2, "progress": False, "data": str(data), "out": str(tmp_path / "gpu")})
    run = train(load_config(None, {**flags, "device": "cuda"}))
    assert run.summary["machine"]["device"].startswith("cuda")
    images = sorted(str(p) for p in data.rglob("*.png"))
    gpu = Predictor.from_run(run.run_dir, device="cuda").predict(images)
    cpu = Predictor.from_run(run.run_dir, device="cpu").predict(images)
    agree = sum(a.label == b.label for a, b in zip(gpu, cpu))
    assert agree >= len(images) - 1  # bf16/fp16 vs fp32: at most one borderline image differs


def test_compile_runs_the_training_step_compiled_and_saves_a_plain_checkpoint(
    tiny_folder, tmp_path, fast_overrides, monkeypatch
):
    """``--compile``: the training step goes through ``torch.compile`` (here with the ``eager``
    backend, which traces without generating code: seconds instead of minutes); the weights and
    metrics equal the uncompiled run's and the checkpoint loads into a plain model."""
    from transferlab.config import load_config
    from transferlab.predict.predictor import Predictor
    from transferlab.training.trainer import train

    real, compiled = torch.compile, []

    def eager_compile(module, **kwargs):
        compiled.append(type(module).__name__)
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    runs = {}
    for flag in (False, True):
        over = {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / f"c{flag}"), "compile": flag}
        runs[flag] = train(load_config(None, over))
    assert compiled == ["TransferModel"]  # once, for the compiled run only
    a, b = (torch.load(r.run_dir / "best.pt", weights_only=False)["model"] for r in (runs[False], runs[True]))
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert runs[True].best_val_acc == runs[False].best_val_acc
    assert len(Predictor.from_run(runs[True].run_dir).predict_paths([str(next(tiny_folder.rglob("*.png")))])) == 1
