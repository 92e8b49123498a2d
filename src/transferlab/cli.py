"""Command line: a thin adapter from flags to the library API. No logic lives here."""

from __future__ import annotations

import argparse
import codecs
import csv
import dataclasses
import io
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "UsageError"]


class UsageError(ValueError):
    """Flags that do not go together; the message says which."""


OPTIONAL_VALUE = {"mlflow": "auto"}  # flags that may stand alone


def _at_least(low: int, high: int | None = None):
    """An argparse type: a whole number in ``[low, high]``; argparse names the flag when it is not."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < low or (high is not None and value > high):
            why = f"is below {low}" if high is None else f"is outside {low}-{high}"
            raise argparse.ArgumentTypeError(f"{value} {why}")
        return value

    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number above 0")
    return value


def _add_train_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field, generated so the config stays the single source of truth."""
    from .config import TrainConfig, field_help

    docs = field_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "extra", *skip):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = docs[f.name].replace("%", "%%") + (f" (default: {default})" if default not in (None, "") else "")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.name in OPTIONAL_VALUE:  # --mlflow alone means its default
            p.add_argument(
                flag, dest=f.name, nargs="?", const=OPTIONAL_VALUE[f.name], default=None, metavar="URI", help=help_
            )
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_)


LAUNCH_FLAGS = ("--nproc-per-node", "--nnodes", "--rdzv-endpoint")


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed (torchrun)")
    g.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train in N processes on this machine (torchrun; gloo on CPU, nccl on GPU)",
    )
    g.add_argument("--nnodes", default="1", metavar="N", help="machines taking part (with --rdzv-endpoint); default 1")
    g.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous of a multi-machine run: the same on every machine"
    )


def _launched_elsewhere(a) -> bool:
    """With --nproc-per-node, run this same command under torchrun (unless this process is
    already one of its ranks) and report True: the launched ranks did the work."""
    from . import distributed

    if not a.nproc_per_node or distributed.launched():
        return False
    argv, skip = [], False
    for tok in a.argv:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = "=" not in tok
            continue
        argv.append(tok)
    distributed.launch(argv, a.nproc_per_node, a.nnodes, a.rdzv_endpoint)
    return True


def build_parser() -> argparse.ArgumentParser:
    from .config import PAIRS_FILE  # light: the CLI starts without numpy and PIL
    from .modes import names as mode_names

    ap = argparse.ArgumentParser(prog="transferlab", description="Transfer learning for small image folders.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("split", help="write a reproducible stratified split manifest (no copying)")
    p.add_argument("src", help="ImageFolder root")
    p.add_argument("--out", required=True, help="folder for split.csv and split.json")
    p.add_argument("--train-per-class", type=_at_least(1))
    p.add_argument("--val-per-class", type=_at_least(0))
    p.add_argument("--train-fraction", type=float)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", help="CSV of file pairs (relative to SRC) kept on one side of the split")

    p = sub.add_parser("train", help="train a classifier and write a run folder")
    p.add_argument("data", nargs="?", help="ImageFolder root (flat or train/val/test) or CSV manifest")
    p.add_argument("--config", help="YAML file layered under the flags")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (its files are deleted first)")
    _add_launch_flags(p)
    _add_train_flags(p)

    p = sub.add_parser("evaluate", help="score a run on its test split or another data set")
    p.add_argument("run", help="run folder")
    p.add_argument("data", nargs="?", help="other data set (default: the run's own test/val split)")
    p.add_argument("--out", help="where to write eval.json and report.md")
    p.add_argument("--checkpoint", default="best.pt")
    p.add_argument(
        "--perturb", help="also score under perturbations, e.g. jpeg:90,jpeg:75,blur:1,resize:0.5,noise:0.02"
    )
    p.add_argument("--tta", action="store_true", help="average test-time views (mirror; corner crops in native mode)")
    p.add_argument("--classes", help="map model classes to the data's folders, e.g. real=0_real,fake=1_fake")
    p.add_argument(
        "--explain",
        type=_at_least(0),
        default=6,
        metavar="N",
        help="Grad-CAM grid of N right and N wrong images (0: none)",
    )

    p = sub.add_parser("predict", help="predict images, folders or globs")
    p.add_argument("run", help="run folder, or an exported model file (model.onnx, model.torchscript.pt)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--csv", help="write predictions as CSV")
    p.add_argument("--json", help="write predictions as JSON")
    p.add_argument("--batch-size", type=_at_least(1), default=32)
    p.add_argument("--checkpoint", default="best.pt")
    p.add_argument("--tta", action="store_true", help="average test-time views (mirror; corner crops in native mode)")
    p.add_argument(
        "--explain",
        nargs="?",
        const="explanations",
        metavar="DIR",
        help="write a Grad-CAM heatmap per image into DIR (default ./explanations)",
    )

    p = sub.add_parser("compare", help="train scratch / features / finetune (and more) on one split; one report")
    p.add_argument("data", help="ImageFolder root (flat or train/val/test) or CSV manifest")
    p.add_argument("--out", required=True, help="comparison folder: split, one run folder per run, report.html")
    p.add_argument("--models", help="comma-separated backbones (default: the default backbone)")
    p.add_argument("--modes", help="comma-separated modes for those backbones (default: features,finetune)")
    p.add_argument("--no-scratch", dest="scratch", action="store_false", help="leave out the scratch_cnn baseline")
    p.add_argument("--train-per-class", type=_at_least(1), help="flat folders: training images per class (else 70%%)")
    p.add_argument("--val-per-class", type=_at_least(0), help="flat folders: validation images per class (else 15%%)")
    p.add_argument("--groups", help="CSV of file pairs (relative to DATA) kept on one side of the split")
    _add_launch_flags(p)
    _add_train_flags(p, skip=("model", "mode", "out", "groups"))

    p = sub.add_parser("crosseval", help="train on each real/fake data set, test on every one: the cross-source matrix")
    p.add_argument("data", nargs="+", help="two or more data folders (flat or train/val/test) with the same classes")
    p.add_argument("--out", required=True, help="folder for the splits, one run per data set and report.html")
    p.add_argument("--train-per-class", type=_at_least(1), help="flat folders: training images per class (else 70%%)")
    p.add_argument("--val-per-class", type=_at_least(0), help="flat folders: validation images per class (else 15%%)")
    p.add_argument(
        "--groups-name",
        default=PAIRS_FILE,
        help="a file of pairs inside a data folder kept on one side of its split (when present)",
    )
    _add_train_flags(p, skip=("out", "groups"))

    p = sub.add_parser("show", help="preview training images as the model sees them after augmentation")
    p.add_argument("data", help="ImageFolder root or CSV manifest")
    p.add_argument(
        "--out",
        default="augment_preview.png",
        help="image to write (.png, .jpg, .pdf, .svg; a folder: FOLDER/augment_preview.png)",
    )
    p.add_argument("-n", "--images", type=_at_least(1), default=8, help="how many training images (one row each)")
    p.add_argument("--views", type=_at_least(0), default=5, help="augmented views per image")
    _add_train_flags(p, skip=("out",))

    p = sub.add_parser("export", help="export a run as ONNX or TorchScript, checked against PyTorch")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--int8", action="store_true", help="ONNX: also a static int8 model calibrated on training images")
    p.add_argument("--out", help="folder for the files (default RUN/export)")
    p.add_argument(
        "--tolerance", type=_positive, default=1e-4, help="largest probability difference accepted on identical inputs"
    )
    p.add_argument(
        "--pipeline-tolerance",
        type=_positive,
        default=1e-2,
        help="largest difference accepted end to end from the image files (PIL vs torchvision resize)",
    )
    p.add_argument("--images", type=_at_least(0), default=200, help="validation images for the parity check (0: all)")
    p.add_argument("--checkpoint", default="best.pt")

    p = sub.add_parser("serve", help="web page and JSON API that check uploaded images")
    p.add_argument("run", help="run folder, or an exported model file")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    p.add_argument("--port", type=_at_least(0, 65535), default=8000)
    p.add_argument("--max-mb", type=_positive, default=10.0, help="largest accepted upload")
    p.add_argument("--workers", type=_at_least(1), default=2, help="threads that decode and score uploads")
    p.add_argument(
        "--queue", type=_at_least(1), default=16, help="requests admitted at once (running or waiting); more get 503"
    )
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="serve a TorchScript export (loading one runs code stored in the file: only files you made)",
    )

    sub.add_parser("models", help="list backbones and whether their weights are on this machine")

    p = sub.add_parser("demo", help="train and check a real-vs-fake detector on built-in photos")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--mode", default="features", choices=mode_names(), help="training mode")
    p.add_argument("--epochs", type=_at_least(1), default=6)
    return ap


def _torch_runtime() -> None:
    """Process-wide compute settings for the commands that run a PyTorch model (never imported for
    ``predict model.onnx``, which runs without torch)."""
    from .runtime import set_threads

    set_threads()


def _cmd_split(a) -> int:
    from .data.split import SplitSpec, split_folder

    spec = SplitSpec(a.train_per_class, a.val_per_class, a.train_fraction, a.val_fraction, a.seed)
    index, warnings = split_folder(a.src, a.out, spec, a.groups)
    for split, counts in index.counts().items():
        print(f"{split:>5}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    for p, r in index.skipped:
        print(f"skipped {p}: {r}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {Path(a.out) / 'split.csv'}")
    return 0


def _cmd_train(a) -> int:
    if _launched_elsewhere(a):
        return 0
    from .config import load_config
    from .training.trainer import train

    flags = _train_flags(a)
    if a.resume:
        train(resume=a.resume, overrides=flags)
        return 0
    if not a.data:
        raise UsageError("transferlab train: DATA is required (or --resume RUN_DIR)")
    if "out" not in flags and not a.config:  # never an earlier run: runs/run, runs/run2, ...
        from .rundir import next_run_dir

        flags["out"] = str(next_run_dir())
    cfg = load_config(a.config, {**flags, "data": a.data})
    train(cfg, overwrite=a.overwrite)
    return 0


def _train_flags(a, skip: tuple[str, ...] = ()) -> dict:
    from .config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(skip)
    return {k: v for k, v in vars(a).items() if k in names and v is not None}


def _cmd_compare(a) -> int:
    if _launched_elsewhere(a):
        return 0
    _torch_runtime()
    from .data.split import SplitSpec
    from .lab.compare import compare

    flags = _train_flags(a, skip=("data", "out", "model", "mode"))
    spec = SplitSpec(a.train_per_class, a.val_per_class, seed=int(flags.get("seed", 0)))
    compare(
        a.data,
        a.out,
        models=a.models.split(",") if a.models else None,
        modes=a.modes.split(",") if a.modes else None,
        scratch=a.scratch,
        overrides=flags,
        split=spec,
        groups=a.groups,
    )
    return 0


def _cmd_crosseval(a) -> int:
    _torch_runtime()
    from .data.split import SplitSpec
    from .lab.crosseval import crosseval

    flags = _train_flags(a, skip=("data", "out"))
    spec = SplitSpec(a.train_per_class, a.val_per_class, seed=int(flags.get("seed", 0)))
    crosseval(a.data, a.out, overrides=flags, split=spec, groups_name=a.groups_name or None)
    return 0


def _cmd_show(a) -> int:
    _torch_runtime()
    from .lab.preview import augment_preview

    path, preset = augment_preview(a.data, a.out, a.images, a.views, _train_flags(a, skip=("data", "out")))
    print(f"wrote {path} (augment={preset})")
    return 0


def _cmd_evaluate(a) -> int:
    _torch_runtime()
    from .data.perturb import parse_perturbations
    from .evaluation.scoring import evaluate_run, parse_class_map, render_markdown

    try:
        perturb = parse_perturbations(a.perturb)
    except ValueError as e:
        raise UsageError(f"--perturb: {e}") from None
    report = evaluate_run(
        a.run,
        a.data,
        a.out,
        a.checkpoint,
        perturb=perturb,
        tta=a.tta,
        class_map=parse_class_map(a.classes),
        explain=a.explain,
    )
    print(render_markdown(report).split("\n| class")[0])
    for row in report.get("robustness", []):
        auc = "-" if row["roc_auc"] is None else f"{row['roc_auc']:.4f}"
        at = (
            ""
            if row.get("threshold_drop") is None
            else f"  at threshold {row['accuracy_at_threshold']:.4f} (drop {row['threshold_drop']:+.4f})"
        )
        print(
            f"  {row['name']:<12} accuracy {row['accuracy']:.4f} (drop {row['accuracy_drop']:+.4f}){at}  ROC-AUC {auc}"
        )
    return 0


def _which_model(run: Path, checkpoint: str) -> None:
    """A usage error naming what to give instead, when ``run`` is a run's checkpoint file or a
    folder that holds an exported model but no checkpoint."""
    from .predict.contract import is_exported_model

    if run.is_dir() and not (run / checkpoint).exists():
        exported = sorted(f for f in run.iterdir() if is_exported_model(f))
        if exported:
            raise UsageError(
                f"'{run}' holds no checkpoint {checkpoint} but an exported model: give the file, "
                f"e.g. transferlab predict {exported[0]} IMAGES"
            )
    if run.is_file() and not is_exported_model(run) and (run.parent / "config.yaml").is_file():
        raise UsageError(
            f"'{run}' is a checkpoint in a run folder: give the folder, "
            f"e.g. transferlab predict {run.parent} --checkpoint {run.name} IMAGES"
        )


def _cmd_predict(a) -> int:
    from .data.index import expand_inputs
    from .files import check_writable, check_writable_file, write_text
    from .predict.contract import is_exported_model

    _which_model(Path(a.run), a.checkpoint)
    outputs = [o for o in (a.csv, a.json) if o]
    if len({Path(o).resolve() for o in outputs}) < len(outputs):
        raise UsageError(f"--csv and --json name the same file '{a.csv}'; give each its own")
    for o in outputs:
        check_writable_file(o)  # before the predictions, not after
    if a.explain:
        check_writable(a.explain)
    files, problems = expand_inputs(a.paths)
    if is_exported_model(a.run) or Path(a.run).is_file():  # a file is an export: its contract is checked
        if a.tta or a.explain:
            raise UsageError("--tta and --explain need the run folder (PyTorch), not an exported model")
        from .predict.runtimes import load_exported

        pred = load_exported(a.run, a.batch_size)
    else:
        from .predict.predictor import Predictor

        _torch_runtime()
        pred = Predictor.from_run(a.run, a.checkpoint, batch_size=a.batch_size, tta=a.tta, progress=True)
    results = pred.predict_paths(files) if files else []
    if a.explain:
        _write_explanations(pred, results, Path(a.explain))
    d = pred.decision()
    print(
        f"decision: {d['rule']}"
        + (f"; temperature {d['temperature']:.3f}" if d["temperature"] != 1.0 else "")
        + ("; test-time augmentation on" if d["tta"] else "")
    )
    width = max([len(r.path) for r in results] + [4])
    print(f"{'path':<{width}}  {'prediction':<12}" + "".join(f"  {c:>10}" for c in pred.classes))
    for r in results:
        probs = "".join(f"  {r.probs[c]:>10.4f}" for c in pred.classes) if r.label else f"  unreadable: {r.error}"
        print(f"{r.path:<{width}}  {r.label or '-':<12}{probs}")
    if not any(r.label for r in results):  # a glob that matched nothing must not look like success to a script
        failed = [(r.path, f"unreadable: {r.error}") for r in results] + problems
        (item, why), more = failed[0], len(failed) - 1
        print(f"error: nothing predicted: {item}: {why}" + (f" (and {more} more)" if more else ""), file=sys.stderr)
        return 2  # and no CSV or JSON: a refused command leaves nothing behind
    for item, why in problems:
        print(f"skipped {item}: {why}", file=sys.stderr)
    if a.csv:  # whole files, written atomically: never a partial CSV
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["path", "prediction", *[f"p_{c}" for c in pred.classes], "error"])
        for r in results:
            w.writerow([r.path, r.label or "", *[r.probs.get(c, "") for c in pred.classes], r.error or ""])
        write_text(a.csv, buf.getvalue())
    if a.json:
        write_text(
            a.json,
            json.dumps(
                {
                    "classes": pred.classes,
                    "threshold": pred.threshold,
                    "decision": pred.decision(),
                    "predictions": [r.to_dict() for r in results],
                    "problems": [{"path": p, "reason": w} for p, w in problems],
                },
                indent=2,
            ),
        )
    return 0


def _write_explanations(pred, results, folder: Path) -> None:
    from .data.images import ImageReadError
    from .evaluation.explain import GradCAM, save_overlay

    cam = GradCAM(pred)
    n = 0
    for i, r in enumerate(results):
        if r.label is None:
            continue
        try:
            heat, seen = cam.explain_path(r.path, target=pred.classes.index(r.label))
        except ImageReadError:
            continue
        save_overlay(folder / f"{i:04d}_{Path(r.path).stem}_{r.label}.png", seen, heat)
        n += 1
    print(f"wrote {n} Grad-CAM heatmap(s) (image | heatmap for the predicted class) to {folder}")


def _cmd_export(a) -> int:
    _torch_runtime()
    from .deploy.export import export_run

    r = export_run(
        a.run,
        a.format,
        a.out,
        a.int8,
        a.tolerance,
        a.images or None,
        checkpoint=a.checkpoint,
        pipeline_tolerance=a.pipeline_tolerance,
    )
    p, f = r["parity"], r["parity_from_files"]
    print(f"wrote {r['file']} ({r['size_mb']:.1f} MB) and its preprocessing contract {r['contract']}")
    print(
        f"parity with PyTorch on {p['n']} validation images: max probability difference {p['max_abs_diff']:.2e} "
        f"(from the image files {f['max_abs_diff']:.2e}), identical predictions {p['identical_predictions']:.1%}"
    )
    if "int8" in r:
        q = r["int8"]
        print(
            f"int8: {q['file']} ({q['size_mb']:.1f} MB, {q['size_ratio']:.2f}x the size); validation accuracy "
            f"{q['float']['accuracy']:.4f} -> {q['int8']['accuracy']:.4f} (at threshold "
            f"{q['float']['accuracy_at_threshold']:.4f} -> {q['int8']['accuracy_at_threshold']:.4f}); "
            f"{q['parity_vs_float']['identical_predictions']:.1%} identical predictions; "
            f"{q['float_images_per_s']:.0f} -> {q['int8_images_per_s']:.0f} images/s"
        )
    return 0


def _cmd_serve(a) -> int:
    from .deploy.serve import run_server

    if a.workers < 1 or a.queue < 1 or a.max_mb <= 0:
        raise UsageError("--workers and --queue must be >= 1 and --max-mb > 0")
    if Path(a.run).is_dir():
        _torch_runtime()
    run_server(a.run, a.host, a.port, int(a.max_mb * 2**20), a.workers, a.queue, a.trust_torchscript)
    return 0


def _cmd_models(a) -> int:
    from .models.registry import get_spec, names

    rows = [(n, get_spec(n)) for n in names()]
    print(f"{'name':<20} {'input':>5}  {'weights':<24} source")
    for n, s in rows:
        print(f"{n:<20} {s.input_size:>5}  {s.weights.status():<24} {s.weights.describe()}")
    print(
        "\nweights: bundled = ships in a pip package (offline); cached = in the torch cache; "
        "download = needs internet once (or --weights PATH); none = train with --mode scratch"
    )
    return 0


def _cmd_demo(a) -> int:
    _torch_runtime()
    from .lab.demo import run_demo

    run_demo(a.out, a.mode, a.epochs)
    return 0


_USER_ERRORS = {
    "config": "ConfigError",
    "data.index": "DataError",
    "models.weights": "WeightsUnavailable",
    "models.checkpoint": "CheckpointError",
    "deploy.export": "ExportError",
    "predict.contract": "ContractError",
    "files": "OutputError",
    "data.images": "ImageReadError",
    "distributed": "LaunchError",
    "models.registry": "UnknownBackbone",
    "modes": "UnknownMode",
}


def _user_errors() -> tuple[type, ...]:
    """Errors whose message is the whole story (bad input, missing weights, an unwritable folder).
    Looked up only in modules already imported, so ``predict`` on an ONNX export never imports torch."""
    found = [
        getattr(sys.modules[f"transferlab.{m}"], n)
        for m, n in _USER_ERRORS.items()
        if f"transferlab.{m}" in sys.modules
    ]
    return (*found, UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _show_bytes(e: UnicodeError):
    """Codec error handler: a file-name byte that is not UTF-8 (a surrogate escape) prints as ``\\xNN``."""
    bad = e.object[e.start : e.end]
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" for c in bad
    ), e.end


def _one_line(e: BaseException) -> str:
    return " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())


# every argument that names a file or folder, by its argparse dest
PATH_ARGS = ("src", "data", "run", "paths", "out", "groups", "config", "resume", "csv", "json", "explain")
PATH_ARGS += ("weights", "cache_dir", "checkpoint")


def _empty_path(args: argparse.Namespace) -> str | None:
    """The flag (or positional name) given an empty path, e.g. from an unset shell variable:
    ``Path("")`` is the current folder, so ``predict RUN "$DIR"`` would read everything under it."""
    for name in PATH_ARGS:
        value = getattr(args, name, None)
        if value == "" or (isinstance(value, list) and "" in value):
            flag = "--" + name.replace("_", "-")
            return flag if flag in args.argv else name.upper()
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 2 the input or setting is at fault (one
    line on stderr names it and the fix), 1 an unexpected failure, 130 interrupted."""
    codecs.register_error("transferlab-bytes", _show_bytes)
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print, escaped, not crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="transferlab-bytes")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    empty = _empty_path(args)
    if empty:
        from .files import EMPTY_PATH

        print(f"error: {empty}: {EMPTY_PATH}; give a file or folder", file=sys.stderr)
        return 2
    handler = {
        "split": _cmd_split,
        "train": _cmd_train,
        "evaluate": _cmd_evaluate,
        "predict": _cmd_predict,
        "models": _cmd_models,
        "demo": _cmd_demo,
        "compare": _cmd_compare,
        "show": _cmd_show,
        "crosseval": _cmd_crosseval,
        "export": _cmd_export,
        "serve": _cmd_serve,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if isinstance(e, _user_errors()):
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return 2
        if os.environ.get("TRANSFERLAB_DEBUG"):
            raise
        print(
            f"error: unexpected {type(e).__name__}: {_one_line(e)} (this is a bug in transferlab; "
            "TRANSFERLAB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if "transferlab.distributed" in sys.modules:  # leave the process group cleanly (torchrun ranks)
            sys.modules["transferlab.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
