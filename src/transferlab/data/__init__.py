"""Data layer: reading images (:mod:`.images`, torch-free), indexing folders and manifests
(:mod:`.index`, torch-free), splits, preprocessing (:mod:`.preprocess`), transforms and
perturbations, and the datasets/loaders that feed a model (:mod:`.loading`).

Imports nothing above it. Submodules are imported explicitly, so the torch-free ones stay torch-free.
"""
