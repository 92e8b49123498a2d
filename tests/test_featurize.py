import dataclasses

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
