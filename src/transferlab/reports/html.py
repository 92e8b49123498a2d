"""Self-contained HTML reports: one file with every figure embedded as a data URI, so it opens
from disk in any browser with no network and survives being mailed around.

``run_report(run_dir)`` renders one run folder (``summary.json``, plus ``eval.json`` once the run
has been evaluated); :mod:`transferlab.lab.compare` builds its grid report from the same pieces.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..files import write_text
from ..rundir import RunFolder

__all__ = ["page", "figure", "table", "fmt", "run_report", "settings_table", "data_table", "machine_table"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:24px;
color:#1f2328}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
.sub{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#dafbe1}
figure{margin:8px 0 20px;display:inline-block;vertical-align:top}figcaption{color:#57606a;font-size:13px}
img{max-width:100%;border:1px solid #d0d7de}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def fmt(v: Any, digits: int = 4) -> str:
    """Numbers for tables: ``-`` for missing, fixed digits for floats, thousands for ints."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    """An HTML table; numbers are right-aligned. ``classes``: a CSS class per row (e.g. ``best``)."""
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="n">{html.escape(fmt(c))}</td>'
            if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{html.escape(fmt(c))}</td>"
            for c in row
        )
        out.append(f"<tr{cls}>{cells}</tr>")
    return "\n".join(out) + "</tbody></table>"


def figure(path: str | Path, caption: str) -> str:
    """``<figure>`` with the PNG embedded; empty when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def page(title: str, subtitle: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>"
        f'<p class="sub">{html.escape(subtitle)}</p>\n' + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )


def settings_table(config: dict) -> str:
    return table(
        ["setting", "value"], [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in config.items()]
    )


def data_table(classes: Sequence[str], counts: dict[str, dict[str, int]]) -> str:
    """Class counts per split, with totals."""
    splits = list(counts)
    rows = [[c, *[counts[s].get(c, 0) for s in splits], sum(counts[s].get(c, 0) for s in splits)] for c in classes]
    rows.append(["all", *[sum(counts[s].values()) for s in splits], sum(sum(v.values()) for v in counts.values())])
    return table(["class", *splits, "total"], rows)


def machine_table(machine: dict) -> str:
    return table(["machine", ""], list(machine.items()))


def _skipped(skipped: Sequence[dict]) -> str:
    if not skipped:
        return "<p>No unreadable files.</p>"
    return f"<p>{len(skipped)} unreadable file(s) skipped:</p>" + table(
        ["file", "reason"], [(s["path"], s["reason"]) for s in skipped]
    )


def run_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the run's summary (and evaluation, when there is one)."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    s, ev = folder.read_summary(), folder.read_eval()
    cfg = folder.read_settings()
    cal = s.get("calibration") or {}
    key = [
        ("backbone", s["backbone"]),
        ("mode", s["mode"]),
        ("trainable / total parameters", f"{s['params']['trainable']:,} / {s['params']['total']:,}"),
        ("epochs run", s["epochs_run"]),
        ("best epoch", s["best_epoch"]),
        ("wall time (s)", round(s["wall_seconds"], 1)),
        ("time to best epoch (s)", round(s.get("time_to_best_seconds", 0.0), 1)),
        ("best validation accuracy", s["best_val_acc"]),
    ]
    if cal.get("threshold") is not None:
        key += [
            (
                "decision",
                f"{cal['positive_class']} if P >= {cal['threshold']:.4f} ({cal['threshold_rule']} on validation)",
            ),
            ("temperature", cal["temperature"]),
            ("ECE before / after temperature", f"{cal['ece_before']:.4f} / {cal['ece_after']:.4f}"),
        ]
    body = [
        "<h2>Summary</h2>",
        table(["", ""], key),
        "<h2>Training</h2>",
        figure(run_dir / "curves.png", "loss and accuracy per epoch"),
        figure(run_dir / "confusion_matrix.png", "validation confusion matrix (best epoch)"),
        figure(run_dir / "val_predictions.png", "validation predictions: green right, red wrong"),
    ]
    if ev is not None:
        body += _eval_section(run_dir, ev)
    body += [
        "<h2>Metrics per epoch</h2>",
        table(
            ["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"],
            [
                (
                    h["epoch"],
                    h["train_loss"],
                    h["train_acc"],
                    h["val_loss"],
                    h["val_acc"],
                    f"{h['lr']:.2e}",
                    round(h["seconds"], 1),
                )
                for h in s["history"]
            ],
        ),
        "<h2>Data</h2>",
        f"<p>Source <code>{html.escape(str(s['data']['source']))}</code>, "
        f"classes {html.escape(', '.join(s['data']['classes']))}.</p>",
        data_table(s["data"]["classes"], s["data"]["counts"]),
        "".join(f"<p>Note: {html.escape(n)}</p>" for n in s["data"].get("notes", [])),
        _skipped(s["data"].get("skipped", [])),
        "<h2>Settings</h2>",
        settings_table(cfg),
        "<h2>Machine</h2>",
        machine_table(s.get("machine", {})),
    ]
    title = f"{run_dir.name}: {s['backbone']} ({s['mode']})"
    sub = f"best validation accuracy {s['best_val_acc']:.4f}" + (
        f", {ev['split']} accuracy {ev['accuracy']:.4f} on {ev['n']} images" if ev else ""
    )
    path = run_dir / "report.html"
    write_text(path, page(title, sub, body))
    return path


def _eval_section(run_dir: Path, ev: dict) -> list[str]:
    b = ev.get("binary") or {}
    key = [
        ("data", ev["data"]),
        ("split", ev["split"]),
        ("images", ev["n"]),
        ("accuracy", ev["accuracy"]),
        ("balanced accuracy", ev["balanced_accuracy"]),
        ("macro F1", ev["macro_f1"]),
    ]
    if b.get("roc_auc") is not None:
        key += [
            ("positive class", ev.get("positive_class")),
            ("ROC-AUC", b["roc_auc"]),
            *([("ROC-AUC 95% interval", "{:.3f}-{:.3f}".format(*b["roc_auc_ci95"]))] if b.get("roc_auc_ci95") else []),
            ("average precision", b["average_precision"]),
            ("EER", b["eer"]),
        ]
        if "threshold" in b:
            key += [
                ("threshold", f"{b['threshold']:.4f} ({ev.get('threshold_source')})"),
                ("accuracy at threshold", b["accuracy_at_threshold"]),
            ]
    out = [
        f"<h2>Evaluation ({html.escape(ev['split'])})</h2>",
        table(["", ""], key),
        table(
            ["class", "accuracy", "precision", "recall", "F1", "n"],
            [
                (c, v["accuracy"], v["precision"], v["recall"], v["f1"], v["support"])
                for c, v in ev["per_class"].items()
            ],
        ),
        figure(run_dir / "confusion_matrix_eval.png", f"{ev['split']} confusion matrix"),
        figure(run_dir / "roc.png", "ROC curve"),
        figure(run_dir / "test_predictions.png", f"{ev['split']} predictions: green right, red wrong"),
        figure(run_dir / "most_wrong.png", "most confidently wrong"),
    ]
    if ev.get("saved_differently"):
        out += [
            "<h3>Files saved differently</h3>",
            *(f"<p>{html.escape(c['text'])}</p>" for c in ev["saved_differently"]),
            table(
                ["", "images", "ROC-AUC", "accuracy at threshold"],
                [
                    (f"{c['class']}: {label}", c[k]["n"], c[k]["roc_auc"], c[k].get("accuracy_at_threshold"))
                    for c in ev["saved_differently"]
                    for k, label in (("without", "without those files"), ("only", "those files alone"))
                ],
            ),
        ]
    if ev.get("robustness"):
        out += [
            "<h3>Robustness</h3>",
            table(
                [
                    "perturbation",
                    "accuracy",
                    "drop",
                    "balanced acc.",
                    "ROC-AUC",
                    "AP",
                    "acc. at threshold",
                    "drop at threshold",
                    "predictions changed",
                    "right -> wrong",
                    "wrong -> right",
                ],
                [
                    (
                        r["name"],
                        r["accuracy"],
                        r["accuracy_drop"],
                        r["balanced_accuracy"],
                        r["roc_auc"],
                        r["average_precision"],
                        r["accuracy_at_threshold"],
                        r.get("threshold_drop"),
                        r.get("changed"),
                        r.get("right_to_wrong"),
                        r.get("wrong_to_right"),
                    )
                    for r in ev["robustness"]
                ],
            ),
            figure(run_dir / "robustness.png", "accuracy, ROC-AUC and AP under each perturbation"),
        ]
    if ev.get("explained"):
        out += ["<h3>Explanations</h3>", figure(run_dir / "gradcam.png", "Grad-CAM: where the model looked")]
    if ev.get("skipped"):
        out.append(_skipped(ev["skipped"]))
    return out
