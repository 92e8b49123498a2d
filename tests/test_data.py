import csv
import os

import pytest
import torch

from transferlab.data.index import DataError, Sample, carve_validation, load_index, read_manifest, write_manifest
from transferlab.data.loading import ImageDataset, collate_skipping, make_loader


def test_flat_folder_is_all_train(tiny_folder):
    idx = load_index(tiny_folder)
    assert idx.classes == ["fake", "real"]
    assert list(idx.splits) == ["train"]
    assert idx.counts() == {"train": {"fake": 10, "real": 10}}


def test_presplit_folder(presplit_folder):
    idx = load_index(presplit_folder)
    assert set(idx.splits) == {"train", "val", "test"}
    assert all(sum(c.values()) == 16 for c in idx.counts().values())


def test_bad_files_are_listed_not_fatal(messy_folder):
    root, bad = messy_folder
    idx = load_index(root)
    skipped = {p.rsplit("/", 1)[-1] for p, _ in idx.skipped}
    # header-level problems are caught at indexing; truncated/corrupt pixel data only at decode time
    assert {"empty.jpg", "notes.jpg"} <= skipped
    assert any(s.path.endswith("gray.png") for s in idx.all_samples())


def test_images_outside_the_class_folders_are_listed_as_skipped(tiny_folder):
    import shutil

    shutil.copy(tiny_folder / "fake" / "fake_00.png", tiny_folder / "stray.png")
    (tiny_folder / "notes.txt").write_text("not an image, not reported")
    idx = load_index(tiny_folder)
    assert idx.counts() == {"train": {"fake": 10, "real": 10}}
    assert idx.skipped == [(str(tiny_folder / "stray.png"), "outside the class folders: move it into one to use it")]


def test_empty_class_folder_is_an_error_naming_it(tmp_path, tiny_folder):
    (tiny_folder / "ghost").mkdir()
    (tiny_folder / "ghost" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"ghost.*no readable images.*x\.jpg"):
        load_index(tiny_folder)


def test_an_empty_data_path_is_not_the_current_folder(tiny_folder, monkeypatch):
    monkeypatch.chdir(tiny_folder)  # a valid image folder: "" would index it
    with pytest.raises(DataError, match=r"data: an empty path \(an unset variable\?\); give an image folder"):
        load_index("")


def test_fewer_than_two_classes_is_an_error(tmp_path, tiny_folder):
    import shutil

    shutil.rmtree(tiny_folder / "real")
    with pytest.raises(DataError, match="at least two"):
        load_index(tiny_folder)


def test_manifest_round_trip(tmp_path, presplit_folder):
    idx = load_index(presplit_folder)
    write_manifest(idx, tmp_path / "m" / "split.csv")
    back = read_manifest(tmp_path / "m" / "split.csv")
    assert back.counts() == idx.counts()
    assert {s.path for s in back.all_samples()} == {s.path for s in idx.all_samples()}
    with open(tmp_path / "m" / "split.csv") as f:
        first = next(csv.DictReader(f))
    assert not first["path"].startswith("/")  # relative, so the folder can move with its data


def test_manifest_without_label_column_is_rejected(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="path,label"):
        load_index(tmp_path / "m.csv")


def test_carve_validation_is_stratified_and_seeded(tiny_folder):
    samples = load_index(tiny_folder).splits["train"]
    tr, va = carve_validation(samples, 0.2, seed=1)
    assert len(va) == 4 and sorted(s.label for s in va) == [0, 0, 1, 1]
    assert not {s.path for s in tr} & {s.path for s in va}
    assert carve_validation(samples, 0.2, seed=1) == (tr, va)
    assert carve_validation(samples, 0.2, seed=2)[1] != va


def test_carve_validation_keeps_groups_whole(tiny_folder):
    from dataclasses import replace

    samples = sorted(load_index(tiny_folder).splits["train"], key=lambda s: (s.label, s.path))
    fakes, reals = samples[:10], samples[10:]  # pair fake_i with real_i for i < 6
    grouped = [replace(s, group=f"g{i}") if i < 6 else s for i, s in enumerate(fakes)]
    grouped += [replace(s, group=f"g{i}") if i < 6 else s for i, s in enumerate(reals)]
    for seed in range(6):
        tr, va = carve_validation(grouped, 0.2, seed)
        assert sorted(s.label for s in va) == [0, 0, 1, 1] and len(tr) == 16
        side = {s.path: "val" for s in va} | {s.path: "train" for s in tr}
        for g in {s.group for s in grouped if s.group}:
            assert len({side[s.path] for s in grouped if s.group == g}) == 1, (seed, g)
        assert carve_validation(grouped, 0.2, seed) == (tr, va)


def test_dataset_skips_unreadable_at_load_time(messy_folder):
    root, _ = messy_folder
    samples = [Sample(str(root / "real" / "truncated.jpg"), 1), Sample(str(root / "fake" / "gray.png"), 0)]
    ds = ImageDataset(samples, lambda im: torch.zeros(3, 8, 8))
    batch = collate_skipping([ds[0], ds[1]])
    assert batch["image"].shape == (1, 3, 8, 8)
    assert batch["index"].tolist() == [1]
    assert batch["skipped"][0][0] == 0 and "truncated" in batch["skipped"][0][1]
    assert collate_skipping([ds[0]])["image"] is None


def test_loader_with_workers_survives_bad_files(messy_folder):
    root, _ = messy_folder
    samples = [Sample(str(p), 0) for p in sorted((root / "real").iterdir())]
    loader = make_loader(samples, lambda im: torch.zeros(3, 4, 4), batch_size=3, shuffle=False, num_workers=2)
    seen, skipped = 0, []
    for batch in loader:
        seen += 0 if batch["image"] is None else len(batch["image"])
        skipped += batch["skipped"]
    assert seen + len(skipped) == len(samples)
    assert len(skipped) == 2  # truncated.jpg and notes.jpg


def test_threaded_batches_match_sequential_order(messy_folder):
    from transferlab.data.loading import threaded_batches

    root, _ = messy_folder
    samples = [Sample(str(p), 0) for p in sorted((root / "real").iterdir())]
    ds = ImageDataset(samples, lambda im: im.float().mean().reshape(1))
    batches = list(threaded_batches(ds, 3))
    assert len(batches) == -(-len(samples) // 3)
    seen = [int(i) for b in batches if b["index"] is not None for i in b["index"]]
    skipped = [i for b in batches for i, _ in b["skipped"]]
    assert sorted(seen + skipped) == list(range(len(samples))) and seen == sorted(seen)
    assert len(skipped) == 2
    assert list(threaded_batches(ImageDataset([], None), 4)) == []


def test_manifest_keeps_groups(tmp_path, presplit_folder):
    from dataclasses import replace

    idx = load_index(presplit_folder)
    plain = tmp_path / "plain.csv"
    write_manifest(idx, plain)
    assert "group" not in plain.read_text().splitlines()[0]  # no groups: the three columns as before
    first, second = idx.splits["train"][:2]
    idx.splits["train"][:2] = [replace(first, group="g0"), replace(second, group="g0")]
    write_manifest(idx, tmp_path / "grouped.csv")
    back = read_manifest(tmp_path / "grouped.csv")
    groups = {os.path.realpath(s.path): s.group for s in back.all_samples()}
    assert groups[os.path.realpath(first.path)] == groups[os.path.realpath(second.path)] == "g0"
    assert sum(1 for g in groups.values() if g) == 2
    assert all(s.group == "" for s in read_manifest(plain).all_samples())
