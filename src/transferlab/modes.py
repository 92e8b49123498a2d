"""The training modes, as one table: what each mode loads, freezes, caches and how fast each part
learns. Every other module reads this table; none compares mode names. A new mode that these
columns can express is one new row here (and a line in ``tests/test_modes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mode", "MODES", "get_mode", "names", "UnknownMode"]


@dataclass(frozen=True)
class Mode:
    """One training mode."""

    name: str
    pretrained: bool  # start from the registry's ImageNet weights (else random init)
    frozen_body: bool  # the body's weights and batch-norm statistics stay fixed; only the head trains
    cached_features: bool  # the head trains on frozen features computed once (and cached on disk)
    probe: str | None  # first fit the head in this (cached-features) mode, then train everything (LP-FT)
    body_lr_mult: bool  # the body learns at lr x backbone_lr_mult (small data: keep ImageNet's features)
    bn_frozen_by_default: bool  # freeze_bn applies: batch-norm statistics fixed while the weights train
    lr_adamw: float  # the head's learning rate when --lr is not given (AdamW) ...
    lr_sgd: float  # ... and with SGD
    description: str

    @property
    def head_on_features(self) -> bool:
        """Whether a head is ever fitted on cached frozen features (the logistic head needs that)."""
        return self.cached_features or self.probe is not None


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("scratch", False, False, False, None, False, False, 3e-3, 0.05,
             "random init, every weight trains"),
        Mode("features", True, True, True, None, False, False, 3e-3, 0.01,
             "pretrained body frozen, only the new head trains (on cached features)"),
        Mode("finetune", True, False, False, None, True, True, 1e-3, 0.01,
             "pretrained init, every weight trains; the body at lr x backbone_lr_mult"),
        # the fine-tuning stage starts from a fitted head, so it moves more gently
        Mode("lpft", True, False, False, "features", True, True, 3e-4, 0.003,
             "linear probe on cached features, then fine-tune everything (Kumar et al., ICLR 2022)"),
    )
}  # fmt: skip


def names() -> tuple[str, ...]:
    return tuple(MODES)


class UnknownMode(KeyError):
    """A mode name the table does not hold; the message lists the modes."""


def get_mode(name: str) -> Mode:
    """The :class:`Mode` called ``name``; an unknown name raises :class:`UnknownMode` (a
    ``KeyError``) with the choices."""
    if name not in MODES:
        import difflib

        hint = difflib.get_close_matches(name, list(MODES), n=1)
        raise UnknownMode(f"unknown mode '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                       + f"; modes: {', '.join(MODES)}")  # fmt: skip
    return MODES[name]
