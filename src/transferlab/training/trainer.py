"""``train(cfg)``: from a data folder to a self-describing run folder (:class:`~transferlab.rundir.RunFolder`).

One run: index the data, resolve the ``auto`` settings (:mod:`transferlab.training.recipe`), build the
model, then either fit a head on cached frozen features (``features`` mode) or train on images,
keep the best epoch, calibrate the decision on the validation split, and write the figures,
``summary.json`` and ``report.html``. A run killed at any moment continues with ``--resume`` to
the same result as an uninterrupted one (per-epoch seeds, history kept in ``last.pt``).
"""

from __future__ import annotations

import dataclasses
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, distributed
from ..config import DEFAULT_POOL, PAIRS_FILE, ConfigError, TrainConfig, config_to_dict, load_config
from ..data.audit import metadata_shortcuts
from ..data.index import DataIndex, carve_validation, conflict_note, imbalance_note, load_index, printable
from ..data.loading import cache_or_stream, make_loader
from ..data.preprocess import Preprocess
from ..data.transforms import AugmentSpec, eval_transform, train_transform
from ..metrics import classification_report, guess_positive
from ..models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..models.registry import get_spec
from ..models.transfer import TransferModel, create_model
from ..modes import get_mode
from ..reports.grids import sample_grid
from ..reports.html import run_report
from ..reports.plots import plot_confusion, plot_curves
from ..rundir import RunFolder, RunFolderError, refuse_inside_data
from ..runtime import resolve_device, set_threads
from .calibration import calibrate, fitted_on, threshold_perturbations
from .engine import (
    FitState,
    build_optimizer,
    build_scheduler,
    class_weights,
    evaluate,
    fit,
    gather_outputs,
    score_files,
    val_metric,
)
from .features import FeatureCache, FeatureSet, cache_key, default_cache_dir, extract_features, feature_loader
from .recipe import resolve as resolve_recipe
from .tracking import Trackers, open_trackers

__all__ = ["train", "RunResult", "prepare_data", "build_model", "apply_mode", "seed_everything", "HeadOnly"]


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_val_acc: float
    summary: dict


def _log(msg: str) -> None:
    if distributed.is_main():  # one voice for all ranks
        print(printable(msg), flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, num_classes: int) -> TransferModel:
    """The model for ``cfg.mode``; fails fast (before any data is read) when pretrained weights
    are missing."""
    spec = get_spec(cfg.model)
    if cfg.image_size is not None and cfg.image_size < spec.min_size:
        raise ConfigError(
            f"image_size {cfg.image_size} is below {spec.min_size}, the smallest input "
            f"'{spec.name}' accepts; use --image-size {spec.min_size} or more"
        )
    if not get_mode(cfg.mode).pretrained and cfg.weights:
        raise ConfigError(
            "--weights loads pretrained weights, but --mode scratch means random init; "
            "use --mode finetune or --mode features"
        )
    model = create_model(
        spec.name,
        num_classes,
        pretrained=get_mode(cfg.mode).pretrained and not cfg.weights,
        weights_path=cfg.weights,
        dropout=cfg.dropout,
        features=_features(cfg),
        input=cfg.input,
        zoom=cfg.zoom or 1,
        centre=cfg.centre,
        parts=cfg.parts,
        pool=cfg.pool or DEFAULT_POOL,
    )
    return apply_mode(model, cfg)


def _features(cfg: TrainConfig) -> str:
    """``cfg.features`` once resolved; an unresolved ``auto`` (a config built by hand) means ``last``."""
    return "last" if cfg.features == "auto" else cfg.features


def apply_mode(model: TransferModel, cfg: TrainConfig) -> TransferModel:
    """What trains in ``cfg.mode``: features freezes the body (and its batch norm); finetune
    (and lpft's fine-tuning stage) keeps batch-norm statistics fixed when ``cfg.freeze_bn``."""
    mode = get_mode(cfg.mode)
    model.freeze_body(mode.frozen_body)
    model.freeze_batchnorm(cfg.freeze_bn and mode.bn_frozen_by_default)
    return model


class HeadOnly(torch.nn.Module):
    """The part of a model that trains on cached features: (B, D) features -> logits
    (standardisation, then the head)."""

    def __init__(self, model: TransferModel):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feats)


def _name_groups(index: DataIndex, cfg: TrainConfig) -> str:
    """Name the groups of ``cfg.groups`` in ``index`` (paths relative to the data folder, or to a
    manifest's folder); returns the note saying how many files they cover."""
    from ..data.split import name_groups, read_groups

    root = Path(cfg.data) if Path(cfg.data).is_dir() else Path(cfg.data).parent
    groups = read_groups(cfg.groups, root)
    index.splits = {k: name_groups(v, groups) for k, v in index.splits.items()}
    named = sum(1 for s in index.all_samples() if s.group)
    if not named:
        raise ConfigError(
            f"--groups '{cfg.groups}' names none of the images in '{cfg.data}'; its paths must be relative to {root}"
        )
    sides: dict[str, set[str]] = {}
    for split, samples in index.splits.items():
        for s in samples:
            if s.group:
                sides.setdefault(s.group, set()).add(split)
    note = f"groups: {named} images in {len(sides)} groups from {cfg.groups}"
    apart = sum(1 for v in sides.values() if len(v) > 1)
    if apart:
        note += (
            f"; warning: the data's own split puts {apart} group(s) on two sides, so its scores are optimistic "
            "(make the split with `transferlab split --groups`)"
        )
    return note


def prepare_data(cfg: TrainConfig) -> tuple[DataIndex, list[str]]:
    """Index ``cfg.data``; carve a stratified, seeded validation split from train when there is
    none. Returns the index and human-readable notes."""
    index = load_index(cfg.data)
    notes = list(index.notes)
    if not index.splits.get("train"):
        raise ConfigError(f"'{cfg.data}' has no training images (no train split)")
    if cfg.groups:
        notes.append(_name_groups(index, cfg))
    elif (Path(cfg.data) / PAIRS_FILE).is_file():
        notes.append(
            f"warning: '{cfg.data}' has a {PAIRS_FILE} that this run does not use: add --groups "
            f"{Path(cfg.data) / PAIRS_FILE} to keep each pair on one side of the validation split and in one "
            "fold of the head's cross-validation"
        )
    if not index.splits.get("val"):
        train, val = carve_validation(index.splits["train"], cfg.val_fraction, cfg.seed)
        index.splits["train"], index.splits["val"] = train, val
        kept = ", groups kept whole" if cfg.groups else ""
        notes.append(
            f"no validation split in the data: carved {len(val)} images "
            f"({cfg.val_fraction:.0%} per class, seed {cfg.seed}{kept}) from train"
        )
    skew = imbalance_note(index.splits["train"], index.classes)
    if skew:
        notes.append(f"warning: {skew}")
    clash = conflict_note(index)
    if clash:
        notes.append(f"warning: {clash}")
    notes += [f"warning: {cut.text()}" for cut in metadata_shortcuts(index.all_samples(), index.classes)]
    return index, notes


def _machine(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transferlab": __version__,
        "device": str(device),
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


# -- opening a run: new, resumed, or restarted ------------------------------------------------------


@dataclass
class _Session:
    """Everything one call of :func:`train` works with."""

    cfg: TrainConfig
    run: RunFolder
    index: DataIndex
    notes: list[str]
    last: dict | None  # last.pt of a resumed run
    model: TransferModel


def _open_new(cfg: TrainConfig, overwrite: bool) -> _Session:
    if not cfg.data:
        raise ConfigError("data is not set or an empty path; give an image folder or a CSV manifest")
    get_spec(cfg.model)  # an unknown backbone name fails before the data is read
    threshold_perturbations(cfg.threshold_perturb)  # and so does a misspelt perturbation
    refuse_inside_data(cfg.out, cfg.data)
    run = RunFolder(cfg.out)
    if not overwrite:  # refuse before the (slow) indexing
        distributed.on_main(lambda: run.prepare_new(False) if run.is_run() else None)
    index, notes = distributed.on_main(prepare_data, cfg)  # indexed once, shared with every rank
    cfg, recipe_notes = resolve_recipe(cfg, index.classes)
    seed_everything(cfg.seed)
    model = build_model(cfg, len(index.classes))  # missing weights fail here, before anything is written

    def create() -> None:
        run.prepare_new(overwrite)
        run.write_config(cfg)  # first: from here on, --resume can always continue or restart the run
        run.write_split(index)

    distributed.on_main(create)
    return _Session(cfg, run, index, notes + recipe_notes, None, model)


# settings a resumed run may change: where and how it runs, how it reports, and how long it trains
RESUME_FREE = frozenset(
    {"epochs", "patience", "device", "amp", "channels_last", "compile", "num_workers", "image_cache_mb"}
    | {"feature_cache", "cache_dir", "progress", "tensorboard", "mlflow", "out"}
)


def _resumed_config(saved: TrainConfig, folder: Path, overrides: dict | None) -> TrainConfig:
    """The run's ``saved`` config with ``overrides`` applied, writing into ``folder``. A
    :class:`ConfigError` names every setting the overrides change other than those in
    :data:`RESUME_FREE`: the checkpoint was made with the saved ones, so a run resumed with another
    model, size or learning rate would describe itself wrongly. ``out`` is free, but a different
    ``--out`` is checked by path."""
    cfg = dataclasses.replace(load_config(None, overrides or {}, base=saved), out=str(folder))
    changed = [
        f"{f.name} ({getattr(saved, f.name)!r} -> {getattr(cfg, f.name)!r})"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUME_FREE and getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    out = (overrides or {}).get("out")
    if out is not None and Path(out).resolve() != folder.resolve():
        changed.append(f"out ('{folder}' -> '{out}')")
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming '{folder}': it was trained with its saved "
            "settings; drop those flags, or start a new run with them"
        )
    return cfg


def _open_resumed(folder: str | Path, overrides: dict | None) -> _Session:
    run = RunFolder(folder)
    distributed.on_main(run.clean_temporaries)
    if not run.last.is_file():
        if not run.is_run():
            raise RunFolderError(
                f"'{run.path}' is not a run folder (no config.yaml, no last.pt); start a run with "
                "`transferlab train DATA --out RUN`"
            )
        cfg = _resumed_config(run.read_config(), run.path, overrides)
        index = run.read_split() if run.split.is_file() else distributed.on_main(prepare_data, cfg)[0]
        seed_everything(cfg.seed)
        return _Session(
            cfg,
            run,
            index,
            [f"'{run.path}' has no finished epoch yet: starting it over with its saved config and split"],
            None,
            build_model(cfg, len(index.classes)),
        )
    last = load_checkpoint(run.last)
    saved = TrainConfig(**last["config"])
    cfg = _resumed_config(saved, run.path, overrides)
    if cfg.epochs != saved.epochs and cfg.scheduler in ("onecycle", "cosine"):
        raise ConfigError(
            f"cannot change epochs from {saved.epochs} to {cfg.epochs} on resume with the "
            f"'{cfg.scheduler}' schedule (its length is fixed); start a new run instead"
        )
    distributed.on_main(run.write_metrics, last["fit_state"]["history"])  # heals a kill between last.pt and metrics.csv
    return _Session(
        cfg,
        run,
        run.read_split(),
        [f"resumed from last.pt (epoch {last['fit_state']['epoch']})"],
        last,
        apply_mode(model_from_checkpoint(last), cfg),
    )


def train(
    cfg: TrainConfig | None = None,
    resume: str | Path | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train one model and write its run folder.

    ``resume``: a run folder to continue from its ``last.pt`` (model, optimizer, scheduler,
    history; a run killed before its first epoch starts over with its saved config);
    ``overrides`` may raise ``epochs``. A folder that holds a run already is refused unless
    ``overwrite`` (which deletes it first). ``cfg`` is never modified."""
    t0 = time.perf_counter()  # wall time includes data indexing and feature extraction
    set_threads()
    wanted = cfg.device if cfg is not None else (overrides or {}).get("device", "auto")
    world = distributed.init(resolve_device(wanted).type)  # a no-op unless launched by torchrun
    if resume is not None:
        s = _open_resumed(resume, overrides)
    elif cfg is None:
        raise ConfigError("train() needs a TrainConfig, or resume=RUN_DIR")
    else:
        s = _open_new(dataclasses.replace(cfg).validate(), overwrite)
    cfg, model = s.cfg, s.model
    if world.distributed and cfg.sampler == "balanced":
        raise ConfigError("--sampler balanced runs in one process; with torchrun use --class-weights auto instead")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    pre = get_spec(cfg.model).preprocess(cfg.image_size, cfg.crop, cfg.crop_views, model.zoom)
    mode = get_mode(cfg.mode)
    if mode.probe is not None and s.last is None:
        s.notes.append(_linear_probe(model, s.index, pre, cfg, device))
    if mode.cached_features and (cfg.feature_cache or cfg.head == "logistic"):
        data = _feature_data(model, s.index, pre, cfg, device)
    else:
        data = _image_data(s.index, pre, cfg, device, model)
    s.notes += data.notes
    opt = build_optimizer(model, cfg)
    scheduler = build_scheduler(opt, cfg, len(data.train))
    state = _restore(s.last, opt, scheduler) if s.last is not None else FitState()
    _announce(cfg, s.index, s.notes, model, pre, device)
    writer = _RunWriter(s.run, cfg, model, s.index, pre, opt, scheduler)
    if distributed.is_main():  # TensorBoard / MLflow, when asked for (the main rank logs)
        writer.trackers = open_trackers(cfg, s.run.path)
    if s.last is not None:
        writer.skipped.update(dict(s.last.get("skipped", [])))
        writer.extra.update(s.last.get("extra") or {})
    if mode.cached_features and cfg.head == "logistic":
        if s.last is None:  # one closed-form fit; a resumed run has it already
            state = _fit_logistic_head(model, data, cfg, device, writer, s.notes)
    else:
        weight = _class_weight(cfg, s.index)
        state = fit(data.model, data.train, data.val, opt, scheduler, device, cfg, state, writer.on_epoch_end, weight)
    summary = _finish(s, _Outcome(model, data, pre, state, writer, device, time.perf_counter() - t0))
    return RunResult(s.run.path, state.best_epoch, summary["best_val_acc"], summary)


# -- data: images, or cached features ---------------------------------------------------------------


@dataclass
class _Data:
    """What the epochs train and validate on."""

    model: torch.nn.Module  # the whole model, or its head (on cached features)
    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    train_features: FeatureSet | None = None
    val_positions: list[int] | None = None  # feature rows -> positions in the validation split
    notes: list[str] = dataclasses.field(default_factory=list)
    norm_fitted: bool = False  # the model's feature_norm was fitted on these training features
    train_groups: list[str] | None = None  # each training feature row's group ("" for none)


def _image_data(index: DataIndex, pre: Preprocess, cfg: TrainConfig, device: torch.device, model) -> _Data:
    """Train/val loaders over images; both share one decoded-image cache when enabled."""
    every = index.splits["train"] + index.splits["val"]
    cache, note = cache_or_stream(every, pre.decode_size, cfg.image_cache_mb, passes=cfg.epochs)
    pin = device.type == "cuda"
    train = make_loader(
        index.splits["train"],
        train_transform(pre, AugmentSpec.from_config(cfg)),
        cfg.batch_size,
        True,
        cfg.num_workers,
        cfg.seed,
        pin,
        pre.decode_size,
        cache,
        shard="train",
        balanced=cfg.sampler == "balanced",
    )
    val = make_loader(
        index.splits["val"],
        eval_transform(pre),
        cfg.batch_size * 2,
        False,
        cfg.num_workers,
        cfg.seed,
        pin,
        pre.decode_size,
        cache,
        shard="eval",
    )
    return _Data(model, train, val, notes=[note] if note else [])


def _feature_data(
    model: TransferModel, index: DataIndex, pre: Preprocess, cfg: TrainConfig, device: torch.device
) -> _Data:
    """Extract (or reuse) frozen-backbone features; the head then trains on them alone."""
    views = cfg.feature_views if cfg.augment != "none" else 0
    model.to(device)
    root = cfg.cache_dir or default_cache_dir()
    cache = FeatureCache(root, cache_key(model, cfg, pre, views))
    budget = cfg.image_cache_mb  # beyond it, the features stay on disk and stream from there
    tr = extract_features(model, index.splits["train"], pre, cfg, views, device, cache, budget)
    va = extract_features(
        model, index.splits["val"], pre, cfg, 0, device, FeatureCache(root, cache_key(model, cfg, pre, 0)), budget
    )
    fit_norm = model.features == "stages" and len(tr) > 0  # thousands of features on different scales
    if fit_norm:
        model.feature_norm.fit_chunks(tr.chunks())
    note = (
        f"features mode: backbone ran on {tr.computed + va.computed} images "
        f"({1 + views} views per training image), {len(tr.positions) + len(va.positions) - tr.computed - va.computed}"
        f" came from the feature cache {cache.path.parent}; {tr.seconds + va.seconds:.1f}s"
    )
    skipped = [(index.splits["train"][i].path, r) for i, r in tr.skipped] + [
        (index.splits["val"][i].path, r) for i, r in va.skipped
    ]
    index.skipped.extend(skipped)
    return _Data(
        HeadOnly(model),
        feature_loader(tr, True, cfg.batch_size, True, cfg.seed, balanced=cfg.sampler == "balanced"),
        feature_loader(va, False, cfg.batch_size * 2, False, cfg.seed),
        tr,
        va.positions,
        [note],
        norm_fitted=fit_norm,
        train_groups=[index.splits["train"][i].group for i in tr.positions],
    )


def _fit_logistic_head(
    model: TransferModel, data: _Data, cfg: TrainConfig, device, writer: _RunWriter, notes: list[str]
) -> FitState:
    """The logistic head in one step (:func:`transferlab.training.logistic.fit_logistic`), recorded as epoch 1."""
    t0 = time.perf_counter()
    found = _cached_logistic_fit(model, data, cfg)
    val = gather_outputs(evaluate(data.model, data.val, device, False, cfg.amp))
    record = {
        "epoch": 1,
        "train_loss": found.train_log_loss,
        "train_acc": found.train_accuracy,
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "val_metric": val_metric(cfg.metric, val),
        "lr": 0.0,
        "seconds": time.perf_counter() - t0,
        "skipped_train": [],
        "skipped_val": val["skipped"],
    }
    state = FitState(
        epoch=1,
        history=[{k: v for k, v in record.items() if not k.startswith("skipped")}],
        best=record["val_metric"],
        best_epoch=1,
        best_loss=val["loss"],
    )
    writer.extra["logistic"] = found.to_dict()
    grouped = len(data.train_features) - found.fold_units
    kept = f", the manifest's groups kept whole ({found.fold_units} units)" if grouped else ""
    shared = f", {found.blocks} stage blocks given equal shares of the prior" if found.blocks > 1 else ""
    if found.invariance:
        shared += f", a prior of strength {found.invariance:g} against what the augmented views move"
    notes.append(
        f"logistic head: C {found.C:g} chosen by {found.folds}-fold cross-validation on the training "
        f"split{kept} ({len(found.cv_log_loss)} strengths tried{shared}), {found.seconds:.1f}s"
    )
    if found.heads:
        each = ", ".join(
            f"{h['columns']} columns at C {h['C']:g}, factor {k:.3g}" for h, k in zip(found.heads, found.fusion)
        )
        how = {
            "stacking": "the factors fitted on their out-of-fold scores",
            "spread": "each divided by its scores' spread",
        }[found.fused_by]
        notes.append(
            f"logistic head: {len(found.heads)} heads fitted apart and added ({each}; the views, then the parts; {how})"
        )
    if cfg.invariance and not found.invariance:
        notes.append(
            f"invariance {cfg.invariance:g} not applied: the training features have no augmented views "
            "(augment none or feature_views 0)"
        )
    writer.on_epoch_end(record, True, state, val)
    return state


def _cached_logistic_fit(model: TransferModel, data: _Data, cfg: TrainConfig):
    """:func:`transferlab.training.logistic.fit_logistic` on the cached training features (the
    standardisation is kept where the trainer fitted it from the streamed chunks already)."""
    from .logistic import fit_logistic

    feats = data.train_features
    return fit_logistic(
        model,
        feats.tensor(),
        feats.labels,
        cfg.seed,
        balanced=_balanced(cfg),
        fit_norm=not data.norm_fitted,
        groups=data.train_groups,
        blocks=model.feature_blocks if cfg.stage_balance else None,
        invariance=cfg.invariance,
        heads=[sum(b) for b in model.head_blocks],
    )


def _balanced(cfg: TrainConfig) -> bool:
    """Whether the loss (or the logistic head) weighs the classes equally."""
    return cfg.class_weights == "auto" or cfg.sampler == "balanced"


def _class_weight(cfg: TrainConfig, index: DataIndex) -> torch.Tensor | None:
    if cfg.class_weights != "auto":
        return None
    return class_weights([x.label for x in index.splits["train"]], len(index.classes))


def _linear_probe(model: TransferModel, index: DataIndex, pre: Preprocess, cfg: TrainConfig, device) -> str:
    """LP-FT's first stage (Kumar et al., ICLR 2022): fit the head alone on cached frozen features
    (the logistic head, or ``lp_epochs`` of SGD keeping the best epoch), then hand the model back
    ready to fine-tune everything."""
    lp = dataclasses.replace(cfg, mode=get_mode(cfg.mode).probe, epochs=cfg.lp_epochs, lr=None, patience=0)
    apply_mode(model, lp)
    t0 = time.perf_counter()
    data = _feature_data(model, index, pre, lp, device)
    tail = f"then fine-tuning everything at lr {cfg.default_lr():g} (body x {cfg.backbone_lr_mult:g})"
    if cfg.head == "logistic":
        found = _cached_logistic_fit(model, data, cfg)
        val = gather_outputs(evaluate(data.model, data.val, device, False, cfg.amp))
        apply_mode(model, cfg)
        return (
            f"lpft: logistic head on cached {model.features} features (C {found.C:g} by {found.folds}-fold CV, "
            f"{time.perf_counter() - t0:.1f}s), val accuracy {val['acc']:.4f}; {tail}"
        )
    opt = build_optimizer(model, lp)
    best: dict = {}

    def keep(record: dict, improved: bool, state: FitState, val: dict) -> None:
        if improved:
            best.update(
                epoch=record["epoch"],
                acc=record["val_acc"],
                head={k: v.detach().clone() for k, v in model.head.state_dict().items()},
            )
        _log(
            f"linear probe {record['epoch']:>3}/{lp.epochs}  train loss {record['train_loss']:.4f} | "
            f"val loss {record['val_loss']:.4f} acc {record['val_acc']:.3f}{' *' if improved else ''}"
        )

    sched = build_scheduler(opt, lp, len(data.train))
    fit(data.model, data.train, data.val, opt, sched, device, lp, FitState(), keep, _class_weight(cfg, index))
    model.head.load_state_dict(best["head"])
    apply_mode(model, cfg)
    return (
        f"lpft: linear probe on cached features for {lp.epochs} epochs ({time.perf_counter() - t0:.1f}s), "
        f"best val accuracy {best['acc']:.4f} at epoch {best['epoch']}; {tail}"
    )


def _restore(last: dict, opt, scheduler) -> FitState:
    opt.load_state_dict(last["optimizer"])
    if scheduler is not None and last.get("scheduler"):
        scheduler.load_state_dict(last["scheduler"])
    return FitState(**last["fit_state"])


def _announce(cfg: TrainConfig, index: DataIndex, notes: list[str], model, pre: Preprocess, device) -> None:
    n_train, n_total = _param_counts(model)
    _log(
        f"data: {cfg.data}  classes: {index.classes}  "
        + "  ".join(f"{k}: {sum(v.values())}" for k, v in index.counts().items())
    )
    for note in notes:
        _log(f"note: {note}")
    _log(
        f"model: {cfg.model} ({cfg.mode}, {model.features} features), {n_train:,} of {n_total:,} parameters "
        f"trainable, input {pre.input_size} px, device {device}"
    )


def _param_counts(model: torch.nn.Module) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


# -- writing the run folder ------------------------------------------------------------------------


class _RunWriter:
    """Writes checkpoints and per-epoch rows into the run folder: ``best.pt`` when the epoch
    improved, then ``last.pt`` (with the whole history), then ``metrics.csv`` from that history."""

    def __init__(
        self, run: RunFolder, cfg: TrainConfig, model: TransferModel, index: DataIndex, pre: Preprocess, opt, scheduler
    ):
        self.run, self.cfg, self.model, self.index, self.pre = run, cfg, model, index, pre
        self.opt, self.scheduler = opt, scheduler
        self.skipped: dict[str, str] = dict(index.skipped)
        self.extra: dict = {}  # more for summary.json (e.g. the logistic head's cross-validation)
        self.trackers = Trackers([])

    def _write(self, record: dict, improved: bool, state: FitState) -> None:
        if improved:
            save_checkpoint({**self.payload(), "epoch": record["epoch"], "val": record}, self.run.best)
        save_checkpoint(self.last_payload(state, record["epoch"]), self.run.last)
        self.run.write_metrics(state.history)
        self.trackers.epoch(record)

    def payload(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "classes": self.index.classes,
            "backbone": self.cfg.model,
            "mode": self.cfg.mode,
            "preprocess": self.pre.to_dict(),
            "config": config_to_dict(self.cfg),
            "threshold": None,
            "positive_class": self.index.classes[guess_positive(self.index.classes, self.cfg.positive_class)]
            if len(self.index.classes) == 2
            else None,
        }

    def last_payload(self, state: FitState, epoch: int) -> dict:
        return {
            **self.payload(),
            "epoch": epoch,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "fit_state": dataclasses.asdict(state),
            "skipped": sorted(self.skipped.items()),
            "extra": self.extra,
        }

    def on_epoch_end(self, record: dict, improved: bool, state: FitState, val: dict) -> None:
        for split in ("train", "val"):
            for i, reason in record[f"skipped_{split}"]:
                self.skipped.setdefault(self.index.splits[split][i].path, reason)
        distributed.on_main(self._write, record, improved, state)
        star = " *" if improved else ""
        total = 1 if get_mode(self.cfg.mode).cached_features and self.cfg.head == "logistic" else self.cfg.epochs
        _log(
            f"epoch {record['epoch']:>3}/{total}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.3f} | val loss {record['val_loss']:.4f} acc {record['val_acc']:.3f} "
            f"| lr {record['lr']:.2e} | {record['seconds']:.1f}s{star}"
        )


@dataclass
class _Outcome:
    """What a finished fit hands to the writing of its results."""

    model: TransferModel
    data: _Data
    pre: Preprocess
    state: FitState
    writer: _RunWriter
    device: torch.device
    wall: float  # seconds from the start, data indexing and feature extraction included


def _finish(s: _Session, o: _Outcome) -> dict:
    """Reload best.pt, calibrate the decision on the validation split and save it into both
    checkpoints, write the figures, summary.json and report.html (the main rank writes; every
    rank returns the summary)."""
    distributed.barrier()  # the main rank has written best.pt
    best = load_checkpoint(s.run.best)
    o.model.load_state_dict(best["model"])
    val = gather_outputs(evaluate(o.data.model, o.data.val, o.device, s.cfg.channels_last, s.cfg.amp))
    return distributed.on_main(_write_results, s, o, best, val)


def _perturbed_validation(s: _Session, o: _Outcome) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, labels, probs)`` of the validation images under each of ``threshold_perturb``:
    the whole model on the decoded, perturbed files, as ``evaluate --perturb`` scores them
    (unreadable files are left out, as in training)."""
    out = []
    samples = [x for x in s.index.splits["val"] if x.path not in o.writer.skipped]
    transform = eval_transform(o.pre)
    for p in threshold_perturbations(s.cfg.threshold_perturb):
        _log(f"threshold: scoring the {len(samples)} validation images under {p.name}")
        res = score_files(
            o.model, samples, transform, o.pre.decode_size, o.device, s.cfg.batch_size, p,
            channels_last=s.cfg.channels_last, amp=s.cfg.amp, desc="eval",
        )  # fmt: skip
        if len(res["labels"]):
            out.append((p.name, res["labels"], res["probs"]))
    return out


def _write_results(s: _Session, o: _Outcome, best: dict, val: dict) -> dict:
    model, data, pre, state, writer = o.model, o.data, o.pre, o.state, o.writer
    cfg, run, index = s.cfg, s.run, s.index
    if data.val_positions is not None:  # feature rows -> sample positions
        val["indices"] = np.asarray([data.val_positions[i] for i in val["indices"]], dtype=int)
    positive = guess_positive(index.classes, cfg.positive_class) if len(index.classes) == 2 else None
    report = classification_report(val["labels"], val["probs"], index.classes, positive)
    calibration = calibrate(
        val["labels"],
        val["probs"],
        index.classes,
        positive,
        *cfg.threshold_rule(),
        temperature=cfg.calibrate,
        perturbed=_perturbed_validation(s, o) if positive is not None and cfg.threshold != "argmax" else [],
    )
    decision = {
        "threshold": calibration["threshold"],
        "temperature": calibration["temperature"],
        "calibration": calibration,
    }
    save_checkpoint({**best, **decision}, run.best)
    last = load_checkpoint(run.last)
    save_checkpoint({**last, **decision}, run.last)  # predicting from last.pt decides the same way
    plot_curves(state.history, run.file("curves.png"))
    plot_confusion(
        report["confusion_matrix"],
        index.classes,
        run.file("confusion_matrix.png"),
        title=f"validation (best epoch {state.best_epoch})",
    )
    _val_grid(run.file("val_predictions.png"), index, val)
    if writer.skipped:  # split.csv lists the files the run used: not those found unreadable on the way
        kept = {k: [x for x in v if x.path not in writer.skipped] for k, v in index.splits.items()}
        run.write_split(dataclasses.replace(index, splits=kept))
    n_train, n_total = _param_counts(model)
    summary = {
        "run_dir": str(run.path.resolve()),
        "backbone": cfg.model,
        "mode": cfg.mode,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_metric": state.best,
        "metric": cfg.metric,
        "best_val_acc": report["accuracy"],
        "val": report,
        "history": state.history,
        "wall_seconds": o.wall,
        # from the start (data indexing, feature extraction included) to the end of the best epoch
        "time_to_best_seconds": o.wall - sum(h["seconds"] for h in state.history[state.best_epoch :]),
        "params": {"trainable": n_train, "total": n_total},
        "preprocess": pre.to_dict(),
        "calibration": calibration,
        "features": model.features,
        "input": model.input,
        "zoom": model.zoom,
        "centre": model.centre,
        "parts": model.parts,
        "pool": model.pool if model.features == "stages" else None,
        "head": cfg.head,
        "recipe": cfg.recipe,
        **writer.extra,
        "data": {
            "source": cfg.data,
            "classes": index.classes,
            "counts": index.counts(),
            "notes": s.notes,
            "skipped_count": len(writer.skipped),
            "skipped": [{"path": p, "reason": r} for p, r in sorted(writer.skipped.items())],
        },
        "machine": _machine(o.device),
    }
    run.write_json(run.summary, summary)
    run_report(run.path)
    writer.trackers.finish(run.path, summary, val)
    if writer.skipped:
        _log(f"skipped {len(writer.skipped)} unreadable file(s):")
        for p, r in sorted(writer.skipped.items()):
            _log(f"  {p}: {r}")
    if calibration["threshold"] is not None:
        _log(
            f"decision: {calibration['positive_class']} if P >= {calibration['threshold']:.4f} "
            f"({calibration['threshold_rule']} on {fitted_on(calibration)}{_clean_alone(calibration)}); "
            f"temperature {calibration['temperature']:.3f}, "
            f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}"
        )
    _log(f"best epoch {state.best_epoch}: val accuracy {report['accuracy']:.4f}  -> {run.path}")
    return summary


def _clean_alone(calibration: dict) -> str:
    """The threshold the clean validation scores alone give, when perturbed copies joined the fit."""
    return f"; clean alone {calibration['threshold_clean']:.4f}" if calibration.get("threshold_fitted_on") else ""


def _val_grid(path: Path, index: DataIndex, val: dict, n: int = 24) -> None:
    samples = [index.splits["val"][i] for i in val["indices"]]
    sample_grid(
        path,
        samples,
        index.classes,
        np.asarray([s.label for s in samples]),
        val["probs"],
        "validation predictions (green right, red wrong)",
        n,
    )
