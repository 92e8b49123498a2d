"""Evaluate layer: scoring a run on its test split or other data, robustness under perturbations
(:mod:`.evaluation`) and Grad-CAM explanations (:mod:`.explain`)."""
