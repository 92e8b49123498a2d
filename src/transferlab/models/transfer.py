"""The uniform model contract: :class:`TransferModel` (body, feature standardisation, head) and
:func:`create_model`, which builds any registered backbone with a new head."""

from __future__ import annotations

import copy
import socket
import threading
from pathlib import Path

import torch
from torch import nn

from ..config import DEFAULT_POOL, parse_pool
from . import weights as W
from .fold import fold_batchnorm
from .inputs import INPUTS, make_input
from .registry import BackboneSpec, get_spec

__all__ = ["TransferModel", "create_model", "FEATURES"]


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
    """``body`` (B,3,H,W) -> (B,D) features, ``feature_norm`` standardises them, ``head`` (B,D) ->
    (B,num_classes) logits.

    ``features="last"``: the body is the backbone with its classifier removed (pooled last
    stage). ``"stages"``: pooled statistics of every stage (:class:`~transferlab.models.stages.StageFeatures`).
    Inputs ``(B, K, 3, H, W)`` are K crop views of each image whose features are averaged.
    ``input``: what the body looks at, the image or its neighbouring-pixel residual
    (:mod:`~transferlab.models.inputs`); the residual is computed inside the model.
    ``zoom`` > 1 (stage features only): the body also looks at the image's centre magnified
    (:class:`~transferlab.models.stages.ZoomBody`); inputs are then ``zoom`` times the backbone's size.
    ``centre``: that view's side as a fraction of the image's (``None``: ``1 / zoom``).
    ``parts`` (with ``zoom``): ``"face"`` adds the features of a face crop's eyes, nose and
    mouth, cut at fixed places at the input's own pixels (:data:`~transferlab.models.stages.PARTS`).
    ``pool`` (stage features): the statistics of each channel over space, e.g. ``"mean,std"``.
    With ``frozen_body`` the body runs without gradients and stays in eval mode, so its
    batch-norm statistics do not drift (feature-extraction mode).
    """

    def __init__(
        self,
        spec: BackboneSpec,
        body: nn.Module,
        num_classes: int,
        dropout: float = 0.0,
        features: str = "last",
        input: str = "image",
        zoom: int = 1,
        centre: float | None = None,
        parts: str | None = None,
        pool: str = DEFAULT_POOL,
    ):
        super().__init__()
        from .stages import EnsembleBody, StageFeatures, Standardize, ZoomBody, feature_blocks

        self.backbone_name = spec.name
        self.features = features
        self.input, self.input_layer = input, make_input(input, spec.mean, spec.std)
        # None for one view, and for 1 / zoom (the same views as no fraction: one cache key, one record)
        self.zoom, self.centre = zoom, (centre if zoom > 1 and centre not in (None, 1 / zoom) else None)
        self.parts = parts if zoom > 1 and parts != "none" else None
        self.pool = ",".join(parse_pool(pool)) if features == "stages" else DEFAULT_POOL
        self.cam_layer = spec.cam_layer  # for an ensemble: members.0.<first member's cam layer>
        if isinstance(body, EnsembleBody):
            self.aux_head = None
        else:
            self.cam_layer = spec.cam_layer
            dim = _in_features(_get_module(body, spec.head))
            _set_module(
                body,
                spec.head,
                nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if spec.pool_head else nn.Identity(),
            )
            # stage features never reach inception's auxiliary classifier: no aux loss there
            self.aux_head = spec.aux_head if features == "last" else None
            if self.aux_head:
                _set_module(body, self.aux_head, nn.Linear(_in_features(_get_module(body, self.aux_head)), num_classes))
            if features == "stages":
                body = StageFeatures(body, spec.stages, self.pool)
        if zoom > 1:
            body = ZoomBody(body, zoom, self.centre, self.parts)  # 1 / zoom cut exactly, whatever the input's size
        self.body = body
        # the widths of the feature blocks, in column order: one per stage of each view and member
        # (stage features), or one for the whole vector; measured with one small forward pass
        self.feature_blocks: tuple[int, ...] = (
            (dim,)
            if features == "last" and not isinstance(body, EnsembleBody)
            else feature_blocks(body, max(spec.min_size, 64) * zoom)
        )
        self.feature_dim = sum(self.feature_blocks)
        # the blocks of each separately fitted logistic head, in column order: the views' blocks,
        # then (with parts) the parts' blocks; see transferlab.training.logistic
        self.head_blocks: tuple[tuple[int, ...], ...] = (self.feature_blocks,)
        if self.parts is not None:
            first = len(self.feature_blocks) // body.n_views * 2
            self.head_blocks = (self.feature_blocks[:first], self.feature_blocks[first:])
        self.feature_norm = Standardize(self.feature_dim)
        self.head = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))
            if dropout > 0
            else nn.Linear(self.feature_dim, num_classes)
        )
        self.frozen_body = False
        self.frozen_bn = False

    def folded(self, size: int) -> TransferModel:
        """This model for inference with batch norm folded into the body's convolutions
        (:func:`~transferlab.models.fold.fold_batchnorm`, checked on a ``size`` px input): a twin
        that shares the input layer, standardisation and head, or this model itself where nothing
        folds. This model is not changed (Grad-CAM explains the original's ``conv_head``)."""
        body = fold_batchnorm(self.body, size)
        if body is self.body:
            return self
        twin = copy.copy(self)
        twin._modules = {**self._modules, "body": body}  # a dict of its own: setting it leaves ours alone
        return twin

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

    def train(self, mode: bool = True) -> TransferModel:
        super().train(mode)
        if self.frozen_body:
            self.body.eval()
        elif self.frozen_bn:
            for m in self.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def linear_layer(self) -> nn.Linear:
        """The head's linear layer (the head may start with dropout)."""
        return self.head if isinstance(self.head, nn.Linear) else self.head[-1]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"body": [...], "head": [...]}``; inception's auxiliary classifier counts as head."""
        aux = {id(p) for p in _get_module(self.body, self.aux_head).parameters()} if self.aux_head else set()
        body = [p for p in self.body.parameters() if id(p) not in aux]
        head = list(self.head.parameters()) + [p for p in self.body.parameters() if id(p) in aux]
        return {"body": body, "head": head}

    def _body(self, x: torch.Tensor):
        if x.ndim == 5:  # (B, K, 3, H, W): K crop views per image, features averaged
            b, k = x.shape[:2]
            flat = self.input_layer(x.flatten(0, 1))
            if _channels_last(self.body):
                flat = flat.contiguous(memory_format=torch.channels_last)
            return self.body(flat).reshape(b, k, -1).mean(1)
        return self.body(self.input_layer(x))

    def forward_features(self, x: torch.Tensor):
        """(B,3,H,W) or (B,K,3,H,W) -> (B,D) body features (before standardisation); in training,
        inception also returns its aux logits."""
        if self.frozen_body:
            with torch.no_grad():
                return self._body(x)
        return self._body(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """(B,D) body features -> (B,num_classes) logits: standardise, then the linear head."""
        return self.head(self.feature_norm(feats))

    def forward(self, x: torch.Tensor):
        """Logits ``(B, num_classes)``; a training inception returns ``(logits, aux_logits)``."""
        feats = self.forward_features(x)
        if isinstance(feats, tuple):  # torchvision InceptionOutputs(logits=features, aux_logits)
            return self.forward_head(feats[0]), feats[1]
        return self.forward_head(feats)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, C), activation map of the Grad-CAM layer (B, C', h, w))`` for ``x (B, 3, H, W)``,
        with autograd on whether or not the body is frozen, and without changing any module state
        (so concurrent callers cannot disturb each other)."""
        x = self.input_layer(x)
        if self.features == "stages":  # the final stage map comes back with the features
            feats, act = self.body.forward_with_cam(x)
            return self.forward_head(feats), act
        layer = _get_module(self.body, self.cam_layer)
        caller, store = threading.get_ident(), {}

        def keep(_module, _inputs, output):
            if threading.get_ident() == caller:  # another thread's forward through the same model
                store["act"] = output[0] if isinstance(output, tuple) else output

        handle = layer.register_forward_hook(keep)
        try:
            feats = self.body(x)
        finally:
            handle.remove()
        feats = feats[0] if isinstance(feats, tuple) else feats
        return self.forward_head(feats), store["act"]


def _channels_last(module: nn.Module) -> bool:
    w = next((p for p in module.parameters() if p.ndim == 4), None)
    return w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


FEATURES = ("last", "stages")


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool,
    weights_path: str | Path | None = None,
    dropout: float = 0.0,
    download_timeout: float = 20.0,
    features: str = "last",
    input: str = "image",
    zoom: int = 1,
    centre: float | None = None,
    parts: str | None = None,
    pool: str = DEFAULT_POOL,
) -> TransferModel:
    """Build backbone ``name`` with a new ``num_classes`` head.

    ``pretrained``: load the registry's weights (raises :class:`WeightsUnavailable` with the
    fix when they are not on this machine and cannot be fetched). ``weights_path``: load this
    local state dict instead. Neither: random init. ``features``: ``last`` (the pooled last
    stage) or ``stages`` (pooled statistics of every stage). ``name`` may join several
    backbones with ``+`` (an ensemble: their features are concatenated). ``input``: ``image``, or
    ``residual`` (the body sees the image's neighbouring-pixel residual). ``zoom`` > 1 (with
    ``features="stages"``): the whole image and its centre magnified, features concatenated;
    ``centre`` is that view's side as a fraction of the image's (``None``: ``1 / zoom``), and
    ``parts="face"`` adds a face crop's eyes, nose and mouth (``None`` or ``"none"``: no parts).
    ``pool``: the statistics of each stage's channels over space (``features="stages"``), a
    comma-separated list of mean, std, max, min.
    """
    if features not in FEATURES:
        raise ValueError(f"features='{features}' is not one of {', '.join(FEATURES)}")
    if input not in INPUTS:
        raise ValueError(f"input='{input}' is not one of {', '.join(INPUTS)}")
    if zoom < 1 or (zoom > 1 and features != "stages"):
        raise ValueError(f"zoom={zoom}: 1, or 2 or more with features='stages'")
    if parts not in (None, "none") and zoom < 2:
        raise ValueError(f"parts={parts!r} are cut from zoom's larger input: use zoom 2 or more")
    if features != "stages" and parse_pool(pool) != parse_pool(DEFAULT_POOL):
        raise ValueError(f"pool={pool!r} chooses the statistics of stage features: use features='stages'")
    spec = get_spec(name)
    if "+" in name:
        from .stages import EnsembleBody

        if weights_path is not None:
            raise W.WeightsUnavailable(
                "--weights loads one backbone's state dict; an ensemble (+) loads each member's registry weights"
            )
        members = [
            create_model(m, num_classes, pretrained, None, 0.0, download_timeout, features, pool=pool).body
            for m in name.split("+")
        ]
        return TransferModel(
            spec, EnsembleBody(members), num_classes, dropout, features, input, zoom, centre, parts, pool
        )
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
    return TransferModel(spec, net, num_classes, dropout, features, input, zoom, centre, parts, pool)
