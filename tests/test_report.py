import re

from transferlab.config import load_config
from transferlab.evaluation.scoring import evaluate_run
from transferlab.reports.html import fmt, table
from transferlab.training.trainer import train


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def test_run_report_grows_with_the_evaluation(presplit_folder, tmp_path, fast_overrides):
    run = tmp_path / "run"
    train(load_config(None, {**fast_overrides, "data": str(presplit_folder), "out": str(run)}))
    html = (run / "report.html").read_text()
    assert "<h2>Training</h2>" in html and "Evaluation" not in html
    assert len(_images(html)) == 3  # curves, validation confusion matrix, validation predictions
    assert "<h2>Settings</h2>" in html and "scratch_cnn" in html and "<h2>Machine</h2>" in html
    evaluate_run(run, perturb="jpeg:50", explain=1)
    html = (run / "report.html").read_text()
    assert "<h2>Evaluation (test)</h2>" in html and "<h3>Robustness</h3>" in html and "jpeg:50" in html
    imgs = _images(html)
    # + test confusion, ROC, test predictions, most wrong, robustness chart, Grad-CAM
    assert len(imgs) == 9 and all(s.startswith("data:image/png;base64,") for s in imgs)


def test_table_escapes_and_formats():
    t = table(["a", "b"], [("<x>", 0.5), (None, 1234)], ["best", ""])
    assert "&lt;x&gt;" in t and "<x>" not in t and '<tr class="best">' in t
    assert '<td class="n">0.5000</td>' in t and '<td class="n">1,234</td>' in t and "<td>-</td>" in t
    assert fmt(True) == "True" and fmt(0.12345, 2) == "0.12"
