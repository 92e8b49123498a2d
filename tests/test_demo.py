from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.lab.demo import PHOTOS, build_demo_data, make_fake, run_demo


def test_splits_use_different_photos():
    seen = [p for split in PHOTOS.values() for p in split]
    assert len(seen) == len(set(seen))


def test_nearest_fakes_repeat_every_pixel_twice():
    rng = np.random.default_rng(0)
    real = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    fake = make_fake(real, rng, "nearest")
    assert fake.shape == real.shape
    assert np.array_equal(fake[0::2], fake[1::2]) and np.array_equal(fake[:, 0::2], fake[:, 1::2])
    assert not np.array_equal(real[0::2], real[1::2])


def test_transposed_fakes_leave_a_checkerboard_on_flat_input():
    flat = np.full((32, 32, 3), 128, np.uint8)
    fake = make_fake(flat, np.random.default_rng(1), "transposed").astype(int)
    inner = fake[2:-2, 2:-2]
    assert inner.std() > 5  # a flat photo becomes patterned...
    assert np.array_equal(inner[:-2], inner[2:]) and np.array_equal(inner[:, :-2], inner[:, 2:])  # ...with period 2


def test_build_demo_data_layout(tmp_path):
    root = build_demo_data(tmp_path / "demo", size=64)
    for split in ("train", "val", "test"):
        for cls in ("real", "fake"):
            files = list((root / split / cls).glob("*.png"))
            assert files, (split, cls)
            assert {f.name.rsplit("_", 1)[0] for f in files} <= set(PHOTOS[split])
    with Image.open(next((root / "test" / "fake").glob("*.png"))) as im:
        assert im.size == (64, 64)
    mtime = (root / "demo.json").stat().st_mtime
    build_demo_data(tmp_path / "demo", size=64)  # reused, not rebuilt
    assert (root / "demo.json").stat().st_mtime == mtime


@pytest.mark.slow
def test_demo_detector_reaches_90_percent_on_unseen_photos(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", progress=False)
    assert report["accuracy"] >= 0.9
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(tmp_path / "demo" / "run") in out


def test_the_demo_again_trains_a_new_run_beside_the_first_and_refuses_a_run_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import transferlab.evaluation.scoring as scoring
    import transferlab.training.trainer as trainer
    from transferlab.rundir import RunFolderError

    runs = []

    def fake_train(cfg):  # the demo's own logic, without minutes of training
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "config.yaml").write_text("a run")
        runs.append(Path(cfg.out))
        return SimpleNamespace(run_dir=Path(cfg.out), best_val_acc=1.0, best_epoch=1)

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(
        scoring,
        "evaluate_run",
        lambda run: {"accuracy": 1.0, "n": 4, "binary": {"roc_auc": 1.0, "average_precision": 1.0}},
    )
    monkeypatch.setattr("transferlab.lab.demo.build_demo_data", lambda root, seed=0: Path(root))
    out = tmp_path / "demo"
    run_demo(out, progress=False)
    run_demo(out, progress=False)
    assert runs == [out / "run", out / "run2"]  # never the same folder twice
    with pytest.raises(RunFolderError, match="is a run folder"):
        run_demo(out / "run", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="a file is in the way"):
        run_demo(tmp_path / "file", progress=False)
