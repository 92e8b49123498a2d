import contextlib
import io
import json
import re

import pytest

import transferlab.lab.compare as compare_mod
from transferlab.config import ConfigError, TrainConfig
from transferlab.lab.compare import compare, grid

FAST = {"image_size": 32, "epochs": 1, "batch_size": 4, "num_workers": 0, "progress": False, "augment": "none"}


def test_grid_defaults_and_widening():
    assert grid() == [
        ("scratch_cnn", "scratch"),
        ("efficientnet_lite0", "features"),
        ("efficientnet_lite0", "finetune"),
    ]
    assert grid(["resnet18", "scratch_cnn"], ["features", "lpft"], scratch=False) == [
        ("resnet18", "features"),
        ("resnet18", "lpft"),
        ("scratch_cnn", "scratch"),
    ]
    with pytest.raises(ConfigError, match="unknown mode 'finetuning'"):
        grid(modes=["finetuning"])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from conftest import make_folder

    tmp = tmp_path_factory.mktemp("cmp")
    data = make_folder(tmp / "data", n=12)
    out = tmp / "cmp"
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        result = compare(data, out, overrides=FAST)
    compared_log.append(log.getvalue())
    return data, out, result


compared_log: list[str] = []


def test_compare_shows_the_grid_progress_with_an_eta(compared):
    log = compared_log[0]
    assert re.search(r"compare: 1/3 runs done, \d+s so far, ETA ~\d+s", log)
    assert re.search(r"compare: 2/3 runs done, \d+s so far, ETA ~\d+s", log)
    assert "[3/3] efficientnet_lite0/finetune: training" in log


def test_compare_trains_the_default_grid_on_one_split_and_reports(compared):
    data, out, result = compared
    assert [r["name"] for r in result["runs"]] == [
        "scratch_cnn_scratch",
        "efficientnet_lite0_features",
        "efficientnet_lite0_finetune",
    ]
    assert result["counts"] == json.loads((out / "compare.json").read_text())["counts"]
    assert sum(result["counts"]["test"].values()) > 0  # a flat folder gets a seeded test split
    splits = {json.loads((out / r["name"] / "summary.json").read_text())["data"]["source"] for r in result["runs"]}
    assert splits == {str(out / "split.csv")}  # every run trains on the same split
    for r in result["runs"]:
        assert r["eval_split"] == "test" and 0 <= r["test_acc"] <= 1 and not r["reused"]
        assert (out / r["name"] / "report.html").is_file()
    assert result["runs"][0]["trainable"] == result["runs"][0]["total"]  # scratch trains everything
    assert result["runs"][1]["trainable"] < result["runs"][1]["total"] / 100  # features: the head only
    md = (out / "report.md").read_text()
    assert md.count("| efficientnet_lite0_") == 2 and "![curves](curves.png)" in md
    html = (out / "report.html").read_text()
    assert html.count("<tr") == 1 + 3 + html.count("<tr", html.index("<h2>Curves"))  # header + 3 runs first
    # self-contained: every image is embedded, nothing is fetched
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html


def test_interrupted_compare_reuses_the_finished_run(tmp_path, monkeypatch):
    from conftest import make_folder

    data = make_folder(tmp_path / "data", n=8)
    out = tmp_path / "cmp"
    real_train = compare_mod.train
    calls = []

    def interrupt_second(*a, **k):
        calls.append(k.get("resume") or a[0].model)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second run trains
        return real_train(*a, **k)

    monkeypatch.setattr(compare_mod, "train", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        compare(data, out, overrides=FAST, models=["efficientnet_lite0"], modes=["features"])
    first = out / "scratch_cnn_scratch"
    stamp = (first / "best.pt").stat().st_mtime_ns, (first / "summary.json").stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(compare_mod, "train", lambda *a, **k: calls.append(a[0].model) or real_train(*a, **k))
    result = compare(data, out, overrides=FAST, models=["efficientnet_lite0"], modes=["features"])
    assert calls == ["efficientnet_lite0"]  # only the unfinished run trained again
    assert [r["reused"] for r in result["runs"]] == [True, False]
    assert ((first / "best.pt").stat().st_mtime_ns, (first / "summary.json").stat().st_mtime_ns) == stamp
    with pytest.raises(ConfigError, match=r"holds a run trained with epochs=\d+ \(asked: 7\)"):
        compare(data, out, overrides={**FAST, "epochs": 7}, models=["efficientnet_lite0"], modes=["features"])
    assert ((first / "best.pt").stat().st_mtime_ns, (first / "summary.json").stat().st_mtime_ns) == stamp


def test_compare_refuses_per_run_settings_in_overrides(tmp_path):
    with pytest.raises(ConfigError, match="--models/--modes"):
        compare(tmp_path, tmp_path / "o", overrides={"mode": "features"})


def test_data_that_cannot_be_read_leaves_no_output_folder(tmp_path):
    from transferlab.data.index import DataError
    from transferlab.lab.crosseval import crosseval

    (tmp_path / "flat").mkdir()  # images would sit directly in it: no class folders
    for bad in (tmp_path / "missing", tmp_path / "flat"):
        with pytest.raises(DataError):
            compare(bad, tmp_path / "o", overrides=FAST, models=["scratch_cnn"], modes=["scratch"], scratch=False)
        with pytest.raises(DataError):
            crosseval([bad, tmp_path / "other"], tmp_path / "x", overrides=FAST)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x").exists()


@pytest.mark.browser
def test_report_html_renders_in_headless_chromium(compared, browser, tmp_path):
    import numpy as np
    from PIL import Image

    _, out, result = compared
    browser.get((out / "report.html").as_uri())
    tables = browser.find_elements("css selector", "table")
    assert len(tables) >= 4  # runs, settings, data, machine
    assert len(tables[0].find_elements("css selector", "tbody tr")) == len(result["runs"])
    assert "efficientnet_lite0_finetune" in tables[0].text
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(sizes) >= 4  # curves, confusion matrices, best run's predictions and most-wrong grids
    assert all(ok and w > 100 and h > 100 for ok, w, h in sizes), sizes  # no broken images
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    px = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert px.shape[1] >= 1000 and px.std() > 10  # a rendered page, not a blank one


def test_missing_pretrained_weights_fail_before_anything_trains(tmp_path, monkeypatch):
    from transferlab.models.registry import get_spec
    from transferlab.models.weights import WeightsUnavailable

    w = get_spec("resnet18").weights

    def offline(name):
        raise WeightsUnavailable(f"pretrained weights for '{name}' are not in the torch cache")

    monkeypatch.setattr(type(w), "status", lambda self: "download")
    monkeypatch.setattr(w, "state_dict", offline)
    monkeypatch.setattr(compare_mod, "train", lambda *a, **k: pytest.fail("trained before checking weights"))
    with pytest.raises(WeightsUnavailable, match="resnet18"):
        compare(tmp_path, tmp_path / "out", models=["resnet18"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("state", ["finished", "interrupted"])
def test_a_folder_holding_another_pair_is_refused_finished_or_not(state, tmp_path, monkeypatch):
    """The run folder of a grid row that holds another backbone/mode is neither reused nor resumed."""
    run = tmp_path / "scratch_cnn_scratch"
    run.mkdir()
    (run / "config.yaml").write_text("model: resnet18\nmode: features\n")
    (run / ("summary.json" if state == "finished" else "last.pt")).write_text("{}")
    monkeypatch.setattr(compare_mod, "train", lambda *a, **k: pytest.fail("trained into another pair's folder"))
    settings = {"model": "scratch_cnn", "mode": "scratch", "data": "x"}
    with pytest.raises(ConfigError, match="holds a resnet18/features run, not scratch_cnn/scratch"):
        compare_mod.train_once(run, settings, "row")
    (run / "config.yaml").write_text("model: scratch_cnn\nmode: scratch\n")  # its own pair: reused or resumed
    if state == "finished":
        assert compare_mod.train_once(run, settings, "row") == "reused"
    else:
        monkeypatch.setattr(compare_mod, "train", lambda *a, **k: None)
        assert compare_mod.train_once(run, settings, "row") == "resumed"


def test_settings_that_leave_model_and_mode_at_their_defaults_are_checked_against_the_defaults(tmp_path, monkeypatch):
    """crosseval passes only the flags a user gave: a rerun with none must reuse its finished runs."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    monkeypatch.setattr(compare_mod, "train", lambda *a, **k: pytest.fail("trained a finished run again"))
    (run / "config.yaml").write_text(f"model: {TrainConfig.model}\nmode: {TrainConfig.mode}\n")
    assert compare_mod.train_once(run, {"data": "x"}, "row") == "reused"
    (run / "config.yaml").write_text("model: resnet18\nmode: finetune\n")
    with pytest.raises(ConfigError, match=f"holds a resnet18/finetune run, not {TrainConfig.model}/{TrainConfig.mode}"):
        compare_mod.train_once(run, {"data": "x"}, "row")
