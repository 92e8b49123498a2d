"""Models layer: the backbone registry (:mod:`.registry`), the built-in backbones (:mod:`.zoo`,
registered when this package is imported), pretrained weights, the model contract
(:mod:`.transfer`), stage features and checkpoints. Imports only the data layer below it."""

from . import zoo as _zoo  # noqa: F401  (registers the built-in backbones; zoo imports registry, never the reverse)
