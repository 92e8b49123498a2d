import numpy as np
from PIL import Image

from transferlab.reports.plots import GREEN, RED, plot_confusion, plot_curves, plot_prediction_grid, plot_roc


def _colour_fraction(path, hex_colour):
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return (np.abs(img - rgb).sum(2) < 30).mean()


def test_prediction_grid_titles_green_right_red_wrong(tmp_path):
    img = np.full((16, 16, 3), 128, np.uint8)
    plot_prediction_grid([(img, "a", "a", 0.9)] * 3, tmp_path / "right.png")
    plot_prediction_grid([(img, "a", "b", 0.9)] * 3, tmp_path / "wrong.png")
    assert _colour_fraction(tmp_path / "right.png", GREEN) > 0 == _colour_fraction(tmp_path / "right.png", RED)
    assert _colour_fraction(tmp_path / "wrong.png", RED) > 0 == _colour_fraction(tmp_path / "wrong.png", GREEN)


def test_other_figures_are_written(tmp_path):
    hist = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 20, "val_acc": 0.5 + e / 25}
        for e in range(1, 4)
    ]
    for p in (
        plot_curves(hist, tmp_path / "c.png"),
        plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "m.png"),
        plot_roc(np.array([0, 0.2, 1]), np.array([0, 0.8, 1]), 0.8, tmp_path / "r.png", eer=0.2),
    ):
        with Image.open(p) as im:
            assert im.size[0] > 200 and im.size[1] > 200


def test_prediction_grid_fits_any_image_into_its_cell(tmp_path):
    """Cells of 220 x 250 px; a large or non-square image keeps its aspect inside its cell; no
    items still gives a titled figure."""
    wide = np.zeros((300, 600, 3), np.uint8)
    wide[:, :300] = 255  # left half white, right half black
    path = plot_prediction_grid(
        [(wide, "a", "a", 0.9), (np.full((8, 8, 3), 90, np.uint8), "a", "b", 0.6)], tmp_path / "g.png"
    )
    with Image.open(path) as im:
        assert im.size == (2 * 220, 250)
        cell = np.asarray(im.convert("L"))[:, :220].astype(int)
    rows = np.flatnonzero((cell < 30).any(1))  # the black half of the wide image: 95 rows of 190 px wide
    assert 90 <= len(rows) <= 100
    plot_prediction_grid([], tmp_path / "empty.png", title="no wrong predictions")
    with Image.open(tmp_path / "empty.png") as im:
        assert im.size == (220, 250 + 40)
