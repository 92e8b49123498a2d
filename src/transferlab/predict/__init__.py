"""Predict layer: the verdict rule (:mod:`.decision`), predictions from run folders
(:mod:`.predictor`) and from exported models (:mod:`.contract`, :mod:`.runtimes`). ``decision``,
``contract`` and ``runtimes`` need no torch (``transferlab predict model.onnx`` runs without it)."""
