"""The backbone registry: what the tool knows about each backbone (:class:`BackboneSpec`).

:mod:`transferlab.models.zoo` registers the built-in backbones; :func:`get_spec` and :func:`names`
read the registry. Every spec carries its weights source, input size, mean/std, where its head
sits, its Grad-CAM layer and its stage nodes, so the model contract
(:mod:`transferlab.models.transfer`) needs no per-backbone code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..data.preprocess import Preprocess
from . import weights as W

__all__ = [
    "BackboneSpec",
    "register",
    "get_spec",
    "names",
    "UnknownBackbone",
    "WeightsUnavailable",
    "weights_status",
]

WeightsUnavailable = W.WeightsUnavailable
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What the tool needs to know about one backbone."""

    name: str
    build: Callable[[], nn.Module]  # the ImageNet-shaped architecture, random init
    weights: W.WeightSource  # where pretrained weights come from
    head: str  # dotted path of the final classifier layer
    cam_layer: str  # last convolutional block (Grad-CAM target)
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    min_size: int = 32  # smallest input the architecture accepts
    pool_head: bool = False  # head is a conv on a feature map: pool before the new head
    aux_head: str | None = None  # inception: auxiliary classifier to resize too
    stages: tuple[str, ...] | None = None  # torchvision node names of the stage outputs (None: timm's
    # forward_intermediates); the last is the final feature map
    description: str = ""

    def preprocess(
        self, image_size: int | None = None, crop: str = "resize", crop_views: int = 1, zoom: int = 1
    ) -> Preprocess:
        """The preprocessing this backbone expects (stored in checkpoints as ``to_dict()``).

        ``crop="native"``: no resizing anywhere, crops at the image's own resolution;
        ``crop_views``: that many crops per image (a square grid), whose features are averaged;
        ``zoom``: a model that looks at the whole image and at its centre magnified takes inputs
        ``zoom`` times the size its backbone sees.
        """
        size = (image_size or self.input_size) * zoom
        resize = int(round(size / self.crop_pct))
        # decoded images are first shrunk to this short side (cacheable, and still leaves room
        # for random-resized-crop zoom); every pipeline does the same, so pixels agree everywhere
        decode = None if crop == "native" else max(resize, size * 2)
        return Preprocess(size, resize, decode, crop, crop_views, self.interpolation, tuple(self.mean), tuple(self.std))


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Every registered backbone, sorted (ensembles of them are named ``a+b``)."""
    return sorted(_REGISTRY)


class UnknownBackbone(KeyError):
    """A backbone name (or ``+`` ensemble) the registry cannot build; the message says the fix."""


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``; ``a+b`` (an ensemble) gets a spec made from its members'."""
    if "+" in name:
        return _ensemble_spec(name)
    if name not in _REGISTRY:
        import difflib

        hint = difflib.get_close_matches(name, names(), n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise UnknownBackbone(f"unknown backbone '{name}'{extra}; `transferlab models` lists them")
    return _REGISTRY[name]


def _ensemble_spec(name: str) -> BackboneSpec:
    members = [get_spec(m) for m in name.split("+")]
    if len(members) < 2 or len({m.name for m in members}) < len(members):
        raise UnknownBackbone(f"ensemble '{name}' needs two or more different backbones joined by '+'")
    first = members[0]
    if any(m.aux_head for m in members):
        raise UnknownBackbone(
            f"ensemble '{name}': {', '.join(m.name for m in members if m.aux_head)} has an auxiliary "
            "classifier and cannot join an ensemble"
        )
    if any((m.mean, m.std) != (first.mean, first.std) for m in members):
        raise UnknownBackbone(
            f"ensemble '{name}': its members normalise their inputs differently "
            f"({', '.join(f'{m.name} mean {m.mean}' for m in members)}); join backbones that share mean/std"
        )
    return BackboneSpec(
        name,
        first.build,
        _EnsembleWeights([m.weights for m in members]),
        head=first.head,
        cam_layer=f"members.0.{first.cam_layer}",
        input_size=max(m.input_size for m in members),
        mean=first.mean,
        std=first.std,
        interpolation=first.interpolation,
        crop_pct=first.crop_pct,
        min_size=max(m.min_size for m in members),
        description="ensemble: " + " + ".join(m.name for m in members),
    )


class _EnsembleWeights(W.WeightSource):
    """The weights of an ensemble: each member's own source."""

    kind = "ensemble"

    def __init__(self, sources: list[W.WeightSource]):
        self.sources = sources

    def status(self) -> str:
        states = [s.status() for s in self.sources]
        return next((s for s in ("bundled (not installed)", "download", "none") if s in states), states[0])

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.sources)


def weights_status(name: str) -> str:
    """Truthful availability on this machine: bundled / cached / download / missing / none."""
    return get_spec(name).weights.status()
