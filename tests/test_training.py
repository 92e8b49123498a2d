import csv
import json
import os

import pytest
import torch
import yaml

from conftest import HYMENOPTERA
from transferlab.config import ConfigError, load_config
from transferlab.data.index import DataError
from transferlab.models.checkpoint import load_checkpoint
from transferlab.models.transfer import create_model
from transferlab.training.trainer import train

RUN_FILES = {
    "config.yaml",
    "split.csv",
    "metrics.csv",
    "best.pt",
    "last.pt",
    "curves.png",
    "confusion_matrix.png",
    "val_predictions.png",
    "summary.json",
    "report.html",
}


def test_run_folder_is_self_describing(tiny_folder, tmp_path, fast_overrides):
    cfg = load_config(None, {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / "run")})
    res = train(cfg)
    run = tmp_path / "run"
    assert set(os.listdir(run)) >= RUN_FILES
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(rows[0])
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["classes"] == ["fake", "real"] and ckpt["backbone"] == "scratch_cnn"
    assert ckpt["preprocess"]["input_size"] == 32 and ckpt["config"]["mode"] == "scratch"
    assert ckpt["positive_class"] == "fake"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == res.best_epoch and summary["data"]["counts"]["val"] == {"fake": 2, "real": 2}
    assert any("carved" in n for n in summary["data"]["notes"])
    assert 0 < summary["time_to_best_seconds"] <= summary["wall_seconds"]


@pytest.mark.parametrize("classes, expected", [(("fake", "real"), "robust"), (("ants", "bees"), "light")])
def test_auto_augment_resolves_by_class_names_and_is_recorded(tmp_path, fast_overrides, classes, expected):
    from conftest import make_folder

    root = make_folder(tmp_path / "data", classes=classes, n=6)
    cfg = load_config(
        None, {**fast_overrides, "augment": "auto", "epochs": 1, "data": str(root), "out": str(tmp_path / "run")}
    )
    train(cfg)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["augment"] == expected
    notes = json.loads((tmp_path / "run" / "summary.json").read_text())["data"]["notes"]
    assert any(f"augment auto -> {expected}" in n for n in notes)


def test_messy_folder_trains_and_names_every_skipped_file(messy_folder, tmp_path, fast_overrides, capsys):
    root, bad = messy_folder
    cfg = load_config(
        None, {**fast_overrides, "data": str(root), "out": str(tmp_path / "run"), "num_workers": 2, "val_fraction": 0.3}
    )
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    skipped = {os.path.basename(s["path"]): s["reason"] for s in summary["data"]["skipped"]}
    # truncated/corrupt files are only found when decoded: they may land in train or val,
    # either way they are skipped and named
    assert set(bad) == set(skipped), skipped
    for name, word in bad.items():
        assert word in skipped[name]
    assert summary["data"]["skipped_count"] == 4
    out = capsys.readouterr().out
    assert all(name in out for name in bad)


def test_resume_continues_from_last(tiny_folder, tmp_path, fast_overrides):
    over = {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / "run"), "scheduler": "step", "epochs": 2}
    train(load_config(None, over))
    first = load_checkpoint(tmp_path / "run" / "last.pt")
    res = train(resume=tmp_path / "run", overrides={"epochs": 4})
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 4 and len(last["fit_state"]["history"]) == 4
    assert first["optimizer"]["state"]  # optimizer state was saved and carried
    assert res.summary["epochs_run"] == 4


def test_resume_refuses_to_stretch_onecycle(tiny_folder, tmp_path, fast_overrides):
    train(load_config(None, {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / "run")}))
    with pytest.raises(ConfigError, match="cannot change epochs"):
        train(resume=tmp_path / "run", overrides={"epochs": 5})


def test_missing_weights_fail_before_anything_is_written(tiny_folder, tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline"))
    )
    from transferlab.models.weights import WeightsUnavailable

    with pytest.raises(WeightsUnavailable):
        train(
            load_config(
                None, {"data": str(tiny_folder), "out": str(tmp_path / "run"), "model": "resnet18", "mode": "finetune"}
            )
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe, features", [("classic", "last"), ("detect", "stages")])
def test_features_mode_trains_only_the_head(tiny_folder, tmp_path, fast_overrides, recipe, features):
    over = {
        **fast_overrides,
        "data": str(tiny_folder),
        "out": str(tmp_path / "run"),
        "model": "efficientnet_lite0",
        "mode": "features",
        "image_size": 32,
        "recipe": recipe,
    }
    res = train(load_config(None, over))
    assert res.summary["features"] == features and res.summary["head"] == ("sgd" if recipe == "classic" else "logistic")

    assert res.summary["zoom"] == (1 if recipe == "classic" else 2)  # the detect recipe adds the centre view
    ref = create_model("efficientnet_lite0", 2, pretrained=True, features=features, zoom=res.summary["zoom"])
    got = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    body = {k: v for k, v in got.items() if k.startswith("body.")}
    assert body and all(torch.equal(v, ref.state_dict()[k]) for k, v in body.items())
    assert not torch.equal(got["head.weight"], ref.state_dict()["head.weight"])


def test_the_logistic_head_gives_each_stage_of_each_view_an_equal_share_unless_told_not_to(
    tiny_folder, tmp_path, fast_overrides
):
    from transferlab.training.logistic import block_weights

    over = {**fast_overrides, "data": str(tiny_folder), "model": "efficientnet_lite0", "mode": "features"}
    runs = {}
    for balance in (True, False):  # the second run reads the first one's cached features
        out = tmp_path / f"run_{balance}"
        res = train(load_config(None, {**over, "image_size": 32, "out": str(out), "stage_balance": balance}))
        assert res.summary["head"] == "logistic" and res.summary["zoom"] == 2
        assert res.summary["logistic"]["blocks"] == (18 if balance else 1)  # 9 stages x 2 views
        assert any("18 stage blocks given equal shares" in n for n in res.summary["data"]["notes"]) == balance
        runs[balance] = load_checkpoint(out / "best.pt")["model"]
    # the same standardisation, with each block's factor folded into the saved scale
    pool = res.summary["pool"]  # the detect recipe's statistics: each stage's block holds all of them
    blocks = create_model(
        "efficientnet_lite0", 2, pretrained=False, features="stages", zoom=2, pool=pool
    ).feature_blocks
    w = torch.from_numpy(block_weights(blocks, sum(blocks))).float()
    assert torch.equal(runs[True]["feature_norm.mean"], runs[False]["feature_norm.mean"])
    assert torch.allclose(runs[True]["feature_norm.scale"] * w, runs[False]["feature_norm.scale"], rtol=1e-5)
    assert not torch.allclose(runs[True]["feature_norm.scale"], runs[False]["feature_norm.scale"])


def test_the_invariance_prior_is_applied_to_augmented_views_and_said_so(tiny_folder, tmp_path, fast_overrides):
    over = {**fast_overrides, "data": str(tiny_folder), "model": "efficientnet_lite0", "mode": "features"}
    over |= {"image_size": 32, "augment": "light", "feature_views": 2}
    heads = {}
    for mu in (0.0, 1.0):  # the second run reads the first one's cached features
        res = train(load_config(None, {**over, "out": str(tmp_path / f"run_{mu}"), "invariance": mu}))
        assert res.summary["logistic"]["invariance"] == mu
        assert any("against what the augmented views move" in n for n in res.summary["data"]["notes"]) == bool(mu)
        heads[mu] = load_checkpoint(tmp_path / f"run_{mu}" / "best.pt")["model"]["head.weight"]
    assert not torch.allclose(heads[0.0], heads[1.0])
    # no augmented views: nothing to be invariant to, and the run says so
    res = train(load_config(None, {**over, "augment": "none", "out": str(tmp_path / "plain"), "invariance": 1.0}))
    assert res.summary["logistic"]["invariance"] == 0.0
    assert any("invariance 1 not applied" in n for n in res.summary["data"]["notes"])


def test_the_logistic_head_keeps_the_manifests_groups_in_one_fold(tiny_folder, tmp_path, fast_overrides):
    """A split made with --groups names each pair in its manifest; the head's cross-validation
    keeps every pair in one fold (recorded in the summary and the run's notes)."""
    from transferlab.data.split import SplitSpec, split_folder

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_a,file_b\n" + "".join(f"fake/fake_{i:02d}.png,real/real_{i:02d}.png\n" for i in range(4)))
    index, _ = split_folder(tiny_folder, tmp_path / "split", SplitSpec(train_per_class=6, val_per_class=2), pairs)
    paired = sum(1 for s in index.splits["train"] if s.group)
    assert paired and paired % 2 == 0
    over = {**fast_overrides, "data": str(tmp_path / "split" / "split.csv"), "out": str(tmp_path / "run")}
    res = train(load_config(None, {**over, "model": "efficientnet_lite0", "mode": "features", "image_size": 32}))
    assert res.summary["head"] == "logistic"
    assert res.summary["logistic"]["fold_units"] == 12 - paired // 2
    assert any("the manifest's groups kept whole" in n for n in res.summary["data"]["notes"])


def test_groups_on_a_flat_folder_keep_pairs_on_one_side_and_in_one_fold(tiny_folder, tmp_path, fast_overrides):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_a,file_b\n" + "".join(f"fake/fake_{i:02d}.png,real/real_{i:02d}.png\n" for i in range(6)))
    over = {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / "run"), "groups": str(pairs)}
    res = train(load_config(None, {**over, "model": "efficientnet_lite0", "mode": "features", "image_size": 32}))
    notes = res.summary["data"]["notes"]
    assert any("groups: 12 images in 6 groups" in n for n in notes) and any("groups kept whole" in n for n in notes)
    with open(tmp_path / "run" / "split.csv") as f:
        rows = list(csv.DictReader(f))
    side = {}
    for r in rows:
        if r["group"]:
            side.setdefault(r["group"], set()).add(r["split"])
    assert len(side) == 6 and all(len(v) == 1 for v in side.values())
    in_train = [g for g, v in side.items() if v == {"train"}]
    n_train = sum(1 for r in rows if r["split"] == "train")
    assert res.summary["logistic"]["fold_units"] == n_train - len(in_train)


def test_a_pairs_file_in_the_data_folder_that_the_run_does_not_use_is_pointed_out(tiny_folder, tmp_path):
    from transferlab.config import PAIRS_FILE
    from transferlab.training.trainer import prepare_data

    pairs = tiny_folder / PAIRS_FILE
    pairs.write_text("file_a,file_b\nfake/fake_00.png,real/real_00.png\n")
    cfg = {"data": str(tiny_folder), "out": str(tmp_path / "run")}
    _, notes = prepare_data(load_config(None, cfg))
    assert any(n.startswith("warning:") and f"add --groups {pairs}" in n for n in notes)
    _, notes = prepare_data(load_config(None, {**cfg, "groups": str(pairs)}))
    assert not any("does not use" in n for n in notes) and any("groups: 2 images in 1 groups" in n for n in notes)


@pytest.mark.parametrize(
    "content, error, match",
    [
        (None, DataError, "cannot be read"),
        (b"\xff\xfe,\x00", DataError, r"cannot be read \(not UTF-8 text\)"),
        (b"file_a,file_b\nfake/nothing.png,real/none.png\n", ConfigError, "names none"),
    ],
)
def test_a_groups_file_that_is_missing_or_names_no_image_is_refused(tiny_folder, tmp_path, content, error, match):
    pairs = tmp_path / "pairs.csv"
    if content is not None:
        pairs.write_bytes(content)
    cfg = load_config(None, {"data": str(tiny_folder), "out": str(tmp_path / "run"), "groups": str(pairs)})
    with pytest.raises(error, match=match):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_image_size_below_minimum_is_refused(tiny_folder, tmp_path, fast_overrides):
    with pytest.raises(ConfigError, match="smallest input"):
        train(
            load_config(
                None,
                {
                    **fast_overrides,
                    "data": str(tiny_folder),
                    "out": str(tmp_path / "r"),
                    "model": "inception_v3",
                    "image_size": 64,
                },
            )
        )


@pytest.mark.data
@pytest.mark.slow
def test_hymenoptera_features_mode_reaches_target(tmp_path):
    if not HYMENOPTERA.exists():
        pytest.skip(f"{HYMENOPTERA} missing")
    cfg = load_config(
        None,
        {"data": str(HYMENOPTERA), "out": str(tmp_path / "run"), "mode": "features", "epochs": 4, "progress": False},
    )
    res = train(cfg)
    assert res.best_val_acc >= 0.93
    assert res.summary["data"]["counts"]["val"] == {"ants": 70, "bees": 83}


def test_batchnorm_frozen_only_in_finetune_by_default(monkeypatch):
    from transferlab.models.registry import get_spec
    from transferlab.training.trainer import build_model

    monkeypatch.setattr(get_spec("resnet18").weights.__class__, "load_into", lambda self, net, n: None)
    ft = build_model(load_config(None, {"model": "resnet18", "mode": "finetune"}), 2).train()
    sc = build_model(load_config(None, {"model": "resnet18", "mode": "scratch"}), 2).train()
    assert not ft.body.bn1.training and sc.body.bn1.training
    ft2 = build_model(load_config(None, {"model": "resnet18", "mode": "finetune", "freeze_bn": False}), 2).train()
    assert ft2.body.bn1.training


@pytest.mark.parametrize("recipe", ["classic", "detect"])
def test_lpft_probes_then_finetunes_and_saves_calibration(tiny_folder, tmp_path, fast_overrides, capsys, recipe):
    over = {
        **fast_overrides,
        "data": str(tiny_folder),
        "out": str(tmp_path / "run"),
        "model": "efficientnet_lite0",
        "mode": "lpft",
        "lp_epochs": 3,
        "epochs": 2,
        "image_size": 32,
        "lr": None,
        "recipe": recipe,
    }
    res = train(load_config(None, over))
    out = capsys.readouterr().out
    if recipe == "classic":  # lp_epochs of SGD on the last stage's features
        assert out.count("/3  train loss") == 3 and "then fine-tuning everything" in out
    else:  # the logistic head on stage features, then fine-tuning through every stage
        assert "lpft: logistic head on cached stages features" in out and res.summary["features"] == "stages"

    ref = create_model("efficientnet_lite0", 2, pretrained=True, features=res.summary["features"]).state_dict()
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    body = [
        k
        for k in best["model"]
        if k.startswith("body.") and best["model"][k].is_floating_point() and "running" not in k
    ]
    assert any(not torch.equal(best["model"][k], ref[k]) for k in body)  # the body was fine-tuned too
    assert res.summary["params"]["trainable"] == res.summary["params"]["total"]
    cal = res.summary["calibration"]
    assert best["temperature"] == cal["temperature"] > 0 and best["threshold"] == cal["threshold"]
    assert cal["threshold_rule"] == "eer" and cal["positive_class"] == "fake"
    assert any(n.startswith("lpft: ") for n in res.summary["data"]["notes"])


def test_threshold_rule_fpr_and_argmax_are_saved(tiny_folder, tmp_path, fast_overrides):
    r = train(
        load_config(
            None,
            {
                **fast_overrides,
                "data": str(tiny_folder),
                "out": str(tmp_path / "a"),
                "threshold": "argmax",
                "calibrate": False,
            },
        )
    )
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    assert best["threshold"] is None and best["temperature"] == 1.0 and r.summary["calibration"]["temperature"] == 1.0
    with pytest.raises(ConfigError, match="fpr:RATE"):
        load_config(None, {"threshold": "fpr:2"})


def test_threshold_perturb_fits_the_threshold_on_the_validation_images_clean_and_perturbed(
    tiny_folder, tmp_path, fast_overrides, capsys
):
    """The saved threshold is the equal-error point of the validation scores clean and under each
    perturbation pooled: recomputed here from the saved model scoring the files itself."""
    import numpy as np

    from transferlab.data.index import load_index
    from transferlab.data.perturb import parse_perturbations
    from transferlab.predict.predictor import Predictor
    from transferlab.training.calibration import calibrate, threshold_perturbations

    out = tmp_path / "run"
    over = {**fast_overrides, "data": str(tiny_folder), "out": str(out), "threshold_perturb": "blur:3,noise:0.2"}
    res = train(load_config(None, over))
    cal = res.summary["calibration"]
    assert cal["threshold_fitted_on"] == ["clean", "blur:3", "noise:0.2"]
    assert load_checkpoint(out / "best.pt")["threshold"] == cal["threshold"]
    assert "clean + blur:3, noise:0.2; clean alone" in capsys.readouterr().out

    val = load_index(out / "split.csv", verify=False).splits["val"]
    labels = np.array([s.label for s in val])
    pred = Predictor.from_run(out, temperature=1.0)
    scored = {}
    for p in [None, *parse_perturbations("blur:3,noise:0.2")]:
        pred.perturb = p
        scored[p.name if p else "clean"] = np.array(
            [list(q.probs.values()) for q in pred.predict_paths([s.path for s in val])]
        )
    assert not np.allclose(scored["clean"], scored["noise:0.2"])  # the perturbations change the scores
    again = calibrate(
        labels,
        scored["clean"],
        res.summary["data"]["classes"],
        res.summary["data"]["classes"].index(pred.positive_class),
        "eer",
        None,
        perturbed=[(k, labels, v) for k, v in scored.items() if k != "clean"],
    )
    assert again["threshold"] == pytest.approx(cal["threshold"], abs=1e-4)
    assert again["threshold_clean"] == pytest.approx(cal["threshold_clean"], abs=1e-4)
    assert abs(cal["threshold"] - cal["threshold_clean"]) > 1e-3  # here the perturbed copies move it
    from transferlab.evaluation.scoring import evaluate_run

    ev = evaluate_run(out, explain=0, out=tmp_path / "eval")
    assert ev["threshold_source"] == "saved with the model (eer on the validation split, clean + blur:3, noise:0.2)"
    # none (any case) or unset: the clean scores alone; a bad perturbation names the setting
    assert threshold_perturbations("None") == threshold_perturbations(None) == []
    with pytest.raises(ConfigError, match="threshold_perturb: perturbation 'jpeg:500'"):
        train(load_config(None, {**over, "out": str(tmp_path / "bad"), "threshold_perturb": "jpeg:500"}))
    assert not (tmp_path / "bad").exists()


def test_resume_refuses_settings_the_checkpoint_was_not_made_with(tiny_folder, tmp_path, fast_overrides):
    over = {**fast_overrides, "data": str(tiny_folder), "out": str(tmp_path / "run"), "scheduler": "step", "epochs": 1}
    train(load_config(None, over))
    for changes, says in [
        ({"model": "resnet18", "image_size": 64}, r"cannot change model \('scratch_cnn' -> 'resnet18'\), image_size"),
        ({"lr": 0.5}, r"cannot change lr"),
        ({"out": str(tmp_path / "elsewhere")}, r"cannot change out"),
    ]:
        with pytest.raises(ConfigError, match=says):
            train(resume=tmp_path / "run", overrides={"epochs": 2, **changes})
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1  # refused before any epoch
    free = {"epochs": 2, "num_workers": 0, "progress": False, "out": over["out"]}  # how it runs, not what it trains
    res = train(resume=tmp_path / "run", overrides=free)
    assert res.summary["epochs_run"] == 2 and res.summary["backbone"] == fast_overrides["model"]
