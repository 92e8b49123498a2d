import torch

from transferlab.data.index import file_digest, load_index
from transferlab.data.loading import DecodedImageCache, ImageDataset
from transferlab.training.features import FeatureCache


def test_decoded_cache_never_exceeds_budget():
    item = torch.zeros(3, 10, 10, dtype=torch.uint8)  # 300 bytes
    cache = DecodedImageCache(budget_bytes=1000)
    loads = []
    for k in range(6):
        out = cache.get(str(k), lambda k=k: (loads.append(k), item.clone() + k)[1])
        assert int(out[0, 0, 0]) == k  # every item is returned, cached or streamed
    assert len(cache) == 3 and cache.bytes == 900 <= cache.budget
    for k in range(6):
        cache.get(str(k), lambda k=k: (loads.append(k), item.clone() + k)[1])
    assert loads == list(range(6)) + [3, 4, 5]  # only what did not fit is decoded again
    assert cache.stats()["hits"] == 3 and cache.stats()["not_cached"] == 6


def test_dataset_decodes_each_file_once(tiny_folder, monkeypatch):
    import transferlab.data.loading as data

    calls = []
    real = data.load_uint8
    monkeypatch.setattr(data, "load_uint8", lambda p, s=None: (calls.append(p), real(p, s))[1])
    samples = load_index(tiny_folder).splits["train"]
    ds = ImageDataset(samples, None, 32, DecodedImageCache(10**8))
    for _ in range(3):
        for i in range(len(ds)):
            assert ds[i][0].dtype == torch.uint8
    assert len(calls) == len(samples)


def test_feature_cache_round_trip_and_key(tmp_path, tiny_folder):
    key = {"backbone": "x", "views": 1}
    fc = FeatureCache(tmp_path, key)
    d = file_digest(next(tiny_folder.rglob("*.png")))
    fc.put(d, torch.ones(2, 4))
    fc.save()
    again = FeatureCache(tmp_path, key)
    assert again.loaded == 1 and torch.equal(again.get(d), torch.ones(2, 4))
    assert FeatureCache(tmp_path, {**key, "views": 2}).loaded == 0  # other settings, other file
    again.path.write_bytes(b"damaged")
    assert FeatureCache(tmp_path, key).loaded == 0  # rebuilt, never trusted


def test_same_bytes_same_digest(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "b").write_bytes(b"abc")
    (tmp_path / "c").write_bytes(b"abd")
    assert file_digest(tmp_path / "a") == file_digest(tmp_path / "b") != file_digest(tmp_path / "c")


def test_each_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    f = tmp_path / "a"
    f.write_bytes(b"abc")
    reads, real = [], Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    first = file_digest(f)
    assert file_digest(str(f)) == first and reads == ["a"]  # the copy check and the feature cache share it
    f.write_bytes(b"abd")
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10**9))
    assert file_digest(f) != first and reads == ["a", "a"]  # changed: read again
