import shutil
from pathlib import Path

import pytest
from PIL import Image

from transferlab.config import load_config
from transferlab.data.index import expand_inputs
from transferlab.predict.predictor import Predictor
from transferlab.training.trainer import train


@pytest.fixture
def run_dir(tiny_folder, tmp_path_factory, fast_overrides):
    out = tmp_path_factory.mktemp("pred") / "run"
    train(load_config(None, {**fast_overrides, "data": str(tiny_folder), "out": str(out), "epochs": 4}))
    return out


def test_predict_paths_and_pil(run_dir, tiny_folder, messy_folder):
    pred = Predictor.from_run(run_dir, num_workers=0)
    root, _ = messy_folder
    files = [str(tiny_folder / "fake" / "fake_00.png"), str(root / "real" / "notes.jpg")]
    out = pred.predict([files[0], Image.open(files[0]), files[1]])
    assert len(out) == 3
    assert out[0].label in pred.classes and abs(sum(out[0].probs.values()) - 1) < 1e-5
    assert out[0].probs == pytest.approx(out[1].probs, abs=1e-5)  # file and PIL agree
    assert out[2].label is None and "not an image" in out[2].error


def test_predictions_match_training_labels(run_dir, tiny_folder):
    pred = Predictor.from_run(run_dir, num_workers=0)
    files = sorted(str(p) for p in tiny_folder.rglob("*.png"))
    res = pred.predict_paths(files)
    acc = sum(r.label in r.path.rsplit("/", 1)[-1] for r in res) / len(res)
    assert acc >= 0.8  # striped classes are easy; a broken pipeline would sit near 0.5


def test_threshold_changes_the_verdict(run_dir, tiny_folder):
    pred = Predictor.from_run(run_dir, num_workers=0)
    img = str(tiny_folder / "real" / "real_01.png")
    p_fake = pred.predict([img])[0].probs["fake"]
    pred.positive_class = "fake"
    pred.threshold = p_fake - 1e-6
    assert pred.predict([img])[0].label == "fake"
    pred.threshold = p_fake + 1e-6
    assert pred.predict([img])[0].label == "real"


def test_expand_inputs(tiny_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs(
        [
            tiny_folder / "fake",
            str(tiny_folder / "real" / "*.png"),
            tmp_path / "missing.jpg",
            tmp_path / "empty",
            tiny_folder,
        ]
    )
    assert len(files) == 20  # the last argument repeats the first two: no duplicates
    assert {p for p, _ in problems} == {str(tmp_path / "missing.jpg"), str(tmp_path / "empty")}


def test_expand_inputs_names_broken_links_in_folders_and_arguments(tiny_folder, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_folder / "fake", folder)
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loose.png").symlink_to(tmp_path / "nowhere.png")
    files, problems = expand_inputs([folder, tmp_path / "loose.png"])
    assert len(files) == 10 and all(Path(f).is_file() for f in files)
    assert problems == [
        (str(folder / "gone.jpg"), "broken or looping symbolic link"),
        (str(tmp_path / "loose.png"), "broken or looping symbolic link"),
    ]


def test_predict_shows_a_bar_on_a_terminal_only(run_dir, tiny_folder, monkeypatch, capsys):
    """A progress bar for more than one batch, on a terminal; none in a pipe (tqdm's own check)."""
    import io
    import sys

    files = sorted(str(p) for p in tiny_folder.rglob("*.png"))
    pred = Predictor.from_run(run_dir, num_workers=0, batch_size=4, progress=True)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((Tty(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert len(pred.predict_paths(files)) == len(files)
        assert ("predict" in stream.getvalue()) == shown


def test_the_predictor_scores_through_a_folded_body_and_explains_the_original():
    import torch

    from transferlab.models.registry import get_spec
    from transferlab.models.transfer import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2, pretrained=True, features="stages").eval()
    norms = [m for m in model.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    pre = get_spec("efficientnet_lite0").preprocess(64)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want = model(x).softmax(1).numpy()
    pred = Predictor(model, ["fake", "real"], pre.to_dict(), device="cpu")
    scoring = pred.scorer.model
    assert scoring is not pred.model and scoring.head is pred.model.head  # a twin sharing the head
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in scoring.body.modules())  # folded
    assert [m for m in pred.model.body.modules() if isinstance(m, torch.nn.BatchNorm2d)] == norms  # kept for Grad-CAM
    assert abs(pred.predict_tensor(x) - want).max() < 1e-4


def test_predict_that_predicts_nothing_exits_2_and_writes_nothing(run_dir, tmp_path, capsys):
    from transferlab.cli import main

    (tmp_path / "a.jpg").write_text("not an image")
    (tmp_path / "b.png").write_bytes(b"")
    out = tmp_path / "p.csv"
    assert main(["predict", str(run_dir), str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "--csv", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing predicted: ") and "a.jpg: unreadable: not an image" in err
    assert err.strip().endswith("(and 1 more)") and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["predict", str(run_dir), str(tmp_path / "*.webp")]) == 2  # a glob that matched nothing
    assert "nothing predicted" in capsys.readouterr().err
    (tmp_path / "c.png").write_bytes(b"")
    Image.new("RGB", (40, 40)).save(tmp_path / "good.png")
    assert main(["predict", str(run_dir), str(tmp_path / "a.jpg"), str(tmp_path / "good.png")]) == 0  # one is enough
