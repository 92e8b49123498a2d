import dataclasses

import pytest
import torch

from transferlab.config import load_config
from transferlab.data.images import load_uint8
from transferlab.data.index import load_index
from transferlab.data.transforms import eval_transform
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model
from transferlab.training.features import FeatureCache, cache_key, extract_features, feature_loader


def _setup(tiny_folder):
    torch.manual_seed(0)
    model = create_model("scratch_cnn", 2, pretrained=False).eval()
    model.freeze_body(True)
    cfg = load_config(
        None, {"model": "scratch_cnn", "image_size": 32, "num_workers": 0, "batch_size": 8, "augment": "light"}
    )
    pre = get_spec("scratch_cnn").preprocess(32)
    return model, cfg, pre, load_index(tiny_folder).splits["train"]


def test_cached_features_equal_the_heads_inputs(tiny_folder, tmp_path):
    model, cfg, pre, samples = _setup(tiny_folder)
    views = 2
    fresh = extract_features(model, samples, pre, cfg, views, torch.device("cpu"), None)
    cache = FeatureCache(tmp_path, cache_key(model, cfg, pre, views))
    first = extract_features(model, samples, pre, cfg, views, torch.device("cpu"), cache)
    second = extract_features(
        model, samples, pre, cfg, views, torch.device("cpu"), FeatureCache(tmp_path, cache_key(model, cfg, pre, views))
    )
    assert first.computed == len(samples) and second.computed == 0
    assert torch.allclose(fresh.feats, second.feats, atol=1e-6)  # augmented views are reproducible too
    # view 0 is exactly what the uncached model feeds its head
    x = torch.stack([eval_transform(pre)(load_uint8(s.path, pre.decode_size)) for s in samples])
    with torch.no_grad():
        direct = model.forward_features(x)
    assert torch.allclose(second.feats[:, 0], direct, atol=1e-5)
    assert not torch.allclose(second.feats[:, 1], second.feats[:, 0])  # augmented views differ


def test_cache_key_changes_with_weights_and_preprocessing(tiny_folder):
    model, cfg, pre, _ = _setup(tiny_folder)
    k = cache_key(model, cfg, pre, 2)
    assert k == cache_key(model, cfg, pre, 2)
    assert k != cache_key(model, cfg, dataclasses.replace(pre, input_size=48), 2)
    with torch.no_grad():
        next(model.body.parameters()).add_(0.01)
    assert k != cache_key(model, cfg, pre, 2)


def test_feature_loader_uses_all_views_for_training(tiny_folder):
    model, cfg, pre, samples = _setup(tiny_folder)
    fs = extract_features(model, samples, pre, cfg, 2, torch.device("cpu"))
    assert len(feature_loader(fs, True, 8, True, 0).dataset) == 3 * len(samples)
    assert len(feature_loader(fs, False, 8, False, 0).dataset) == len(samples)


def test_unreadable_files_are_skipped_in_extraction(messy_folder):
    root, bad = messy_folder
    model, cfg, pre, _ = _setup(root)
    from transferlab.data.index import Sample

    # bypass the index's header check: the truncated JPEG must also be caught at decode time
    samples = load_index(root).all_samples() + [Sample(str(root / "real" / "truncated.jpg"), 1)]
    fs = extract_features(model, samples, pre, cfg, 1, torch.device("cpu"))
    assert len(fs.positions) == len(samples) - 1
    assert [samples[i].path.rsplit("/", 1)[-1] for i, _ in fs.skipped] == ["truncated.jpg"]


def test_a_set_over_the_memory_budget_stays_on_disk_and_reads_the_same(tiny_folder, tmp_path):
    model, cfg, pre, samples = _setup(tiny_folder)
    key = cache_key(model, cfg, pre, 1)
    memory = extract_features(model, samples, pre, cfg, 1, torch.device("cpu"), FeatureCache(tmp_path / "a", key))
    disk = extract_features(
        model, samples, pre, cfg, 1, torch.device("cpu"), FeatureCache(tmp_path / "b", key), memory_mb=0
    )
    assert memory.feats is not None and disk.feats is None and disk.store is not None
    assert disk.shape == memory.shape and disk.positions == memory.positions
    assert torch.allclose(disk.tensor(), memory.feats, atol=1e-6)
    assert torch.allclose(torch.cat(list(disk.chunks(3))), memory.feats.reshape(-1, memory.shape[-1]), atol=1e-6)
    for all_views, shuffle in [(True, True), (False, False)]:
        a = list(feature_loader(memory, all_views, 4, shuffle, 0))
        b = list(feature_loader(disk, all_views, 4, shuffle, 0))
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):  # same items in the same order, from memory or from disk
            assert torch.equal(x["label"], y["label"]) and torch.allclose(x["image"], y["image"], atol=1e-6)


def test_the_cache_appends_only_what_is_new_and_survives_a_cut_rows_file(tiny_folder, tmp_path):
    model, cfg, pre, samples = _setup(tiny_folder)
    key = cache_key(model, cfg, pre, 0)
    cpu = torch.device("cpu")
    half = extract_features(model, samples[:3], pre, cfg, 0, cpu, FeatureCache(tmp_path, key))
    full = extract_features(model, samples, pre, cfg, 0, cpu, FeatureCache(tmp_path, key))
    assert half.computed == 3 and full.computed == len(samples) - 3
    fresh = extract_features(model, samples, pre, cfg, 0, cpu, None)
    assert torch.allclose(full.feats, fresh.feats, atol=1e-6)
    cache = FeatureCache(tmp_path, key)
    assert cache.loaded == len(samples)
    with open(cache.rows_path, "r+b") as f:  # a rows file cut short (a crash, a full disk) is never read
        f.truncate(cache.rows_path.stat().st_size // 2)
    assert FeatureCache(tmp_path, key).loaded == 0
    again = extract_features(model, samples, pre, cfg, 0, cpu, FeatureCache(tmp_path, key))
    assert again.computed == len(samples) and torch.allclose(again.feats, fresh.feats, atol=1e-6)


def test_chunked_standardisation_equals_the_one_pass_fit():
    from transferlab.models.stages import Standardize

    x = torch.randn(103, 7) * torch.arange(1, 8) + 5
    x[:, 3] = 2.0  # a constant feature keeps scale 1
    whole = Standardize(7).fit(x)
    parts = Standardize(7).fit_chunks(x.split(10))
    assert torch.allclose(whole.mean, parts.mean, atol=1e-5) and torch.allclose(whole.scale, parts.scale, atol=1e-5)
    assert parts.scale[3] == 1.0


def test_two_writers_at_once_compute_each_image_once(tiny_folder, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    model, cfg, pre, samples = _setup(tiny_folder)
    key = cache_key(model, cfg, pre, 0)

    def run(_):
        return extract_features(model, samples, pre, cfg, 0, torch.device("cpu"), FeatureCache(tmp_path, key))

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, range(2))
    assert sorted([a.computed, b.computed]) == [0, len(samples)]  # the second waited for the lock, then read
    assert torch.allclose(a.feats, b.feats, atol=1e-6)
    assert FeatureCache(tmp_path, key).next_row == len(samples)


def test_training_from_features_on_disk_equals_training_from_memory(tiny_folder, tmp_path, monkeypatch):
    """``--image-cache-mb 0``: the features stay on disk and the head reads them batch by batch;
    the run must be the same run as with everything in memory."""
    from transferlab.training.features import StoredFeatureDataset
    from transferlab.training.trainer import train

    reads, real = [], StoredFeatureDataset.__getitem__
    monkeypatch.setattr(StoredFeatureDataset, "__getitem__", lambda self, k: reads.append(k) or real(self, k))
    results, reads_per_run = {}, {}
    for budget in (2048, 0):
        cfg = {
            "data": str(tiny_folder),
            "out": str(tmp_path / f"run{budget}"),
            "cache_dir": str(tmp_path / f"cache{budget}"),
            "model": "efficientnet_lite0",
            "mode": "features",
            "recipe": "classic",
            "head": "sgd",
            "image_size": 64,
            "epochs": 3,
            "batch_size": 4,
            "num_workers": 0,
            "progress": False,
            "augment": "light",
            "feature_views": 1,
            "image_cache_mb": budget,
        }
        results[budget] = train(load_config(None, cfg))
        reads_per_run[budget] = len(reads)
    assert reads_per_run[2048] == 0 and reads_per_run[0] > 0  # from memory, then from disk
    memory, disk = results[2048], results[0]
    assert [h["val_loss"] for h in disk.summary["history"]] == pytest.approx(
        [h["val_loss"] for h in memory.summary["history"]], abs=1e-5
    )
    a = torch.load(memory.run_dir / "best.pt", weights_only=False)["model"]
    b = torch.load(disk.run_dir / "best.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
