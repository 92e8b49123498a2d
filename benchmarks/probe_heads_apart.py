"""Probe: how finely should the logistic head be cut into separately fitted heads? ``--parts
face`` fits the views' columns and the parts' columns as two heads, each with its own C, added
with factors stacked on their out-of-fold scores (transferlab.training.logistic). Here, on the
product's own cached features of bench_repeats' five splits of ciplab and dfdc, the same fit with
the columns cut more finely: the whole view, the centre view and the parts as three heads; and
the default's two views (no parts) as one head (the default) or as two; and the product's two
heads added with equal shares (each divided by the spread of its out-of-fold scores) in place of
the stacked factors; and the parts' head with every column alike under its prior (no equal
share per block). Test ROC-AUC per split,
and each seed-0 head on the other sets' usual test splits (tpdne too).

    .venv/bin/python benchmarks/probe_heads_apart.py [--data ciplab,dfdc] [--seeds 0,1,2,3,4]
        [--variants "product,equal shares"]

Training and validation features come from the feature cache the runs filled; test features are
computed once into the same cache (the evaluation view). Writes benchmarks/results/probe_heads_apart.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transferlab.training.logistic as L
from _results import RESULTS, save
from bench_detect import split_for
from transferlab.config import load_config
from transferlab.models.registry import get_spec
from transferlab.training.features import FeatureCache, cache_key, default_cache_dir, extract_features
from transferlab.training.logistic import fit_logistic
from transferlab.training.recipe import resolve as resolve_recipe
from transferlab.training.trainer import _feature_data, build_model, prepare_data, seed_everything

DEVICE = torch.device("cpu")
STACKED = L._stacked


def features(ds: str, seed: int, others: list[str]) -> dict:
    """The parts model (feature_norm fitted on the training features), its training features,
    labels and groups, and the test features and labels of its own split and of ``others``'
    usual splits."""
    work = RESULTS / ("detect" if seed == 0 else "repeats")
    manifest = str(split_for(work, ds, seed))
    cfg = load_config(
        None, {"data": manifest, "parts": "face", "pool": "mean,std", "seed": seed, "out": "unused"}
    )  # nothing is written
    index, _ = prepare_data(cfg)
    cfg, _ = resolve_recipe(cfg, index.classes)
    seed_everything(cfg.seed)
    model = build_model(cfg, len(index.classes))
    pre = get_spec(cfg.model).preprocess(cfg.image_size, cfg.crop, cfg.crop_views, model.zoom)
    data = _feature_data(model, index, pre, cfg, DEVICE)
    plain = FeatureCache(cfg.cache_dir or default_cache_dir(), cache_key(model, cfg, pre, 0))

    def test_of(manifest: Path) -> tuple[torch.Tensor, np.ndarray]:
        samples = prepare_data(dataclasses.replace(cfg, data=str(manifest)))[0].splits["test"]
        fs = extract_features(model, samples, pre, cfg, 0, DEVICE, plain, 1e9)
        fake = index.classes.index("fake")
        return fs.tensor()[:, 0], np.array([int(samples[i].label == fake) for i in fs.positions])

    tests = {ds: test_of(split_for(work, ds, seed))}
    for other in others:
        tests[other] = test_of(split_for(RESULTS / "detect", other))
    tr = data.train_features
    return {"model": model, "x": tr.tensor(), "y": tr.labels, "groups": data.train_groups, "tests": tests}


def p_fake(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.forward_head(x).softmax(1)[:, 0].numpy()  # classes ['fake', 'real']


def variants(model) -> dict[str, tuple[int, list[list[int]]]]:
    """name -> (columns used, the blocks of each head)."""
    blocks = list(model.feature_blocks)
    per_view = len(blocks) // model.body.n_views
    whole, centre, parts = blocks[:per_view], blocks[per_view : 2 * per_view], blocks[2 * per_view :]
    views = sum(whole) + sum(centre)
    d = sum(blocks)
    return {
        "default (views, one head)": (views, [whole + centre]),
        "views as two heads": (views, [whole, centre]),
        "parts: views + parts (product)": (d, [whole + centre, parts]),
        "parts: whole + centre + parts": (d, [whole, centre, parts]),
        "parts: views + parts, equal shares": (d, [whole + centre, parts]),
        "parts: views + parts, the parts' columns alike": (d, [whole + centre, [sum(parts)]]),
    }


def equal_shares(held_out: np.ndarray, y: np.ndarray, balanced: bool) -> tuple[list[float], float]:
    """In place of stacking: each head divided by the spread of its out-of-fold scores."""
    return [1.0 / float(np.std(held_out[:, k])) for k in range(held_out.shape[1])], 0.0


def fit(feat: dict, name: str, cols: int, heads: list[list[int]], seed: int):
    from transferlab.models.stages import Standardize

    model = feat["model"]
    saved_norm, saved_head = model.feature_norm, model.head
    model.feature_norm, model.head = Standardize(cols), torch.nn.Linear(cols, 2)
    if "equal shares" in name:
        L._stacked = equal_shares
    try:
        found = fit_logistic(
            model,
            feat["x"][..., :cols],
            feat["y"],
            seed,
            groups=feat["groups"],
            blocks=[w for h in heads for w in h],
            heads=[sum(h) for h in heads] if len(heads) > 1 else None,
        )
    finally:
        L._stacked = STACKED
    scores = {test: p_fake(model, x[:, :cols]) for test, (x, _) in feat["tests"].items()}
    model.feature_norm, model.head = saved_norm, saved_head
    return found, scores


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ciplab,dfdc")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--variants", default="", help="names (comma-separated substrings) to run; all by default")
    args = ap.parse_args()
    sets = args.data.split(",")
    every = ["ciplab", "dfdc", "tpdne"]
    out: dict = {"auc": {}, "cross": {}}
    t0 = time.time()
    for ds in sets:
        for seed in [int(s) for s in args.seeds.split(",")]:
            feat = features(ds, seed, [o for o in every if o != ds] if seed == 0 else [])
            for name, (cols, heads) in variants(feat["model"]).items():
                if args.variants and not any(v in name for v in args.variants.split(",")):
                    continue
                found, scores = fit(feat, name, cols, heads, seed)
                auc = {t: float(roc_auc_score(y, scores[t])) for t, (_, y) in feat["tests"].items()}
                out["auc"].setdefault(ds, {}).setdefault(name, []).append(auc[ds])
                for t, a in auc.items():
                    if t != ds:
                        out["cross"].setdefault(f"{ds} -> {t}", {})[name] = a
                print(
                    f"{ds} seed {seed} {name}: {auc} fusion {np.round(found.fusion, 3).tolist()}",
                    f"{time.time() - t0:.0f}s",
                    flush=True,
                )
            save(
                "probe_heads_apart"
                + (f"_{args.variants}".replace(" ", "_").replace(",", "_") if args.variants else ""),
                out,
            )
    for ds, rows in out["auc"].items():
        for name, v in rows.items():
            print(f"{ds} {name}: " + ", ".join(f"{a:.3f}" for a in v) + f" mean {np.mean(v):.3f}")
    for pair, rows in out["cross"].items():
        print(pair, {k: round(v, 3) for k, v in rows.items()})


if __name__ == "__main__":
    main()
