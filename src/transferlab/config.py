"""One typed config schema: dataclass defaults, then a YAML file, then CLI flags.

Unknown keys fail loudly with a close-match suggestion; values are parsed with
``yaml.safe_load`` semantics, never ``eval``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .files import EMPTY_PATH, write_text
from .modes import get_mode
from .modes import names as mode_names

__all__ = [
    "TrainConfig",
    "ConfigError",
    "OPTIMIZERS",
    "SCHEDULERS",
    "METRICS",
    "AUGMENTS",
    "CROPS",
    "RECIPES",
    "FEATURE_KINDS",
    "HEADS",
    "INPUT_KINDS",
    "PAIRS_FILE",
    "load_config",
    "config_to_dict",
    "save_config",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("onecycle", "cosine", "step", "none")
METRICS = ("accuracy", "loss", "auc")
AUGMENTS = ("auto", "none", "light", "robust", "strong")
CROPS = ("resize", "native")
RECIPES = ("auto", "classic", "detect")
FEATURE_KINDS = ("auto", "last", "stages")
HEADS = ("auto", "sgd", "logistic")
INPUT_KINDS = ("image", "residual")
CLASS_WEIGHTS = ("none", "auto")
SAMPLERS = ("none", "balanced")
DEFAULT_MODEL = "efficientnet_lite0"
POOL_STATS = ("mean", "std", "max", "min")  # statistics of a stage map's channel over space
DEFAULT_POOL = "mean,std"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says the fix."""


def parse_pool(pool: str) -> tuple[str, ...]:
    """``"mean,std,max"`` -> ``("mean", "std", "max")``: the statistics stage features pool, in
    column order; refuses an unknown or repeated one, and none."""
    stats = tuple(s.strip() for s in str(pool).split(","))
    unknown = [s for s in stats if s not in POOL_STATS]
    if unknown or len(set(stats)) != len(stats):
        what = f"unknown {', '.join(repr(s) for s in unknown)}" if unknown else "a statistic named twice"
        raise ConfigError(f"pool={pool!r}: {what}; give a comma-separated list of {', '.join(POOL_STATS)}")
    return stats


PAIRS_FILE = "same_source_pairs.csv"  # a data folder's pairs, by convention: crosseval uses it, train points to it


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults here are the only defaults."""

    data: str = ""  # ImageFolder root (flat or train/val/test) or CSV manifest
    groups: str | None = None  # CSV of file pairs (relative to DATA) kept on one side of the val split, in one CV fold
    out: str = "runs/run"  # run folder to write (not given: the first free one of runs/run, runs/run2, ...)
    model: str = DEFAULT_MODEL  # backbone registry name (`transferlab models`)
    mode: str = "features"  # scratch | features | finetune | lpft (see `transferlab models` and README)
    weights: str | None = None  # local state-dict file instead of the registry's weights
    recipe: str = "auto"  # auto (detect for two-class real/fake data, else classic) | classic | detect
    features: str = "auto"  # last (pooled last stage) | stages (mean and std of every stage) | auto (recipe)
    input: str = "image"  # image | residual: the backbone sees the image's neighbouring-pixel residual (NPR)
    head: str = "auto"  # sgd (epochs of SGD/AdamW) | logistic (standardised, strength by CV; features/lpft) | auto
    stage_balance: bool = True  # logistic head on stage features: every stage gets an equal share of the L2 prior
    invariance: float = 0.0  # logistic head: prior against directions the augmented views move features along (0: off)
    epochs: int = 10  # passes over the training data (the logistic head needs one fit, not epochs)
    batch_size: int = 32  # images per optimisation step (evaluation uses twice this)
    optimizer: str = "adamw"  # sgd | adamw
    lr: float | None = None  # None: chosen by mode (see default_lr)
    backbone_lr_mult: float = 0.01  # finetune: backbone lr = lr * this (0.01 measured best on small data)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4  # AdamW/SGD weight decay (not on biases and norm weights)
    scheduler: str = "onecycle"  # onecycle | cosine | step | none
    step_size: int = 7  # step scheduler: epochs between decays
    gamma: float = 0.1  # step scheduler: decay factor
    label_smoothing: float = 0.0  # cross-entropy label smoothing, 0-1
    class_weights: str = "none"  # none | auto (loss weighted by inverse class frequency: imbalanced data)
    sampler: str = "none"  # none | balanced (draw each class equally often; with cached features too)
    metric: str = "accuracy"  # validation metric that picks best.pt: accuracy | loss | auc
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    seed: int = 0  # seeds the split carved from train, initialisation, data order and augmentation
    augment: str = "auto"  # auto (robust for two-class real/fake data, else light) | none | light | robust | strong
    crop_scale_min: float = 0.25  # light augmentation: smallest random-resized-crop area
    blur_prob: float | None = None  # robust: probability of a Gaussian blur (None: the recipe's, 0.5) ...
    blur_sigma_max: float | None = None  # ... with sigma uniform in [0.1, this] pixels (None: recipe, 3; detect 1)
    jpeg_prob: float | None = None  # robust: probability of JPEG re-compression (None: recipe, 0.5; detect 1) ...
    jpeg_quality_min: int = 30  # ... at a quality uniform in [this, 100]
    noise_prob: float | None = None  # robust: probability of Gaussian noise (None: the recipe's, 0.2) ...
    noise_std_max: float = 0.03  # ... with std uniform in [0, this] (fraction of 255)
    rotate_deg: float = 15.0  # strong: random rotation within +- this many degrees ...
    translate: float = 0.1  # ... shift up to this fraction of the side ...
    scale_jitter: float = 0.15  # ... and zoom by a factor in [1 - this, 1 + this]
    color_jitter: float = 0.2  # strong: brightness, contrast and saturation jitter
    sp_prob: float = 0.2  # strong: probability of salt-and-pepper noise ...
    sp_amount_max: float = 0.01  # ... hitting up to this fraction of the pixels
    crop: str = "resize"  # resize (short side, centre crop) | native (crops at the image's own resolution)
    crop_views: int = 1  # native crops: K crops per image (a square grid: 1, 4, 9, ...), features averaged
    image_size: int | None = None  # None: the backbone's own input size
    zoom: int | None = None  # stages: the centre 1/N too, N times larger (input N x image size); None: recipe
    centre: float | None = None  # zoom: the centre view's side, a fraction of the image's (None: 1/zoom)
    parts: str | None = None  # zoom: face (a face crop's eyes, nose and mouth too) | none; None: recipe
    pool: str | None = None  # stages: statistics per channel over space, from mean,std,max,min; None: recipe
    val_fraction: float = 0.2  # carved from train (stratified, seeded) when data has no val split
    num_workers: int = -1  # -1: chosen for this machine
    image_cache_mb: int = 2048  # memory budget for decoded images (0 = stream) and for features (beyond: on disk)
    feature_cache: bool = True  # features mode: run the frozen backbone once, train the head on cached features
    feature_views: int = 2  # features mode: augmented views per training image to cache (plus the plain one)
    cache_dir: str | None = None  # feature cache folder (default $TRANSFERLAB_CACHE or ~/.cache/transferlab)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = True  # NHWC memory format: 2-4x faster convolutions on CPU
    compile: bool = False  # torch.compile the training step; pays only on long runs (2-core CPU: 130 s to compile)
    freeze_bn: bool = True  # finetune: keep the body's batch-norm statistics fixed (small data)
    dropout: float = 0.0  # dropout before the new head
    aux_weight: float = 0.4  # inception_v3: loss = main + aux_weight * aux
    positive_class: str | None = None  # two classes: the "positive" one for ROC/AP; None: guessed
    threshold: str = "eer"  # two classes: decision rule saved with the model: eer | argmax | fpr:RATE
    threshold_perturb: str | None = None  # fit the threshold on val images under these too, e.g. jpeg:75 (none: off)
    calibrate: bool = True  # temperature-scale the probabilities on the validation split
    lp_epochs: int = 5  # lpft: epochs of the linear-probe stage before fine-tuning (--epochs)
    progress: bool = True  # progress bar
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard (scalars, PR curve, grids)
    mlflow: str | None = None  # log to MLflow: a tracking URI, or auto (a file store mlruns/ beside the run)
    extra: dict = field(default_factory=dict)  # free-form notes carried into the run folder

    def default_lr(self) -> float:
        """Learning rate for the new head when ``lr`` is not set."""
        if self.lr is not None:
            return self.lr
        mode = get_mode(self.mode)
        return mode.lr_sgd if self.optimizer == "sgd" else mode.lr_adamw

    def validate(self) -> TrainConfig:
        for name in ("out", "weights", "groups", "cache_dir"):  # data: "" until set, checked by train
            if getattr(self, name, None) == "":  # Path("") is the current folder: read or written silently
                raise ConfigError(f"{name}: {EMPTY_PATH}; give a file or folder")
        _choice("mode", self.mode, mode_names())
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("metric", self.metric, METRICS)
        _choice("augment", self.augment, AUGMENTS)
        _choice("crop", self.crop, CROPS)
        _choice("recipe", self.recipe, RECIPES)
        _choice("features", self.features, FEATURE_KINDS)
        _choice("head", self.head, HEADS)
        _choice("input", self.input, INPUT_KINDS)
        _choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        _choice("sampler", self.sampler, SAMPLERS)
        if self.crop_views < 1 or round(self.crop_views**0.5) ** 2 != self.crop_views:
            raise ConfigError(f"crop_views must be a square number (1, 4, 9, 16, ...), got {self.crop_views}")
        if self.crop_views > 1 and self.crop != "native":
            raise ConfigError(
                f"crop_views={self.crop_views} takes crops at the image's own resolution: add --crop native"
            )
        if self.zoom is not None and self.zoom < 1:
            raise ConfigError(f"zoom must be 1 or more, got {self.zoom}")
        if (self.zoom or 1) > 1 and self.features == "last":
            raise ConfigError(f"zoom={self.zoom} adds the centre's stage features: add --features stages")
        if self.centre is not None and not 0.0 < self.centre < 1.0:
            raise ConfigError(
                f"centre is the centre view's side, a fraction of the image's in (0, 1): got {self.centre}"
            )
        if self.centre is not None and self.zoom == 1:
            raise ConfigError(f"centre={self.centre} sizes the centre view that zoom adds: add --zoom 2")
        if self.parts not in (None, "none", "face"):
            raise ConfigError(f"parts must be face or none, got {self.parts!r}")
        if self.parts == "face" and self.zoom == 1:
            also = " --features stages" if self.features == "last" else ""  # zoom's own condition, named at once
            raise ConfigError(f"parts=face cuts the face's parts from zoom's larger input: add --zoom 2{also}")
        if self.pool is not None and parse_pool(self.pool) != parse_pool(DEFAULT_POOL) and self.features == "last":
            raise ConfigError(f"pool={self.pool} chooses the statistics of stage features: add --features stages")
        if self.head == "logistic" and not get_mode(self.mode).head_on_features:
            raise ConfigError(
                f"head=logistic is fitted on cached frozen features: use it with --mode features or lpft, "
                f"not {self.mode}"
            )
        for name in ("blur_prob", "jpeg_prob", "noise_prob", "sp_prob", "sp_amount_max", "translate", "color_jitter"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality_min <= 100:
            raise ConfigError(f"jpeg_quality_min must be 1-100, got {self.jpeg_quality_min}")
        if (self.blur_sigma_max is not None and self.blur_sigma_max < 0.1) or self.noise_std_max < 0:
            raise ConfigError("blur_sigma_max must be >= 0.1 and noise_std_max >= 0")
        if not 0 <= self.rotate_deg <= 180 or not 0 <= self.scale_jitter < 1:
            raise ConfigError(
                f"rotate_deg must be 0-180 and scale_jitter in [0, 1), got {self.rotate_deg}, {self.scale_jitter}"
            )
        if self.lp_epochs < 1:
            raise ConfigError(f"lp_epochs must be >= 1, got {self.lp_epochs}")
        self.threshold_rule()
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ConfigError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.feature_views < 0 or self.image_cache_mb < 0:
            raise ConfigError("feature_views and image_cache_mb must be >= 0")
        if not 0.0 <= self.invariance < float("inf"):  # also refuses nan
            raise ConfigError(f"invariance must be a finite number >= 0 (0: off), got {self.invariance}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        for name, low, high in (("momentum", 0, 1), ("label_smoothing", 0, 1), ("dropout", 0, 1)):
            if not low <= getattr(self, name) < high:
                raise ConfigError(f"{name} must be in [{low}, {high}), got {getattr(self, name)}")
        if self.weight_decay < 0 or self.backbone_lr_mult < 0 or self.aux_weight < 0:
            raise ConfigError("weight_decay, backbone_lr_mult and aux_weight must be >= 0")
        if self.gamma <= 0 or self.step_size < 1:
            raise ConfigError(f"gamma must be > 0 and step_size >= 1, got {self.gamma}, {self.step_size}")
        if self.patience < 0 or self.num_workers < -1:
            raise ConfigError(
                "patience must be >= 0 (0: off) and num_workers >= -1 (-1: auto), "
                f"got {self.patience}, {self.num_workers}"
            )
        return self

    def threshold_rule(self) -> tuple[str, float | None]:
        """``threshold`` parsed: ``("eer", None)``, ``("argmax", None)`` or ``("fpr", rate)``."""
        rule, _, value = str(self.threshold).partition(":")
        if rule in ("eer", "argmax") and not value:
            return rule, None
        if rule == "fpr":
            try:
                rate = float(value)
            except ValueError:
                rate = -1.0
            if 0.0 < rate < 1.0:
                return "fpr", rate
        raise ConfigError(
            f"threshold='{self.threshold}' is not eer, argmax or fpr:RATE (e.g. fpr:0.05, the "
            "largest false-positive rate allowed on the validation split)"
        )


def field_help() -> dict[str, str]:
    """Each :class:`TrainConfig` field's documentation: the comment on its line in this file (the
    CLI's help text comes from here, so a flag and its field cannot drift apart)."""
    import inspect
    import re

    docs = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"^    (\w+): [^#]*#\s?(.*)$", line)
        if m:
            docs[m.group(1)] = m.group(2).strip()
    return docs


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = difflib.get_close_matches(str(value), allowed, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{key}='{value}' is not one of {', '.join(allowed)}{extra}")


def _coerce(name: str, value: Any, default: Any, type_str: str) -> Any:
    """Coerce a YAML/CLI value to the dataclass field's type; strings are parsed safely."""
    if value is None:
        return None
    if isinstance(value, str) and ("int" in type_str or "float" in type_str or "bool" in type_str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = None  # not YAML either: the conversion below names the value
        value = parsed if parsed is not None else value
    try:
        if "bool" in type_str:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if "int" in type_str and "float" not in type_str and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if "float" in type_str and not isinstance(value, bool):
            return float(value)
        if "dict" in type_str:
            if not isinstance(value, dict):
                raise TypeError
            return value
        return str(value) if "str" in type_str else value
    except (TypeError, ValueError):
        kinds = (("bool", "true or false"), ("float", "a number"), ("int", "a whole number"))
        kind = next((w for t, w in kinds if t in type_str), f"a {type_str}")
        raise ConfigError(f"{name}={value!r} is not {kind}") from None


def load_config(
    yaml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, base: TrainConfig | None = None
) -> TrainConfig:
    """Layer a YAML file and then ``overrides`` over ``base`` (default: the dataclass defaults).

    Returns a validated :class:`TrainConfig`. Raises :class:`ConfigError` naming the bad key.
    """
    values = config_to_dict(base or TrainConfig())
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if yaml_path is not None:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(
                f"{yaml_path} is not a UTF-8 text file; a config is YAML text of key: value lines"
            ) from None
        except OSError as e:
            why = "it is a folder" if Path(yaml_path).is_dir() else (e.strerror or str(e)).lower()
            raise ConfigError(f"--config '{yaml_path}' cannot be read: {why}; give a YAML file") from None
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            what = getattr(e, "problem", None) or "not valid YAML"
            raise ConfigError(f"{yaml_path}: {what}{at}; a config is YAML text of key: value lines") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of key: value")
        layers.append((str(yaml_path), loaded))
    if overrides:
        layers.append(("overrides", {k: v for k, v in overrides.items() if v is not None}))
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    for origin, layer in layers:
        for key, value in layer.items():
            if key not in types:
                hint = difflib.get_close_matches(str(key), list(types), n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else ""
                raise ConfigError(f"unknown config key '{key}' in {origin}{extra}")
            values[key] = _coerce(key, value, values[key], types[key])
    return TrainConfig(**values).validate()


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-data copy of a config (safe for YAML and ``torch.load(weights_only=True)``)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, one key per line."""
    write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
