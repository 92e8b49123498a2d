"""Reports layer: figures (:mod:`.plots`), prediction grids (:mod:`.grids`) and self-contained HTML
reports (:mod:`.html`). Rendering only: reads run folders, never trains or predicts."""
