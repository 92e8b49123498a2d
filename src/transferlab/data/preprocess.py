"""The preprocessing one model expects, as a type: what every pipeline (training, evaluation,
prediction, export, serving) rebuilds from a checkpoint or an export's contract. Torch-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["Preprocess", "CROPS"]

CROPS = ("resize", "native")


@dataclass(frozen=True)
class Preprocess:
    """``resize``: shrink the decoded image's short side to ``decode_size`` (cacheable), resize it
    to ``resize_size``, centre-crop ``input_size``. ``native``: no resizing at all; ``crop_views``
    crops of ``input_size`` at the image's own resolution. Then ``(x - mean) / std``."""

    input_size: int
    resize_size: int
    decode_size: int | None
    crop: str = "resize"
    crop_views: int = 1
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def native(self) -> bool:
        return self.crop == "native"

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples) for checkpoints and JSON."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict | Preprocess) -> Preprocess:
        """From a checkpoint's or contract's dict (keys this version does not know are an error);
        ``crop_views`` defaults to 1 for checkpoints written before it existed."""
        if isinstance(d, Preprocess):
            return d
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown}")
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)
