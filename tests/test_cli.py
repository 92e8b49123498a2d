"""CLI smoke tests: split -> train -> evaluate -> predict on tiny images, through main()."""

import csv
import json
import subprocess
import sys
import urllib.error

import pytest
import torch

from conftest import cli_flags
from transferlab.cli import main


def test_split_train_evaluate_predict(tiny_folder, tmp_path, capsys):
    assert (
        main(
            [
                "split",
                str(tiny_folder),
                "--out",
                str(tmp_path / "split"),
                "--train-per-class",
                "6",
                "--val-per-class",
                "2",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    manifest = tmp_path / "split" / "split.csv"
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(manifest),
                *cli_flags(epochs=2, augment=None, lr=None),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (run / "best.pt").exists()
    assert main(["evaluate", str(run)]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["split"] == "test" and report["n"] == 4
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(run),
                str(tiny_folder / "fake"),
                str(tmp_path / "nope.jpg"),
                "--csv",
                str(tmp_path / "p.csv"),
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "fake_00.png" in out and "nope.jpg" in err
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 10 and {"p_fake", "p_real", "prediction"} <= set(rows[0])
    js = json.loads((tmp_path / "p.json").read_text())
    assert js["classes"] == ["fake", "real"] and len(js["predictions"]) == 10


def test_train_with_yaml_config(tiny_folder, tmp_path):
    (tmp_path / "c.yaml").write_text(
        "model: scratch_cnn\nmode: scratch\nepochs: 1\nimage_size: 32\nnum_workers: 0\nprogress: false\n"
    )
    assert main(["train", str(tiny_folder), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 0
    assert "epochs: 1" in (tmp_path / "r" / "config.yaml").read_text()


def test_offline_pretrained_resnet_fails_fast_with_fix(tiny_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline"))
    )
    rc = main(["train", str(tiny_folder), "--model", "resnet18", "--mode", "finetune", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "resnet18-f37072fd.pth" in err and "--weights" in err
    assert not (tmp_path / "r").exists()


def test_weights_file_works_for_resnet18(tiny_folder, tmp_path):
    from transferlab.models.registry import get_spec

    torch.save(get_spec("resnet18").build().state_dict(), tmp_path / "r18.pth")
    assert (
        main(
            [
                "train",
                str(tiny_folder),
                "--model",
                "resnet18",
                "--mode",
                "finetune",
                "--weights",
                str(tmp_path / "r18.pth"),
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--num-workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )


def test_user_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--mode", "fintune"]) == 2
    assert "did you mean 'finetune'" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--model", "resnet181"]) == 2
    assert "resnet18" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["predict", "RUN", "x.png", "--batch-size", "0"], "argument --batch-size: 0 is below 1"),
        (["predict", "RUN", "x.png", "--batch-size", "two"], "argument --batch-size: 'two' is not a whole number"),
        (["evaluate", "RUN", "--explain", "-1"], "argument --explain: -1 is below 0"),
        (["serve", "RUN", "--port", "99999"], "argument --port: 99999 is outside 0-65535"),
        (["serve", "RUN", "--max-mb", "nan"], "argument --max-mb: nan is not a finite number above 0"),
        (["serve", "RUN", "--queue", "0"], "argument --queue: 0 is below 1"),
        (["split", "DATA", "--out", "O", "--train-per-class", "-2"], "argument --train-per-class: -2 is below 1"),
        (["export", "RUN", "--tolerance", "-1"], "argument --tolerance: -1 is not a finite number above 0"),
        (["demo", "--epochs", "0"], "argument --epochs: 0 is below 1"),
    ],
)
def test_numbers_out_of_range_are_usage_errors_naming_the_flag(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, names",
    [
        (["train", "DATA", "--out", ""], "--out"),
        (["train", "", "--out", "x"], "DATA"),
        (["predict", "RUN", "a.png", ""], "PATHS"),
        (["predict", "RUN", "a.png", "--csv", ""], "--csv"),
        (["evaluate", ""], "RUN"),
        (["split", "DATA", "--out", ""], "--out"),
        (["crosseval", "A", "", "--out", "x"], "DATA"),
        (["demo", "--out", ""], "--out"),
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    says = f"error: {names}: an empty path (an unset variable?); give a file or folder\n"
    assert capsys.readouterr().err == says
    assert list(tmp_path.iterdir()) == []  # nothing read, nothing written


def test_models_lists_registry_with_status(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "bundled" in out and "scratch_cnn" in out


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "transferlab.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "predict" in res.stdout


def test_saved_threshold_decides_the_cli_verdict(tiny_folder, tmp_path, capsys):
    from transferlab.models.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tiny_folder),
                *cli_flags(epochs=2, lr=None),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["threshold"] is not None and ckpt["positive_class"] == "fake"  # saved by training
    img = str(tiny_folder / "real" / "real_03.png")

    def verdict(threshold):
        save_checkpoint({**ckpt, "threshold": threshold}, run / "best.pt")
        assert main(["predict", str(run), img, "--json", str(tmp_path / "p.json")]) == 0
        js = json.loads((tmp_path / "p.json").read_text())
        assert js["threshold"] == threshold
        return js["predictions"][0]["label"], js["predictions"][0]["probs"]["fake"]

    _, p_fake = verdict(ckpt["threshold"])
    assert verdict(p_fake - 1e-4)[0] == "fake"
    assert verdict(min(p_fake + 1e-4, 1.0))[0] == "real"
    assert f"fake if P(fake) >= {p_fake - 1e-4:.4f}" in capsys.readouterr().out.replace(
        f"{p_fake + 1e-4:.4f}", ""
    )  # the rule is printed


def test_predict_explain_and_evaluate_perturb(tiny_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tiny_folder),
                *cli_flags(epochs=1, augment=None, lr=None),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert main(["predict", str(run), str(tiny_folder / "fake"), "--explain", str(tmp_path / "cams"), "--tta"]) == 0
    assert len(list((tmp_path / "cams").glob("*.png"))) == 10
    capsys.readouterr()
    assert main(["evaluate", str(run), "--perturb", "jpeg:50,blur:1", "--explain", "0"]) == 0
    out = capsys.readouterr().out
    assert "jpeg:50" in out and "blur:1" in out
    assert main(["evaluate", str(run), "--perturb", "jpeg:500"]) == 2  # a bad --perturb stops with a message
    assert "out of range" in capsys.readouterr().err


def test_a_stray_key_error_is_reported_as_a_bug_not_as_bad_input(monkeypatch, capsys, tmp_path):
    import transferlab.cli as cli

    monkeypatch.setattr(cli, "_cmd_models", lambda args: {}["model"])  # a bug: a lookup that misses
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert "unexpected KeyError: model" in err and "bug in transferlab" in err
    # an unknown backbone or mode is the user's to fix: one line, exit 2
    assert cli.main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--model", "resnet19"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown backbone 'resnet19' (did you mean 'resnet18'?); `transferlab models` lists them"
    )
