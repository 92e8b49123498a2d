import numpy as np
import pytest
from PIL import Image

from transferlab.cli import main
from transferlab.lab.preview import preview_rows

FAST = {"model": "scratch_cnn", "image_size": 32}


def test_preview_rows_show_what_the_model_sees(tiny_folder):
    rows, preset, title = preview_rows(tiny_folder, n=4, views=3, overrides={**FAST, "augment": "light"})
    assert preset == "light" and "augment=light" in title
    assert len(rows) == 4 and {r[0].split(":")[0] for r in rows} == {"fake", "real"}  # classes in turn
    for _, views in rows:
        # fake/real data: the detect recipe's zoom 2 makes the model's input twice the 32 px image size
        assert len(views) == 4 and all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in views)
    one, _, _ = preview_rows(tiny_folder, n=1, views=1, overrides={**FAST, "augment": "light", "zoom": 1})
    assert one[0][1][0].shape == (32, 32, 3)
    assert any(not np.array_equal(v, views[0]) for _, views in rows for v in views[1:])
    plain, _, _ = preview_rows(tiny_folder, n=4, views=2, overrides={**FAST, "augment": "none"})
    assert all(np.array_equal(v, views[0]) for _, views in plain for v in views)  # none == evaluation view
    auto, preset, _ = preview_rows(tiny_folder, n=2, views=1, overrides=FAST)
    assert preset == "robust"  # fake/real data: auto picks the robustness preset


def test_show_cli_writes_the_grid(tiny_folder, tmp_path, capsys):
    out = tmp_path / "p.png"
    assert (
        main(
            [
                "show",
                str(tiny_folder),
                "--out",
                str(out),
                "-n",
                "2",
                "--views",
                "4",
                "--augment",
                "strong",
                "--model",
                "scratch_cnn",
                "--image-size",
                "32",
            ]
        )
        == 0
    )
    assert "augment=strong" in capsys.readouterr().out
    assert Image.open(out).size == (950, 450)  # 5 columns of 1.9 in, 2 rows of 2 in + title, at 100 dpi


def test_a_preview_needs_an_image_and_no_negative_views(tiny_folder):
    with pytest.raises(ValueError, match="1 or more images"):
        preview_rows(tiny_folder, n=0)
    with pytest.raises(ValueError, match="0 or more augmented views"):
        preview_rows(tiny_folder, n=2, views=-1)
    rows = preview_rows(tiny_folder, n=2, views=0)[0]  # the plain views alone
    assert [len(views) for _, views in rows] == [1, 1]


@pytest.mark.parametrize(
    "out, written", [("folder", "folder/augment_preview.png"), ("grid", "grid.png"), ("grid.jpg", "grid.jpg")]
)
def test_show_out_is_a_folder_a_bare_name_or_an_image_file(tiny_folder, tmp_path, capsys, out, written):
    (tmp_path / "folder").mkdir()
    flags = ["-n", "1", "--views", "1", "--model", "scratch_cnn", "--image-size", "32"]
    assert main(["show", str(tiny_folder), "--out", str(tmp_path / out), *flags]) == 0
    assert f"wrote {tmp_path / written} " in capsys.readouterr().out  # the file it wrote, not the name asked for
    assert Image.open(tmp_path / written).size[0] > 100


def test_show_refuses_an_output_that_is_not_an_image_before_reading_images(tiny_folder, tmp_path, capsys):
    assert main(["show", str(tmp_path / "no_such_data"), "--out", str(tmp_path / "grid.txt")]) == 2
    err = capsys.readouterr().err
    assert "cannot write a figure as" in err and "'.txt' is not an image format" in err and ".png" in err
    assert not (tmp_path / "grid.txt").exists()
