"""The training loop as plain functions that return metric dicts.

``train_one_epoch`` and ``evaluate`` each make one pass over a loader; ``fit`` calls them,
tracks the best epoch by the validation metric, stops early on patience and hands every
epoch's record to one ``on_epoch_end`` hook (the trainer writes checkpoints there).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..config import TrainConfig
from ..data.index import Sample
from ..data.loading import ImageDataset, make_loader, threaded_batches
from ..data.perturb import Perturbation
from ..models.transfer import TransferModel
from ..modes import get_mode

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "train_one_epoch",
    "evaluate",
    "score_files",
    "fit",
    "FitState",
    "is_better",
    "val_metric",
    "seed_epoch",
    "gather_outputs",
    "amp_dtype",
    "grad_scaler",
    "class_weights",
]


def build_optimizer(model: TransferModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters; in finetune mode the body learns at
    ``lr * backbone_lr_mult``. Biases and norm weights get no weight decay."""
    lr = cfg.default_lr()
    groups = []
    for part, params in model.param_groups().items():
        params = [p for p in params if p.requires_grad]
        part_lr = lr * (cfg.backbone_lr_mult if part == "body" and get_mode(cfg.mode).body_lr_mult else 1.0)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [
            {"params": decay, "lr": part_lr, "weight_decay": cfg.weight_decay, "name": f"{part}"},
            {"params": no_decay, "lr": part_lr, "weight_decay": 0.0, "name": f"{part}_no_decay"},
        ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters: check --mode")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """A scheduler stepped once per batch (so resume and partial epochs behave the same)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "onecycle" and total >= 4:
        # the warm-up must span at least ~2 steps: torch divides by (warm-up steps - 1)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=max(0.25, 2.5 / total)
        )
    if cfg.scheduler == "onecycle":  # a handful of steps: no room for a warm-up
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    return None


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """Mixed precision on CUDA: bfloat16 where the GPU has it (no loss scaling needed), else
    float16 (with a :func:`grad_scaler`); ``None`` (full precision) on CPU or with ``amp`` off."""
    if not (amp and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def grad_scaler(device: torch.device, amp: bool):
    """A ``GradScaler`` when training runs in float16 (small gradients would underflow), else ``None``."""
    return torch.amp.GradScaler("cuda") if amp_dtype(device, amp) == torch.float16 else None


def _autocast(device: torch.device, amp: bool):
    dtype = amp_dtype(device, amp)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _bar(loader, desc: str, progress: bool):
    if not progress or not distributed.is_main():
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None)  # off when not a TTY


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    opt: torch.optim.Optimizer,
    scheduler,
    device: torch.device,
    cfg: TrainConfig,
    desc: str = "train",
    scaler=None,
    class_weight: torch.Tensor | None = None,
) -> dict:
    """One pass of SGD over ``loader``. Returns ``loss``, ``acc``, ``n``, ``skipped`` (list of
    ``(dataset index, reason)`` for unreadable files) and ``seconds``. ``scaler``: a
    ``GradScaler`` for float16 training (:func:`grad_scaler`; made here when needed and not given).
    ``class_weight``: per-class loss weights (:func:`class_weights`), for imbalanced data."""
    w = class_weight.to(device) if class_weight is not None else None
    scaler = scaler if scaler is not None else grad_scaler(device, cfg.amp)
    model.train()
    t0, total_loss, correct, n, skipped = time.perf_counter(), 0.0, 0, 0, []
    bar = _bar(loader, desc, cfg.progress)
    for batch in bar:
        skipped += batch["skipped"]
        if batch["image"] is None:
            continue
        x = _to_device(batch["image"], device, cfg.channels_last)
        y = batch["label"].to(device, non_blocking=True)
        with _autocast(device, cfg.amp):
            out = model(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits, y, weight=w, label_smoothing=cfg.label_smoothing)
            if aux is not None:
                loss = loss + cfg.aux_weight * F.cross_entropy(aux, y, weight=w, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()}; lower the learning rate (--lr)")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:  # float16: scale the loss so small gradients survive, unscale to step
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
        if cfg.progress:
            bar.set_postfix(loss=f"{total_loss / n:.4f}", acc=f"{correct / n:.3f}")
    if distributed.world().distributed:  # the epoch's figures over every rank's batches
        parts = distributed.gather((total_loss, correct, n, skipped))
        total_loss, correct, n = (sum(q[i] for q in parts) for i in range(3))
        skipped = sorted(sum((q[3] for q in parts), []))
    return {
        "loss": total_loss / max(n, 1),
        "acc": correct / max(n, 1),
        "n": n,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    channels_last: bool = True,
    amp: bool = True,
    progress: bool = False,
    desc: str = "eval",
) -> dict:
    """Forward pass over ``loader``. Returns ``loss``, ``acc``, ``probs (N,C)``, ``labels (N,)``,
    ``indices (N,)`` (dataset positions of the readable items) and ``skipped``."""
    model.eval()
    probs, labels, indices, skipped = [], [], [], []
    for batch in _bar(loader, desc, progress):
        skipped += batch["skipped"]
        if batch["image"] is None:
            continue
        with _autocast(device, amp):
            logits = model(_to_device(batch["image"], device, channels_last))
        probs.append(logits.float().softmax(1).cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
    if not probs:
        return _outputs(np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int), skipped)
    return _outputs(torch.cat(probs).numpy(), torch.cat(labels).numpy(), torch.cat(indices).numpy(), skipped)


def score_files(
    model: nn.Module,
    samples: Sequence[Sample],
    transform: Callable,
    decode_size: int | None,
    device: torch.device,
    batch_size: int,
    perturb: Perturbation | None = None,
    num_workers: int = 0,
    channels_last: bool = False,
    amp: bool = True,
    progress: bool = False,
    desc: str = "predict",
) -> dict:
    """:func:`evaluate` over image files: each decoded (shrunk to ``decode_size``), perturbed
    when ``perturb`` is given, then ``transform``-ed. Unreadable files come back in ``skipped``.
    One prefetch thread by default (worker processes measured slower on small CPUs);
    ``num_workers`` > 0: a DataLoader with that many worker processes."""
    dataset = ImageDataset(samples, transform, decode_size, perturb=perturb)
    if num_workers > 0:
        loader = make_loader(dataset, None, batch_size, False, num_workers)
    else:
        loader = threaded_batches(dataset, batch_size)
    return evaluate(model, loader, device, channels_last, amp, progress, desc)


def _outputs(probs: np.ndarray, labels: np.ndarray, indices: np.ndarray, skipped: list) -> dict:
    if not len(labels):
        return {
            "loss": float("nan"),
            "acc": 0.0,
            "probs": probs,
            "labels": labels,
            "indices": indices,
            "skipped": skipped,
        }
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    return {
        "loss": F.nll_loss(torch.log(p.clamp_min(1e-12)), y).item(),
        "acc": (p.argmax(1) == y).float().mean().item(),
        "probs": probs,
        "labels": labels,
        "indices": indices,
        "skipped": skipped,
    }


def gather_outputs(val: dict) -> dict:
    """Every rank's share of an :func:`evaluate` (over a :class:`~transferlab.distributed.ShardSampler`)
    joined into the whole set's outputs, in dataset order, each item once; unchanged in one process."""
    parts = distributed.gather({k: val[k] for k in ("probs", "labels", "indices", "skipped")})
    if len(parts) == 1:
        return val
    full = [q for q in parts if len(q["labels"])]
    if not full:
        return _outputs(np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int), sum((q["skipped"] for q in parts), []))
    indices = np.concatenate([q["indices"] for q in full])
    if len(np.unique(indices)) != len(indices):
        raise RuntimeError("evaluation shards overlap: a validation item was scored on two ranks")
    order = np.argsort(indices, kind="stable")
    return _outputs(
        np.concatenate([q["probs"] for q in full])[order],
        np.concatenate([q["labels"] for q in full])[order],
        indices[order],
        sorted(sum((q["skipped"] for q in parts), [])),
    )


def class_weights(labels, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so a balanced set gets weight 1 for every class
    (``n / (num_classes * count)``, sklearn's "balanced"); an absent class gets 0."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_classes).float()
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))


def is_better(
    metric: str, value: float, best: float | None, loss: float | None = None, best_loss: float | None = None
) -> bool:
    """Whether ``value`` improves on ``best``; ties (common for accuracy on small validation
    sets) go to the lower validation loss."""
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    if value == best and loss is not None and best_loss is not None:
        return loss < best_loss
    return value < best if metric == "loss" else value > best


@dataclass
class FitState:
    """What ``fit`` needs to continue: epochs done, history, best value and epoch."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    best_loss: float | None = None
    stopped_early: bool = False


def seed_epoch(seed: int, epoch: int, loader: DataLoader | None = None) -> None:
    """Seed every random stream an epoch draws from (python, numpy, torch, the loader's shuffling
    and its workers) from ``(seed, epoch)`` alone, so an epoch after ``--resume`` repeats exactly
    the epoch an uninterrupted run would have had."""
    import random

    s = (seed * 1_000_003 + epoch * 7919 + distributed.world().rank * 104_729) % 2**63
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    gen = getattr(loader, "generator", None)
    if gen is not None:
        gen.manual_seed(s)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # distributed: a new shuffle of the shards each epoch
        sampler.set_epoch(epoch)


def val_metric(metric: str, val: dict) -> float:
    if metric == "loss":
        return val["loss"]
    if metric == "auc":
        from sklearn.metrics import roc_auc_score

        y, p = val["labels"], val["probs"]
        if p.shape[1] == 2 and len(set(y.tolist())) == 2:  # symmetric in the class chosen
            return float(roc_auc_score(y, p[:, 1]))
        return val["acc"]
    return val["acc"]


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    opt,
    scheduler,
    device: torch.device,
    cfg: TrainConfig,
    state: FitState | None = None,
    on_epoch_end: Callable[[dict, bool, FitState, dict], None] | None = None,
    class_weight: torch.Tensor | None = None,
) -> FitState:
    """Train ``model`` (a whole TransferModel, or just its head on cached features) for
    ``cfg.epochs`` (continuing from ``state``), validating every epoch.

    ``on_epoch_end(record, improved, state, val)`` sees each epoch's record
    (epoch, train/val loss and accuracy, lr, seconds) and the raw validation outputs.
    """
    state = state or FitState()
    stale = state.epoch - state.best_epoch
    net = distributed.wrap(model, device)  # DDP when distributed; evaluation uses the bare model
    if cfg.compile:  # the training step only; parameters are shared, so checkpoints stay plain
        net = torch.compile(net)
    scaler = grad_scaler(device, cfg.amp)  # one for the whole fit: its scale carries across epochs
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        seed_epoch(cfg.seed, epoch, train_loader)
        t0 = time.perf_counter()
        lr = opt.param_groups[-1]["lr"]
        desc = f"epoch {epoch}/{cfg.epochs}"
        tr = train_one_epoch(net, train_loader, opt, scheduler, device, cfg, desc, scaler, class_weight)
        val = gather_outputs(evaluate(model, val_loader, device, cfg.channels_last, cfg.amp))
        value = val_metric(cfg.metric, val)
        improved = is_better(cfg.metric, value, state.best, val["loss"], state.best_loss)
        record = {
            "epoch": epoch,
            "train_loss": tr["loss"],
            "train_acc": tr["acc"],
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "val_metric": value,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            "skipped_train": tr["skipped"],
            "skipped_val": val["skipped"],
        }
        state.epoch = epoch
        state.history.append({k: v for k, v in record.items() if not k.startswith("skipped")})
        if improved:
            state.best, state.best_epoch, state.best_loss, stale = value, epoch, val["loss"], 0
        else:
            stale += 1
        state.stopped_early = bool(cfg.patience and stale >= cfg.patience)
        if on_epoch_end:
            on_epoch_end(record, improved, state, val)
    return state
