import json

import numpy as np
import pytest

from conftest import make_folder
from transferlab.config import load_config
from transferlab.data.index import DataError
from transferlab.evaluation.scoring import evaluate_run, select_eval_split
from transferlab.training.trainer import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One trained run shared by this module's tests (each evaluation rewrites its own files)."""
    tmp = tmp_path_factory.mktemp("eval")
    data = make_folder(tmp / "presplit", n=8, split_dirs=("train", "val", "test"))
    over = {"model": "scratch_cnn", "mode": "scratch", "image_size": 32, "epochs": 3, "batch_size": 4,
            "num_workers": 0, "progress": False, "augment": "none", "lr": 0.01}  # fmt: skip
    train(load_config(None, {**over, "data": str(data), "out": str(tmp / "run")}))
    return tmp / "run"


def test_evaluate_own_test_split_writes_report(trained_run):
    r = evaluate_run(trained_run)
    assert r["split"] == "test" and r["n"] == 16
    for f in ("eval.json", "report.md", "roc.png", "confusion_matrix_eval.png", "most_wrong.png"):
        assert (trained_run / f).exists(), f
    b = r["binary"]
    assert {"roc_auc", "average_precision", "eer", "threshold", "accuracy_at_threshold"} <= set(b)
    assert r["positive_class"] == "fake" and "validation" in r["threshold_source"]
    assert sum(map(sum, r["confusion_matrix"])) == 16
    assert json.loads((trained_run / "eval.json").read_text())["accuracy"] == r["accuracy"]
    assert "ROC-AUC" in (trained_run / "report.md").read_text()


def test_evaluate_other_data_maps_classes_by_name(trained_run, tmp_path):
    other = make_folder(tmp_path / "other", classes=("real", "fake"), n=5)  # same names, other order on disk
    r = evaluate_run(trained_run, other)
    assert r["split"] == "all" and r["n"] == 10
    assert (trained_run / "eval_other" / "eval.json").exists()


def test_evaluate_other_data_with_unknown_class_fails(trained_run, tmp_path):
    other = make_folder(tmp_path / "o2", classes=("cats", "dogs"), n=2)
    with pytest.raises(DataError, match="not among the model's classes"):
        evaluate_run(trained_run, other)


def test_select_eval_split_prefers_test():
    from transferlab.data.index import DataIndex, Sample

    idx = DataIndex("x", ["b", "a"], {"train": [Sample("t", 0)], "val": [Sample("v", 1)]})
    name, samples = select_eval_split(idx, ["a", "b"], own=True)
    assert name == "val" and samples[0].label == 0  # relabelled to the model's class order


def test_perturbations_get_a_table_and_a_chart(trained_run, capsys):
    r = evaluate_run(trained_run, perturb="jpeg:5,blur:3,noise:0.2", explain=2)
    shown = capsys.readouterr().err  # which perturbation runs, as it runs
    assert "perturbation 1/3: jpeg:5" in shown and "perturbation 3/3: noise:0.2" in shown
    names = [row["name"] for row in r["robustness"]]
    assert names == ["clean", "jpeg:5", "blur:3", "noise:0.2"]
    assert r["robustness"][0]["accuracy"] == r["accuracy"] and r["robustness"][0]["accuracy_drop"] == 0
    assert all(row["n"] == 16 and 0 <= row["accuracy"] <= 1 for row in r["robustness"])
    for row in r["robustness"]:  # two classes: every changed prediction turned right or wrong
        assert row["changed"] == row["right_to_wrong"] + row["wrong_to_right"]
        assert abs(row["accuracy_drop"] * 16 - (row["right_to_wrong"] - row["wrong_to_right"])) < 1e-9
    assert (trained_run / "robustness.png").exists() and (trained_run / "gradcam.png").exists()
    md = (trained_run / "report.md").read_text()
    assert "| jpeg:5 |" in md and "robustness.png" in md and "gradcam.png" in md
    assert 1 <= len(r["explained"]) <= 4


def test_perturbation_really_reaches_the_model(trained_run):
    from transferlab.data.index import read_manifest
    from transferlab.data.perturb import Perturbation
    from transferlab.predict.predictor import Predictor

    files = [s.path for s in read_manifest(trained_run / "split.csv").splits["test"]]
    clean = Predictor.from_run(trained_run, num_workers=0).predict_paths(files)
    noisy = Predictor.from_run(trained_run, num_workers=0, perturb=Perturbation("noise", 0.3)).predict_paths(files)
    import numpy as np

    logit = [
        [np.log(max(p.probs["fake"], 1e-30)) - np.log(max(p.probs["real"], 1e-30)) for p in ps] for ps in (clean, noisy)
    ]
    assert np.abs(np.subtract(*logit)).max() > 0.01  # saturated probabilities hide it; logits do not


def test_class_map_for_differently_named_folders(trained_run, tmp_path):
    other = make_folder(tmp_path / "gan", classes=("0_real", "1_fake"), n=4)
    with pytest.raises(DataError, match="--classes"):
        evaluate_run(trained_run, other)
    r = evaluate_run(trained_run, other, class_map={"real": "0_real", "fake": "1_fake"}, explain=0)
    assert r["n"] == 8 and r["class_map"] == {"real": "0_real", "fake": "1_fake"}
    assert sorted(r["per_class"]) == ["fake", "real"] and all(c["support"] == 4 for c in r["per_class"].values())
    from transferlab.evaluation.scoring import parse_class_map

    with pytest.raises(DataError, match="MODEL_CLASS=DATA_FOLDER"):
        parse_class_map("real:0_real")
    with pytest.raises(DataError, match="maps 'real' twice"):
        parse_class_map("real=0_real,real=1_fake")
    with pytest.raises(DataError, match=r"maps \['real', 'fake'\] to the same data folder \['0_real'\]"):
        evaluate_run(trained_run, other, class_map={"real": "0_real", "fake": "0_real"})
    with pytest.raises(DataError, match="not the model's classes"):
        evaluate_run(trained_run, other, class_map={"cat": "0_real"})


def test_tta_averages_the_image_and_its_mirror(trained_run):
    from PIL import ImageOps

    from transferlab.data.images import load_rgb
    from transferlab.data.index import read_manifest
    from transferlab.predict.predictor import Predictor

    r = evaluate_run(trained_run, tta=True, explain=0)
    assert r["decision"]["tta"] is True and r["n"] == 16
    paths = [s.path for s in read_manifest(trained_run / "split.csv").splits["test"][:4]]
    tta = Predictor.from_run(trained_run, tta=True).predict(paths)
    plain = Predictor.from_run(trained_run)
    for path, p in zip(paths, tta):
        im = load_rgb(path)
        a, b = plain.predict([im])[0].probs, plain.predict([ImageOps.mirror(im)])[0].probs
        assert p.probs == pytest.approx({c: (a[c] + b[c]) / 2 for c in a}, abs=1e-5)


def test_robustness_counts_changed_predictions_both_ways():
    from transferlab.data.index import Sample
    from transferlab.data.perturb import Perturbation
    from transferlab.evaluation.scoring import robustness
    from transferlab.metrics import classification_report
    from transferlab.predict.decision import Prediction

    labels = [0, 0, 0, 1, 1, 1]
    clean_guess, jpeg_guess = [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 1, 0]  # 2 turn wrong, 1 turns right

    class Stub:
        classes, perturb = ["fake", "real"], None

        def predict_paths(self, paths):
            guess = clean_guess if self.perturb is None else jpeg_guess
            return [
                Prediction(p, self.classes[g], {"fake": 0.9 - 0.8 * g, "real": 0.1 + 0.8 * g})
                for p, g in zip(paths, guess)
            ]

    samples = [Sample(f"img{i}.png", y) for i, y in enumerate(labels)]
    probs = np.array([[0.9 - 0.8 * g, 0.1 + 0.8 * g] for g in clean_guess])
    clean = classification_report(np.array(labels), probs, Stub.classes, 0)
    rows = robustness(
        Stub(), samples, [Perturbation("jpeg", 75)], 0, None, clean, {s.path: g for s, g in zip(samples, clean_guess)}
    )
    assert rows[1]["changed"] == 3 and rows[1]["right_to_wrong"] == 2 and rows[1]["wrong_to_right"] == 1
    assert abs(rows[1]["accuracy_drop"] - 1 / 6) < 1e-9  # the drop shows only the net 2 - 1
    assert rows[1]["threshold_drop"] is None  # no saved threshold, no drop at it


def test_robustness_drop_at_the_saved_threshold_is_the_verdicts():
    from transferlab.data.index import Sample
    from transferlab.data.perturb import Perturbation
    from transferlab.evaluation.scoring import robustness
    from transferlab.metrics import classification_report
    from transferlab.predict.decision import Prediction

    labels = np.array([0, 0, 0, 1, 1, 1])  # positive (fake) = 0
    clean_fake = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    jpeg_fake = np.array([0.55, 0.45, 0.3, 0.35, 0.2, 0.1])  # argmax: 2 fakes turn real, 1 real turns right

    class Stub:
        classes, perturb = ["fake", "real"], None

        def predict_paths(self, paths):
            p = clean_fake if self.perturb is None else jpeg_fake
            return [Prediction(path, "fake", {"fake": q, "real": 1 - q}) for path, q in zip(paths, p)]

    samples = [Sample(f"img{i}.png", int(y)) for i, y in enumerate(labels)]
    probs = np.stack([clean_fake, 1 - clean_fake], 1)
    clean = classification_report(labels, probs, Stub.classes, 0, 0.4)
    rows = robustness(Stub(), samples, [Perturbation("jpeg", 75)], 0, 0.4, clean)
    assert rows[0]["accuracy_at_threshold"] == pytest.approx(5 / 6)  # 0.6 >= 0.4: one real called fake
    assert rows[1]["accuracy_at_threshold"] == pytest.approx(5 / 6)  # 0.45 stays fake; 0.3 and 0.35 turn real
    assert rows[1]["accuracy_drop"] == pytest.approx(1 / 6) and rows[1]["threshold_drop"] == pytest.approx(0)
    assert rows[0]["threshold_drop"] == 0


def test_scores_are_given_again_without_the_files_one_class_saved_differently(tmp_path):
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from transferlab.data.index import Sample
    from transferlab.evaluation.scoring import saved_differently

    rng = np.random.default_rng(0)
    samples, labels = [], []
    for i in range(20):  # class 0 "fake": 6 of 10 re-saved at quality 60; class 1 "real": all at 90
        label = int(i >= 10)
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, quality=60 if i < 6 else 90)
        samples.append(Sample(str(path), label))
        labels.append(label)
    labels = np.array(labels)
    p_fake = rng.uniform(0, 1, 20)
    p_fake[:6] = 0.95  # the re-saved fakes are the easy ones
    probs = np.stack([p_fake, 1 - p_fake], 1)
    (cut,) = saved_differently(samples, labels, probs, ["fake", "real"], 0, 0.5)
    assert (cut["trait"], cut["class"], cut["count"], cut["total"]) == ("jpeg_tables", "fake", 6, 10)
    y = labels == 0
    without, only = np.arange(6, 20), np.r_[0:6, 10:20]
    assert cut["without"]["n"] == 14 and cut["only"]["n"] == 16
    assert cut["without"]["roc_auc"] == pytest.approx(roc_auc_score(y[without], p_fake[without]))
    assert cut["only"]["roc_auc"] == pytest.approx(roc_auc_score(y[only], p_fake[only]))
    assert cut["only"]["roc_auc"] > cut["without"]["roc_auc"]
    acc = ((p_fake[without] >= 0.5) == y[without]).mean()
    assert cut["without"]["accuracy_at_threshold"] == pytest.approx(acc)


def test_evaluate_names_files_saved_differently_and_scores_without_them(trained_run, tmp_path):
    from PIL import Image

    other = make_folder(tmp_path / "other", n=5)
    for png in sorted((other / "fake").glob("*.png"))[:4]:  # 4 of 5 fakes become JPEG files; reals stay PNG
        Image.open(png).save(png.with_suffix(".jpg"), quality=95)
        png.unlink()
    r = evaluate_run(trained_run, other, explain=0)
    (cut,) = r["saved_differently"]
    assert (cut["trait"], cut["class"], cut["count"], cut["total"]) == ("format", "fake", 4, 5)
    assert cut["without"]["n"] == 6 and cut["only"]["n"] == 9
    report = (trained_run / "eval_other" / "report.md").read_text()
    assert "**saved differently**: 4 of 5 'fake' files (80%) have file format" in report
    assert "without those files (6 images): ROC-AUC" in report
    from transferlab.reports.html import _eval_section

    page = "".join(_eval_section(trained_run / "eval_other", r))
    assert "Files saved differently" in page and 'fake: without those files</td><td class="n">6<' in page
    assert evaluate_run(trained_run, explain=0)["saved_differently"] == []  # all PNG: nothing to say


def test_a_run_whose_data_moved_is_named_not_scored_on_nothing(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data = trained_run.parent / "presplit"
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    try:
        with pytest.raises(DataError, match=r"none of the 16 images to score could be read \(e\.g\. .*presplit.*"):
            evaluate_run(run, explain=0)
    finally:
        shutil.move(moved, data)
