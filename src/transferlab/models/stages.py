"""Stage features: what a frozen backbone sees at every depth, not only at its last stage.

Generator and editing traces (upsampling checkerboards, blending seams, resampling and noise
statistics) live in the early and middle stages of a network; the last stage, tuned to ImageNet
objects, pools most of them away (Ojha et al., CVPR 2023; Koutlis & Papadopoulos, ECCV 2024).
:class:`StageFeatures` returns the mean and standard deviation over space of every channel of
every stage, ``(B, 2 * sum(C_i))``, or any of the mean, std, spatial max and min (``pool``: a
local edit moves a few positions of a map, which its extremes keep and its mean dilutes).
Stages come from the backbone's own API: timm's ``forward_intermediates`` or torchvision's
``create_feature_extractor`` with the node names the registry declares; no forward hooks.

:class:`Standardize` holds the per-feature mean and scale fitted on the training features, so the
model (and every export of it) standardises its own inputs to the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..config import DEFAULT_POOL, parse_pool

__all__ = ["StageFeatures", "EnsembleBody", "ZoomBody", "Standardize", "pool_stats", "feature_blocks", "PARTS"]

# Where a face crop's parts sit: ArcFace's five-point alignment template (Deng et al., CVPR 2019;
# 112 px, the mouth's corners averaged) as fractions of the image's side, each part's square a
# fraction of the side (0.9 of the eyes' distance), and whether it is mirrored (the right eye,
# so that both eyes face the same way). Fixed places, found by no landmark detector: measured
# against landmarks in BENCHMARKS.md ("Probe: face parts found by landmarks").
PARTS = {
    "face": {
        "side": 0.28125,
        "centres": ((0.3419, 0.4616, False), (0.6565, 0.4598, True), (0.5002, 0.6405, False), (0.5012, 0.8240, False)),
    }
}


def pool_stats(maps: Sequence[torch.Tensor], stats: Sequence[str] = ("mean", "std")) -> torch.Tensor:
    """Feature maps ``[(B, C_i, H_i, W_i), ...]`` -> ``(B, len(stats) * sum(C_i))``: per stage, each
    of ``stats`` (:data:`~transferlab.config.POOL_STATS`) of every channel over space, side by side,
    in float32. ``std`` is the population standard deviation; a 1x1 map has std 0, not NaN."""
    out = []
    for m in maps:
        m = m.float().flatten(2)
        mean = m.mean(2)
        for s in stats:
            if s == "mean":
                out.append(mean)
            elif s == "std":  # the epsilon keeps the gradient finite where var is 0
                out.append(((m - mean.unsqueeze(2)).pow(2).mean(2) + 1e-12).sqrt())
            else:
                out.append(m.amax(2) if s == "max" else m.amin(2))
    return torch.cat(out, 1)


class StageFeatures(nn.Module):
    """``net`` -> pooled statistics of each of its stages.

    ``nodes``: torchvision node names of the stage outputs, shallow to deep (the last one is the
    final feature map, which Grad-CAM explains); ``None``: the net's own
    ``forward_intermediates`` (timm), every block plus the final map. ``pool``: the statistics of
    each channel over space, comma-separated (:func:`~transferlab.config.parse_pool`).
    """

    def __init__(self, net: nn.Module, nodes: Sequence[str] | None, pool: str = DEFAULT_POOL):
        super().__init__()
        self.stats = parse_pool(pool)
        self.nodes = tuple(nodes) if nodes else None
        if self.nodes is None:
            if not hasattr(net, "forward_intermediates"):
                raise ValueError(
                    f"{type(net).__name__} has no forward_intermediates; declare its stage nodes "
                    "in the registry (BackboneSpec.stages)"
                )
            self.net = net
        else:
            import warnings

            from torchvision.models.feature_extraction import create_feature_extractor

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # train/eval graphs differ (inception's aux branch)
                self.net = create_feature_extractor(net, return_nodes={n: f"s{i}" for i, n in enumerate(self.nodes)})

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map for ``x (B, 3, H, W)``, shallow to deep."""
        if self.nodes is None:
            final, inter = self.net.forward_intermediates(x, extra_blocks=True)
            return [*inter, final]
        return list(self.net(x).values())

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, D), final feature map (B, C, h, w))``: the map is Grad-CAM's target."""
        maps = self.maps(x)
        return pool_stats(maps, self.stats), maps[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_stats(self.maps(x), self.stats)


class EnsembleBody(nn.Module):
    """Several bodies on the same input; their features concatenated ``(B, sum(D_k))``.
    Grad-CAM explains the first member."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x).float() for m in self.members], 1)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.members[0]
        if not hasattr(first, "forward_with_cam"):
            raise TypeError("Grad-CAM on an ensemble of last-stage bodies goes through the first member's cam layer")
        feats, cam = first.forward_with_cam(x)
        return torch.cat([feats, *[m(x).float() for m in self.members[1:]]], 1), cam


class ZoomBody(nn.Module):
    """Two views of one image through ``body``, their features concatenated ``(B, 2 * D)``: the
    whole image shrunk ``zoom`` times (average pooling), and its centre magnified. Both views are
    ``(H // zoom, W // zoom)``, so the body runs once on a batch of 2B.

    ``centre``: the centre view's side as a fraction of the image's. ``None``: ``1 / zoom``, cut
    at the input's own pixels (no resampling). Any other fraction is cut (its side rounded to
    whole pixels) and resized bilinearly to the view's size, inside the model, so every runtime
    (ONNX ``Resize``) sees the same pixels.

    Face crops put what a face swap or a Photoshop edit changes (eyes, nose, mouth, the blend
    around them) in the middle of the image; the centre view shows it the backbone at ``zoom``
    times the scale of the whole view, which keeps the context. Grad-CAM explains the whole view.

    ``parts``: a key of :data:`PARTS` (``"face"``), or ``None``. Its squares (the eyes, the nose,
    the mouth of a face crop) are cut at the input's own pixels, each its side times the input's,
    and run through ``body`` as one more batch; their features follow the two views', ``(B, (2 +
    P) * D)``.
    """

    def __init__(self, body: nn.Module, zoom: int, centre: float | None = None, parts: str | None = None):
        super().__init__()
        if parts is not None and parts not in PARTS:
            raise ValueError(f"parts must be one of {', '.join(PARTS)} or None, got {parts!r}")
        self.parts = parts
        if zoom < 2:
            raise ValueError(f"zoom must be 2 or more, got {zoom}")
        if centre is not None and not 0.0 < centre < 1.0:
            raise ValueError(f"centre must be a fraction in (0, 1), got {centre}")
        if not hasattr(body, "forward_with_cam"):
            raise ValueError("zoom concatenates stage features: use it with features='stages'")
        self.body, self.zoom, self.centre = body, zoom, centre

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(2B, 3, H // zoom, W // zoom)``: the whole images, then their centres."""
        z, (H, W) = self.zoom, x.shape[-2:]
        h, w = H // z, W // z
        whole = nn.functional.avg_pool2d(x, z)[..., :h, :w]
        if self.centre is None:
            ch, cw = h, w
        else:
            ch, cw = max(1, round(H * self.centre)), max(1, round(W * self.centre))
        top, left = (H - ch) // 2, (W - cw) // 2
        centre = x[..., top : top + ch, left : left + cw]
        if (ch, cw) != (h, w):
            centre = nn.functional.interpolate(centre, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([whole, centre])

    @property
    def n_views(self) -> int:
        """How many views' features the output concatenates: the whole, the centre, each part."""
        return 2 + (len(PARTS[self.parts]["centres"]) if self.parts else 0)

    def part_views(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(P * B, 3, s, s)``: each part's square for every image, part by part."""
        spec, (H, W) = PARTS[self.parts], x.shape[-2:]
        side = max(1, min(H, W, round(min(H, W) * spec["side"])))
        out = []
        for cx, cy, mirror in spec["centres"]:
            top = min(max(round(cy * H - side / 2), 0), H - side)
            left = min(max(round(cx * W - side / 2), 0), W - side)
            crop = x[..., top : top + side, left : left + side]
            out.append(crop.flip(-1) if mirror else crop)
        return torch.cat(out)

    @staticmethod
    def _joined(feats: torch.Tensor, views: int) -> torch.Tensor:
        """``(V * B, D)``, view by view -> ``(B, V * D)``."""
        return feats.unflatten(0, (views, -1)).transpose(0, 1).flatten(1)

    def _with_parts(self, feats: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.parts is None:
            return feats
        return torch.cat([feats, self._joined(self.body(self.part_views(x)), self.n_views - 2)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._with_parts(self._joined(self.body(self.views(x)), 2), x)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        whole, centre = self.views(x).unflatten(0, (2, -1))
        feats, cam = self.body.forward_with_cam(whole)  # the map Grad-CAM differentiates must feed the logits
        return self._with_parts(torch.cat([feats, self.body(centre)], 1), x), cam


@torch.no_grad()
def feature_blocks(body: nn.Module, size: int) -> tuple[int, ...]:
    """Widths of the column blocks of ``body``'s features, in their order: one block per stage
    (all its statistics together) of each zoom view and each ensemble member; a body without
    stages is one block (its feature width). Measured with one ``size`` px forward pass in eval
    mode; the body's mode is restored."""
    if isinstance(body, ZoomBody):
        return feature_blocks(body.body, size // body.zoom) * body.n_views
    if isinstance(body, EnsembleBody):
        return tuple(w for m in body.members for w in feature_blocks(m, size))
    was = body.training
    body.eval()
    try:
        x = torch.zeros(1, 3, size, size)
        if isinstance(body, StageFeatures):
            return tuple(len(body.stats) * m.shape[1] for m in body.maps(x))
        return (int(body(x).shape[1]),)
    finally:
        body.train(was)


class Standardize(nn.Module):
    """``(x - mean) / scale`` per feature, with ``mean`` and ``scale`` fitted on training features.
    Starts as the identity (old checkpoints without it load unchanged)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Standardize:
        """Fit on training features ``x (N, D)``; a constant feature keeps scale 1."""
        return self.fit_chunks([x])

    @torch.no_grad()
    def fit_chunks(self, chunks: Iterable[torch.Tensor]) -> Standardize:
        """:meth:`fit` on training features given as ``(n, D)`` chunks (never all in memory):
        the chunks' means and variances combined exactly (Chan, Golub and LeVeque)."""
        n, mean, m2 = 0, None, None
        for x in chunks:
            x = x.double()
            k, mu = len(x), x.mean(0)
            if not k:
                continue
            d2 = ((x - mu) ** 2).sum(0)
            if mean is None:
                n, mean, m2 = k, mu, d2
                continue
            delta = mu - mean
            mean = mean + delta * k / (n + k)
            m2 = m2 + d2 + delta**2 * n * k / (n + k)
            n += k
        if mean is None:
            return self
        scale = (m2 / n).sqrt()
        self.mean.copy_(mean.float())
        self.scale.copy_(torch.where(scale > 1e-8, scale, torch.ones_like(scale)).float())
        return self

    @property
    def fitted(self) -> bool:
        return not (bool((self.mean == 0).all()) and bool((self.scale == 1).all()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.scale
