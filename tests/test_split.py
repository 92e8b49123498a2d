import shutil
from collections import Counter
from pathlib import Path

import pytest

from conftest import FACES, make_folder
from transferlab.data.index import DataError, load_index
from transferlab.data.split import SplitSpec, duplicate_files, make_split, read_groups, split_folder


def _side(splits, path):
    """Which split holds ``path`` (group paths are resolved, so compare resolved paths)."""
    want = Path(path).resolve()
    return next(k for k, v in splits.items() if any(Path(s.path).resolve() == want for s in v))


def test_counts_per_class_and_rest_to_test(tmp_path):
    src = make_folder(tmp_path / "src", n=10)
    idx, warnings = split_folder(src, tmp_path / "out", SplitSpec(train_per_class=6, val_per_class=2, seed=3))
    assert idx.counts() == {
        "train": {"fake": 6, "real": 6},
        "val": {"fake": 2, "real": 2},
        "test": {"fake": 2, "real": 2},
    }
    assert warnings == []
    back = load_index(tmp_path / "out" / "split.csv")  # the manifest is a data source of its own
    assert back.counts() == idx.counts()


def test_fractions(tmp_path):
    src = make_folder(tmp_path / "src", n=20)
    idx, _ = split_folder(src, tmp_path / "out", SplitSpec(train_fraction=0.5, val_fraction=0.25))
    assert idx.counts()["train"] == {"fake": 10, "real": 10}
    assert idx.counts()["val"] == {"fake": 5, "real": 5}


def test_reproducible_by_seed(tmp_path):
    src = make_folder(tmp_path / "src", n=12)
    samples = load_index(src).all_samples()
    a = make_split(samples, 2, SplitSpec(train_per_class=6, seed=1))
    assert a == make_split(samples, 2, SplitSpec(train_per_class=6, seed=1))
    assert a != make_split(samples, 2, SplitSpec(train_per_class=6, seed=2))


def test_groups_stay_on_one_side(tmp_path):
    src = make_folder(tmp_path / "src", n=12)
    pairs = tmp_path / "pairs.csv"
    rows = ["file_a,file_b,similarity"] + [f"fake/fake_{i:02d}.png,real/real_{i:02d}.png,0.9" for i in range(8)]
    rows.append("fake/fake_00.png,fake/fake_09.png,0.8")  # chains into the first group
    pairs.write_text("\n".join(rows) + "\n")
    groups = read_groups(pairs, src)
    assert sorted(len(g) for g in groups) == [2] * 7 + [3]
    for seed in range(5):
        splits = make_split(load_index(src).all_samples(), 2, SplitSpec(train_per_class=6, seed=seed), groups)
        for g in groups:
            assert len({_side(splits, p) for p in g}) == 1, (seed, g)
        assert Counter(s.label for s in splits["train"]) == {0: 6, 1: 6}
        # members carry their group's name (training keeps them in one CV fold); others none
        name = {str(Path(s.path).resolve()): s.group for v in splits.values() for s in v}
        for g in groups:
            assert len({name[p] for p in g}) == 1 and name[next(iter(g))]
        assert len({name[p] for g in groups for p in g}) == len(groups)
        assert sum(1 for n in name.values() if not n) == 24 - sum(len(g) for g in groups)


def test_byte_identical_files_across_splits_warn(tmp_path):
    src = make_folder(tmp_path / "src", n=10)
    for i in range(10):  # every "real" is a copy of a "fake": some copies must straddle splits
        shutil.copy(src / "fake" / f"fake_{i:02d}.png", src / "real" / f"real_{i:02d}.png")
    idx, warnings = split_folder(src, tmp_path / "out", SplitSpec(train_per_class=5, seed=0))
    assert warnings and "byte-identical" in warnings[0]
    assert len(warnings) == len(duplicate_files(idx.splits)) + 1  # + the copies under two classes
    assert warnings[-1].startswith("10 file(s) have the same bytes under two classes")


def test_both_counts_and_fractions_is_an_error(tmp_path):
    src = make_folder(tmp_path / "src", n=4)
    with pytest.raises(ValueError, match="either"):
        split_folder(src, tmp_path / "o", SplitSpec(train_per_class=2, train_fraction=0.5))


@pytest.mark.data
def test_face_set_grouped_split():
    if not FACES.exists():
        pytest.skip(f"{FACES} missing")
    groups = read_groups(FACES / "same_source_pairs.csv", FACES)
    assert len(groups) >= 10 and all(Path(p).exists() for g in groups for p in g)
    samples = load_index(FACES, verify=False).all_samples()
    splits = make_split(samples, 2, SplitSpec(train_per_class=500, val_per_class=60, seed=0), groups)
    counts = {k: Counter(s.label for s in v) for k, v in splits.items()}
    assert counts["train"] == {0: 500, 1: 500}
    assert sum(counts["test"].values()) == 1340 - 1000 - 120
    for g in groups:
        assert len({_side(splits, p) for p in g}) == 1


def test_split_warns_when_one_class_was_saved_differently(tmp_path):
    from PIL import Image

    src = make_folder(tmp_path / "src", n=8)
    for png in (src / "real").glob("*.png"):  # every real becomes a JPEG file; the fakes stay PNG
        Image.open(png).save(png.with_suffix(".jpg"), quality=90)
        png.unlink()
    _, warnings = split_folder(src, tmp_path / "out", SplitSpec(train_per_class=4, seed=0))
    fmt = [w for w in warnings if "file format" in w]
    assert len(fmt) == 1 and "8 of 8" in fmt[0] and "(100%)" in fmt[0], warnings
    assert not any("JPEG quantisation" in w for w in warnings)  # only one class has JPEG files: one fact, one line


def test_split_warns_about_a_copy_filed_under_both_classes_whatever_the_split(tmp_path):
    src = make_folder(tmp_path / "src", n=6)
    copy = src / "fake" / "copy_of_real.png"
    shutil.copy(next((src / "real").glob("*.png")), copy)
    for seed in range(3):  # the two copies land in the same split on some seeds and not on others
        idx, warnings = split_folder(src, tmp_path / f"out{seed}", SplitSpec(train_per_class=3, seed=seed))
        (clash,) = [w for w in warnings if "under two classes" in w]
        assert clash.startswith("1 file(s) have the same bytes under two classes") and str(copy) in clash, warnings
        assert "remove or relabel" in clash
        assert len(warnings) == 1 + len(duplicate_files(idx.splits))


@pytest.mark.parametrize(
    "spec, says",
    [
        (SplitSpec(train_per_class=0), "--train-per-class must be 1 or more, got 0"),
        (SplitSpec(train_per_class=3, val_per_class=-1), "--val-per-class must be 0 or more"),
        (SplitSpec(train_fraction=1.5), "--train-fraction must be between 0 and 1"),
        (SplitSpec(train_fraction=float("nan")), "--train-fraction must be between 0 and 1"),
        (SplitSpec(train_fraction=0.8, val_fraction=0.3), r"--train-fraction \+ --val-fraction is over 1"),
        (SplitSpec(train_fraction=0.0), "nothing to train on"),
    ],
)
def test_impossible_quotas_are_refused_before_anything_is_written(tmp_path, spec, says):
    src = make_folder(tmp_path / "src", n=6)
    with pytest.raises(DataError, match=says):
        split_folder(src, tmp_path / "out", spec)
    assert not (tmp_path / "out").exists()


def test_groups_naming_files_outside_the_data_warn_or_refuse(tmp_path):
    src = make_folder(tmp_path / "src", n=6)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_a,file_b\nfake/fake_00.png,real/gone.png\nfake/fake_01.png,real/real_01.png\n")
    _, warnings = split_folder(src, tmp_path / "out", SplitSpec(train_per_class=3), pairs)
    (w,) = [w for w in warnings if "--groups" in w]
    assert w.startswith("1 of the 4 files --groups") and str((src / "real" / "gone.png").resolve()) in w
    pairs.write_text("other/a.png,other/b.png\n")
    with pytest.raises(DataError, match="names none of the images"):
        split_folder(src, tmp_path / "out2", SplitSpec(train_per_class=3), pairs)
    pairs.write_bytes(b"\xff\xfe,\x00\n")
    with pytest.raises(DataError, match=r"cannot be read \(not UTF-8 text\)"):
        split_folder(src, tmp_path / "out3", SplitSpec(train_per_class=3), pairs)


@pytest.mark.data
def test_ciplab_fakes_resaved_with_other_jpeg_tables_are_named(tmp_path):
    if not FACES.exists():
        pytest.skip(f"{FACES} missing")
    _, warnings = split_folder(FACES, tmp_path / "out", SplitSpec(train_per_class=500, val_per_class=60, seed=0))
    (cut,) = [w for w in warnings if "JPEG quantisation tables" in w]
    assert cut.startswith("164 of 640 'fake' files (26%) have JPEG quantisation tables that no other class has")
    assert "quality ~87" in cut and "(141)" in cut and "(23)" in cut


def test_a_class_left_without_test_images_is_named(tmp_path):
    src = make_folder(tmp_path / "src", n=10)
    (src / "fake" / "fake_00.png").unlink()  # fake: 9 images, real: 10
    idx, warnings = split_folder(src, tmp_path / "a", SplitSpec(train_per_class=8, val_per_class=1))
    assert idx.counts()["test"] == {"fake": 0, "real": 1}
    assert [w for w in warnings if "no test images" in w] == [
        "class 'fake' has no test images: all 9 went to train (8) and val (1), so test figures will lack it; "
        "ask for fewer with --train-per-class / --val-per-class"
    ]
    _, warnings = split_folder(src, tmp_path / "b", SplitSpec(train_per_class=1000))
    assert sum("no test images" in w for w in warnings) == 2
    _, warnings = split_folder(src, tmp_path / "c", SplitSpec(train_fraction=0.8, val_fraction=0.2))
    assert not any("no test images" in w for w in warnings)  # no test split asked for
