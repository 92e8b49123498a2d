"""Lab layer: experiments built from the layers below: the comparison grid (:mod:`.compare`),
cross-source evaluation (:mod:`.crosseval`), augmentation previews (:mod:`.preview`), the demo."""
