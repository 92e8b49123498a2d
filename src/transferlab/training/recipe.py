"""What ``auto`` means: one place that turns the ``auto`` settings into concrete ones.

Two recipes, chosen by measurement (BENCHMARKS.md, "Detection recipes"):

- ``classic``: the pooled last stage at the backbone's input size, a head trained by SGD/AdamW,
  light augmentation. Best for object categories (hymenoptera: 0.96 validation accuracy).
- ``detect``: for real-vs-fake data. Mean, standard deviation, spatial maximum and minimum of
  each channel of every stage of the frozen backbone (``features: stages``, ``pool``: the
  extremes keep a local edit that a mean dilutes) at the pretraining size in ``features`` mode,
  of the whole image and of its centre magnified 2x (``zoom: 2``: where face edits and swaps are), a
  standardised logistic-regression head fitted in seconds on cached features (every stage an
  equal share of its L2 prior: ``stage_balance``), and the robust augmentation with every
  augmented view re-saved as JPEG (quality 30-100), half of them blurred with sigma up to 1 and
  one in five noised (:data:`~transferlab.data.transforms.DEGRADE_VIEWS`), so the head does not
  lean on traces that one re-save, a light blur or noise destroys, while stronger blur does not
  wash out the ones that carry over to other generators. The decision threshold is the
  equal-error point of the validation scores clean and under JPEG 75, blur 1 and noise 0.02
  pooled (``threshold_perturb``): those shift every score a little, and a threshold fitted on
  clean scores alone lets verdicts flip (BENCHMARKS.md, "The detect recipe's views and threshold").

``recipe: auto`` picks ``detect`` for two-class data with one class named like fake/generated/GAN
(:func:`transferlab.metrics.looks_real_fake`), ``classic`` otherwise. Any setting given
explicitly wins over the recipe.
"""

from __future__ import annotations

import dataclasses

from ..config import DEFAULT_POOL, TrainConfig
from ..data.transforms import DEGRADE_VIEWS, resolve_augment
from ..metrics import looks_real_fake
from ..modes import get_mode

__all__ = ["resolve", "THRESHOLD_PERTURB", "DETECT_POOL"]

# the statistics of each stage map's channels that the detect recipe's frozen stage features keep
DETECT_POOL = "mean,std,max,min"
# the perturbed validation copies each recipe fits the two-class threshold on, beside the clean ones
THRESHOLD_PERTURB = {"classic": "none", "detect": "jpeg:75,blur:1,noise:0.02"}


def resolve(cfg: TrainConfig, classes: list[str]) -> tuple[TrainConfig, list[str]]:
    """A copy of ``cfg`` with every ``auto`` setting made concrete for data with ``classes``,
    and one note per decision (for the run's log and summary)."""
    real_fake = looks_real_fake(classes)
    recipe = cfg.recipe if cfg.recipe != "auto" else ("detect" if real_fake else "classic")
    detect = recipe == "detect"
    mode = get_mode(cfg.mode)
    changes: dict = {"recipe": recipe}
    notes = (
        [
            f"recipe {cfg.recipe} -> {recipe}"
            + (" (two classes, real vs fake)" if cfg.recipe == "auto" and detect else "")
        ]
        if cfg.recipe == "auto"
        else []
    )
    if cfg.augment == "auto":
        changes["augment"] = resolve_augment("auto", classes)
        notes.append(
            f"augment auto -> {changes['augment']}"
            + (" (real vs fake: blur/JPEG/noise augmentation on; --augment light turns it off)" if real_fake else "")
        )
    for name, value in DEGRADE_VIEWS["detect" if detect else "classic"].items():
        if getattr(cfg, name) is None:
            changes[name] = value
    if cfg.threshold_perturb is None:
        changes["threshold_perturb"] = THRESHOLD_PERTURB[recipe]
    features = cfg.features
    if features == "auto":
        features = changes["features"] = "stages" if detect and mode.pretrained else "last"
    if cfg.head == "auto":
        changes["head"] = "logistic" if features == "stages" and mode.head_on_features else "sgd"
    # zoom and the stage maps' extremes were measured on frozen stage features only
    frozen_stages = detect and features == "stages" and mode.frozen_body
    if cfg.zoom is None:  # fine-tuning through two views was not measured
        changes["zoom"] = 2 if frozen_stages else 1
    if cfg.pool is None:  # each channel's extremes keep a local edit that its mean dilutes: +1.6 ROC-AUC
        # points on ciplab and +1.2 on face swaps over five splits (BENCHMARKS.md, "Spatial max and min")
        changes["pool"] = DETECT_POOL if frozen_stages else DEFAULT_POOL
    if cfg.parts is None:  # an option: +1.0 on ciplab, +0.2 on face swaps, -1.0 to -2.6 across sources
        changes["parts"] = "none"  # (BENCHMARKS.md, "Face parts at fixed places")
    # Frozen stage features at the backbone's own size. Twice the size (--image-size 448) was measured
    # too (BENCHMARKS.md, "Detection recipes"): +2 ROC-AUC points on face swaps, but -4 on ciplab,
    # a 7.7-point accuracy loss there under JPEG 75 (none at 224), and 3-4x the time.
    shown = [f"{k} {changes[k]}" for k in ("features", "head", "zoom", "pool") if k in changes]
    if changes.get("augment", cfg.augment) in ("robust", "strong"):
        shown += [f"{k} {changes[k]:g}" for k in DEGRADE_VIEWS["detect"] if k in changes]
    if len(classes) == 2 and changes.get("threshold_perturb", "none") != "none":
        shown.append(f"threshold fitted on validation clean + {changes['threshold_perturb']}")
    if detect and shown:
        notes.append("detect recipe: " + ", ".join(shown))
    return dataclasses.replace(cfg, **changes).validate(), notes
