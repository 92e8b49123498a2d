"""The backbone registry and the uniform model contract.

Every registered backbone becomes a :class:`TransferModel`: a ``body`` that maps
``(B, 3, H, W)`` images to ``(B, D)`` features, and a new linear ``head``. Freezing,
feature extraction and discriminative learning rates are data on the spec, not special
cases in the trainer.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import weights as W

__all__ = ["BackboneSpec", "TransferModel", "register", "get_spec", "names", "create_model",
           "WeightsUnavailable", "weights_status"]

WeightsUnavailable = W.WeightsUnavailable
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What the tool needs to know about one backbone."""

    name: str
    build: Callable[[], nn.Module]      # the ImageNet-shaped architecture, random init
    weights: W.WeightSource             # where pretrained weights come from
    head: str                           # dotted path of the final classifier layer
    cam_layer: str                      # last convolutional block (Grad-CAM target)
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    min_size: int = 32                  # smallest input the architecture accepts
    pool_head: bool = False             # head is a conv on a feature map: pool before the new head
    aux_head: str | None = None         # inception: auxiliary classifier to resize too
    description: str = ""

    def preprocess(self, image_size: int | None = None, crop: str = "resize") -> dict:
        """Plain-data preprocessing contract stored in checkpoints.

        ``crop="native"``: no resizing anywhere, crops at the image's own resolution.
        """
        size = image_size or self.input_size
        resize = int(round(size / self.crop_pct))
        # decoded images are first shrunk to this short side (cacheable, and still leaves room
        # for random-resized-crop zoom); every pipeline does the same, so pixels agree everywhere
        decode = None if crop == "native" else max(resize, size * 2)
        return {"input_size": size, "resize_size": resize, "decode_size": decode, "crop": crop,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        import difflib
        hint = difflib.get_close_matches(name, names(), n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise KeyError(f"unknown backbone '{name}'{extra}; `transferlab models` lists them")
    return _REGISTRY[name]


def weights_status(name: str) -> str:
    """Truthful availability on this machine: bundled / cached / download / missing / none."""
    return get_spec(name).weights.status()


def _get_module(root: nn.Module, path: str) -> nn.Module:
    m = root
    for part in path.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = _get_module(root, parent_path) if parent_path else root
    if leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def _in_features(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features
    if isinstance(m, nn.Conv2d):
        return m.in_channels
    for sub in m.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            return _in_features(sub)
    raise ValueError(f"cannot find the input width of head {m}")


class TransferModel(nn.Module):
    """``body`` (B,3,H,W) -> (B,D) features, then ``head`` (B,D) -> (B,num_classes) logits.

    With ``frozen_body`` the body runs without gradients and stays in eval mode, so its
    batch-norm statistics do not drift (feature-extraction mode).
    """

    def __init__(self, spec: BackboneSpec, body: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone_name = spec.name
        self.cam_layer = spec.cam_layer
        self.feature_dim = _in_features(_get_module(body, spec.head))
        _set_module(body, spec.head, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
                    if spec.pool_head else nn.Identity())
        self.aux_head = spec.aux_head
        if spec.aux_head:
            _set_module(body, spec.aux_head, nn.Linear(_in_features(_get_module(body, spec.aux_head)), num_classes))
        self.body = body
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes)) \
            if dropout > 0 else nn.Linear(self.feature_dim, num_classes)
        self.frozen_body = False
        self.frozen_bn = False

    def freeze_batchnorm(self, frozen: bool = True) -> None:
        """Keep the body's batch-norm running statistics fixed while its weights still train
        (small data sets: batch statistics of augmented crops would overwrite ImageNet's)."""
        self.frozen_bn = frozen
        self.train(self.training)

    def freeze_body(self, frozen: bool = True) -> None:
        self.frozen_body = frozen
        for p in self.body.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        if self.frozen_body:
            self.body.eval()
        elif self.frozen_bn:
            for m in self.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"body": [...], "head": [...]}``; inception's auxiliary classifier counts as head."""
        aux = set(id(p) for p in _get_module(self.body, self.aux_head).parameters()) if self.aux_head else set()
        body = [p for p in self.body.parameters() if id(p) not in aux]
        head = list(self.head.parameters()) + [p for p in self.body.parameters() if id(p) in aux]
        return {"body": body, "head": head}

    def forward_features(self, x: torch.Tensor):
        """(B,3,H,W) -> (B,D); in training, inception also returns its aux logits."""
        if self.frozen_body:
            with torch.no_grad():
                return self.body(x)
        return self.body(x)

    def forward(self, x: torch.Tensor):
        """Logits ``(B, num_classes)``; a training inception returns ``(logits, aux_logits)``."""
        feats = self.forward_features(x)
        if isinstance(feats, tuple):  # torchvision InceptionOutputs(logits=features, aux_logits)
            return self.head(feats[0]), feats[1]
        return self.head(feats)


def create_model(name: str, num_classes: int, pretrained: bool, weights_path: str | Path | None = None,
                 dropout: float = 0.0, download_timeout: float = 20.0) -> TransferModel:
    """Build backbone ``name`` with a new ``num_classes`` head.

    ``pretrained``: load the registry's weights (raises :class:`WeightsUnavailable` with the
    fix when they are not on this machine and cannot be fetched). ``weights_path``: load this
    local state dict instead. Neither: random init.
    """
    spec = get_spec(name)
    net = spec.build()
    if weights_path is not None:
        W.load_local(net, weights_path, name)
    elif pretrained:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(download_timeout)
        try:
            spec.weights.load_into(net, name)
        finally:
            socket.setdefaulttimeout(old)
    return TransferModel(spec, net, num_classes, dropout)


# Registrations live in their own module so this file stays about the contract.
from . import zoo as _zoo  # noqa: E402,F401  (registers the built-in backbones)
