"""Train layer: the epoch loop (:mod:`.engine`), cached frozen features (:mod:`.features`), the
logistic head, calibration, the ``auto`` recipe and ``train()`` itself (:mod:`.trainer`)."""
