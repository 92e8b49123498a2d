"""The logistic head: deterministic, cross-validated strength, folds that keep an image's views together."""

import numpy as np
import pytest
import torch

from transferlab.models.transfer import create_model
from transferlab.training.logistic import C_GRID, _folds, block_weights, fit_logistic


def _data(n=60, v=3, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    feats = torch.randn(n, v, d, generator=g) * 3 + 10
    feats[..., 0] += labels.view(-1, 1) * 15  # one informative feature on a large offset and scale
    return feats, labels


def _model(d=20, classes=2):
    model = create_model("scratch_cnn", classes, pretrained=False)
    model.feature_norm = type(model.feature_norm)(d)
    model.head = torch.nn.Linear(d, classes)
    return model


def test_fit_is_deterministic_and_separates_the_classes():
    feats, labels = _data()
    m1, m2 = _model(), _model()
    torch.manual_seed(1)  # a different torch seed must not matter
    f1 = fit_logistic(m1, feats, labels, seed=0)
    f2 = fit_logistic(m2, feats, labels, seed=0)
    assert f1.C == f2.C and f1.C in C_GRID and f1.folds == 5 and len(f1.cv_log_loss) == len(C_GRID)
    assert torch.equal(m1.head.weight, m2.head.weight) and torch.equal(m1.head.bias, m2.head.bias)
    assert torch.equal(m1.feature_norm.mean, m2.feature_norm.mean)
    logits = m1.forward_head(feats[:, 0])
    assert (logits.argmax(1) == labels).float().mean() > 0.95
    assert f1.train_accuracy > 0.95


def test_two_class_logits_reproduce_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    feats, labels = _data(v=1)
    model = _model()
    found = fit_logistic(model, feats, labels, seed=0)
    z = model.feature_norm(feats[:, 0]).double().numpy()
    ref = LogisticRegression(C=found.C, max_iter=2000).fit(z, labels.numpy()).predict_proba(z)
    ours = model.forward_head(feats[:, 0]).softmax(1).detach().numpy()
    assert np.abs(ours - ref).max() < 5e-3  # solver tolerance; a wrong mapping is off by ~1


@pytest.mark.parametrize("classes,invariance", [(2, 0.0), (2, 0.5), (3, 0.0)])
def test_more_columns_than_rows_fit_in_the_rows_span_to_the_same_head(monkeypatch, classes, invariance):
    import transferlab.training.logistic as L

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % classes
    feats = torch.randn(40, 2, 300, generator=g) * 2 + 5  # 80 rows, 300 columns
    feats[..., :3] += torch.nn.functional.one_hot(labels, 3).float().unsqueeze(1) * 2
    blocks = (100, 150, 50)
    rows, plain = _model(300, classes), _model(300, classes)
    fit = fit_logistic(rows, feats, labels, blocks=blocks, invariance=invariance)
    coords = L._row_basis(np.random.default_rng(0).standard_normal((80, 300)))
    assert coords is not None and coords[0].shape == (80, 80)
    monkeypatch.setattr(L, "_row_basis", lambda z: None)  # the fit on every column, as before
    ref = fit_logistic(plain, feats, labels, blocks=blocks, invariance=invariance)
    assert fit.C == ref.C and fit.cv_log_loss.keys() == ref.cv_log_loss.keys()
    # to the solver's tolerance: at the weakest strengths L-BFGS stops short on either side
    assert max(abs(fit.cv_log_loss[c] - ref.cv_log_loss[c]) for c in fit.cv_log_loss if float(c) <= 0.1) < 2e-4
    x = torch.randn(30, 300, generator=g) * 2 + 5  # rows it never saw: the weights, not only the fit
    p, q = rows.forward_head(x).softmax(1), plain.forward_head(x).softmax(1)
    assert (p - q).abs().max() < 5e-3
    assert abs(fit.train_log_loss - ref.train_log_loss) < 1e-3


def test_three_classes():
    feats = torch.randn(90, 2, 20, generator=torch.Generator().manual_seed(0)) * 3 + 10
    labels = torch.arange(90) % 3
    feats[..., 1] += (labels == 2).float().view(-1, 1) * 15
    feats[..., 0] += (labels == 1).float().view(-1, 1) * 15
    model = _model(classes=3)
    fit_logistic(model, feats, labels)
    assert (model.forward_head(feats[:, 0]).argmax(1) == labels).float().mean() > 0.9


def test_folds_keep_the_views_of_one_image_together():
    labels = np.repeat(np.arange(40) % 2, 3)
    groups = np.repeat(np.arange(40), 3)
    folds, k = _folds(labels, groups, seed=0)
    assert k == 5
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
    tiny, k = _folds(np.array([0, 1, 1]), np.array([0, 1, 2]), 0)  # one image of class 0: no CV
    assert tiny is None and k == 0


def test_a_missing_class_is_refused():
    feats, _ = _data()
    with pytest.raises(ValueError, match="class index"):
        fit_logistic(_model(), feats, torch.zeros(60, dtype=torch.long))


def test_a_norm_fitted_from_chunks_is_kept_and_gives_the_same_head():
    """The trainer fits the stage-feature standardisation while the features stream in and tells
    the head not to fit it again: same head as one fit on all rows; a kept norm is not refitted."""
    feats, labels = _data()
    once, streamed = _model(), _model()
    fit_logistic(once, feats, labels, seed=0)
    streamed.feature_norm.fit_chunks(feats.reshape(-1, 20).split(7))
    mean = streamed.feature_norm.mean.clone()
    fit_logistic(streamed, feats, labels, seed=0, fit_norm=False)
    assert torch.equal(streamed.feature_norm.mean, mean)
    torch.testing.assert_close(streamed.feature_norm.mean, once.feature_norm.mean)
    torch.testing.assert_close(streamed.head.weight, once.head.weight, rtol=1e-4, atol=1e-5)
    stale = _model()
    stale.feature_norm.mean.fill_(5.0)  # a norm from somewhere else, not these rows
    fit_logistic(stale, feats, labels, seed=0, fit_norm=False)
    assert (stale.feature_norm.mean == 5.0).all()  # kept, as asked


def _twins(pairs=60, d=40, seed=0):
    """Each fake shares a strong identity vector with its own real twin (a face swap and the
    video it came from); the label lives in one weak direction."""
    g = torch.Generator().manual_seed(seed)
    identity = torch.randn(pairs, d, generator=g) * 3
    signal = torch.zeros(d)
    signal[0] = 0.6
    fake = identity + signal + torch.randn(pairs, d, generator=g) * 0.3
    real = identity - signal + torch.randn(pairs, d, generator=g) * 0.3
    feats = torch.stack([fake, real], 1).reshape(2 * pairs, 1, d)
    labels = torch.tensor([0, 1] * pairs)
    groups = [f"g{i}" for i in range(pairs) for _ in range(2)]
    return feats, labels, groups


def test_groups_stay_in_one_fold_and_change_the_chosen_strength():
    """Split twins read as the opposite label's copy: image-level folds then reward a head that
    ignores them (a tiny C); folds that keep each pair whole choose the strength the data needs."""
    feats, labels, groups = _twins()
    by_image = fit_logistic(_model(40), feats, labels, seed=0)
    by_group = fit_logistic(_model(40), feats, labels, seed=0, groups=groups)
    assert by_image.fold_units == 120 and by_group.fold_units == 60
    assert by_group.C > by_image.C
    assert min(by_group.cv_log_loss.values()) < min(by_image.cv_log_loss.values())


def test_images_without_a_group_are_their_own_unit_and_a_wrong_count_is_refused():
    feats, labels = _data()
    groups = ["a", "a"] + [""] * 58  # one pair, the rest ungrouped
    assert fit_logistic(_model(), feats, labels, groups=groups).fold_units == 59
    with pytest.raises(ValueError, match="group names"):
        fit_logistic(_model(), feats, labels, groups=["a"] * 3)


def test_block_weights_give_every_block_an_equal_share_of_the_prior():
    w = block_weights((2, 8, 30), 40)
    shares = [float((w[a:b] ** 2).sum()) for a, b in ((0, 2), (2, 10), (10, 40))]
    assert np.allclose(shares, 40 / 3) and np.isclose((w**2).sum(), 40)  # equal shares, the same total
    assert w[0] > w[2] > w[10]  # the narrowest block's columns weigh the most
    assert np.array_equal(block_weights(None, 5), np.ones(5)) and np.array_equal(block_weights((5,), 5), np.ones(5))
    for bad in ((2, 2), (0, 5)):
        with pytest.raises(ValueError, match="do not tile"):
            block_weights(bad, 5)


def test_blocks_lift_a_narrow_informative_block_and_fold_into_the_model():
    """Two informative columns beside 200 noise columns: with blocks (2, 200) the L2 penalty no
    longer drowns the narrow block, its coefficients grow, and the model's logits are exactly the
    fitted classifier's on the scaled columns (the factor lives in ``feature_norm.scale``)."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    n, d = 80, 202
    labels = torch.arange(n) % 2
    feats = torch.randn(n, 1, d, generator=g)
    feats[:, 0, :2] += labels.view(-1, 1) * 0.8  # a weak signal in the narrow block
    plain, shared = _model(d), _model(d)
    fit_logistic(plain, feats, labels, seed=0, grid=(1e-3,))
    found = fit_logistic(shared, feats, labels, seed=0, grid=(1e-3,), blocks=(2, d - 2))
    assert found.blocks == 2 and fit_logistic(_model(d), feats, labels, grid=(1e-3,)).blocks == 1
    signal = lambda m: m.head.weight[1, :2].abs().sum() / m.head.weight[1, 2:].abs().sum()
    assert signal(shared) > 3 * signal(plain)  # measured: 5.5x
    w = block_weights((2, d - 2), d)
    std = shared.feature_norm.scale.double().numpy() * w  # the fold undone: the plain standardisation
    assert np.allclose(std, plain.feature_norm.scale.double().numpy(), rtol=1e-5)
    z = (feats[:, 0].double().numpy() - shared.feature_norm.mean.double().numpy()) / std * w
    ref = LogisticRegression(C=1e-3, max_iter=2000).fit(z, labels.numpy()).predict_proba(z)
    ours = shared.forward_head(feats[:, 0]).softmax(1).detach().numpy()
    assert np.abs(ours - ref).max() < 5e-3


def _nuisance(n=80, d=12, seed=0):
    """Column 0 carries the label in every view; column 1 carries it in the plain view only and
    moves at random in the augmented ones (a trace a re-save or a blur wipes out)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    feats = torch.randn(n, 1, d, generator=g) + torch.randn(n, 3, d, generator=g) * 0.1  # image + view
    feats[:, :, 0] += labels.view(-1, 1) * 1.0
    feats[:, 0, 1] += labels * 2.0
    feats[:, 1:, 1] += torch.randn(n, 2, generator=g) * 2.0
    return feats, labels


def test_invariance_turns_the_head_from_what_the_augmented_views_move_and_folds_into_the_model():
    feats, labels = _nuisance()
    plain, steady = _model(12), _model(12)
    assert fit_logistic(plain, feats, labels, seed=0, grid=(0.1,)).invariance == 0.0
    found = fit_logistic(steady, feats, labels, seed=0, grid=(0.1,), invariance=10.0)
    assert found.invariance == 10.0
    ratio = lambda m: (m.head.weight[1, 1] / m.head.weight[1, 0]).abs().item()
    assert ratio(steady) < 0.2 * ratio(plain)  # the moving column loses weight (measured: 0.24 -> 0.008)
    # the head acts on the plain columns: its logits are the fitted classifier's on the whitened ones
    from sklearn.linear_model import LogisticRegression

    z = steady.feature_norm(feats.reshape(-1, 12)).double().numpy()
    views = z.reshape(80, 3, 12)
    delta = (views[:, 1:] - views[:, :1]).reshape(-1, 12)
    sigma = delta.T @ delta / len(delta)
    evals, evecs = np.linalg.eigh(np.eye(12) + 10.0 * 12 / np.trace(sigma) * sigma)  # the prior, in full
    zw = z @ (evecs * evals**-0.5) @ evecs.T
    ref = LogisticRegression(C=0.1, max_iter=2000).fit(zw, labels.repeat_interleave(3).numpy())
    ours = steady.forward_head(feats[:, 0]).softmax(1).detach().numpy()
    assert np.abs(ours - ref.predict_proba(zw[::3])).max() < 5e-3
    # one view per image: nothing to be invariant to, the plain head
    one, alike = _model(12), _model(12)
    fit_logistic(one, feats[:, :1], labels, grid=(0.1,))
    assert fit_logistic(alike, feats[:, :1], labels, grid=(0.1,), invariance=10.0).invariance == 0.0
    assert torch.equal(one.head.weight, alike.head.weight)


def _two_signals(n=80, v=2, seed=0):
    """Columns 0-9 and 10-19 each carry a weak signal of their own (independent noise): together
    they tell the classes apart better than either alone."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    feats = torch.randn(n, v, 20, generator=g)
    feats[..., 0] += labels.view(-1, 1) * 1.2
    feats[..., 10] += labels.view(-1, 1) * 1.2
    return feats, labels


def test_separate_heads_are_each_fitted_on_their_own_columns_and_added_with_stacked_factors():
    feats, labels = _two_signals()
    fused, alone = _model(), [_model(10), _model(10)]
    found = fit_logistic(fused, feats, labels, seed=0, heads=[10, 10])
    apart = [fit_logistic(m, feats[..., k * 10 : (k + 1) * 10], labels, seed=0) for k, m in enumerate(alone)]
    assert [h["columns"] for h in found.heads] == [10, 10] and [h["C"] for h in found.heads] == [f.C for f in apart]
    assert len(found.fusion) == 3 and min(found.fusion[:2]) > 0 and found.fused_by == "stacking"
    w = fused.head.weight[1] / fused.feature_norm.scale  # on the raw columns: a head's own scale cancels
    for k, m in enumerate(alone):
        own = m.head.weight[1] / m.feature_norm.scale
        part = w[k * 10 : (k + 1) * 10]
        assert torch.nn.functional.cosine_similarity(part, own, 0) > 0.9999  # the same head, times its factor
        assert (part.norm() / own.norm() - found.fusion[k]).abs() < 1e-4
    x = feats.reshape(-1, 20)
    y = labels.repeat_interleave(2)
    acc = lambda m, cols: (m.forward_head(x[:, cols]).argmax(1) == y).float().mean()
    assert acc(fused, slice(None)) > max(acc(alone[0], slice(0, 10)), acc(alone[1], slice(10, 20)))
    p = fused.forward_head(x).softmax(1)[:, 1]
    assert abs(p.mean().item() - 0.5) < 0.05  # the stacking fit's shift keeps the sum calibrated in the large


def test_a_separate_head_that_adds_nothing_gets_no_say():
    feats, labels = _two_signals()
    feats[..., 10] = torch.randn(feats.shape[:2], generator=torch.Generator().manual_seed(3))  # head 2: noise
    model = _model()
    found = fit_logistic(model, feats, labels, seed=0, heads=[10, 10])
    w = (model.head.weight[1] / model.feature_norm.scale).detach()
    z = feats.reshape(-1, 20) - feats.reshape(-1, 20).mean(0)
    say = [(z[:, k * 10 : (k + 1) * 10] @ w[k * 10 : (k + 1) * 10]).std().item() for k in range(2)]
    assert say[1] < 0.25 * say[0], (say, found.fusion)  # added as equals, it would have as much say


def test_separate_heads_must_fall_on_block_edges():
    feats, labels = _data(d=20)
    with pytest.raises(ValueError, match="do not fall on the edges"):
        fit_logistic(_model(), feats, labels, blocks=(8, 12), heads=[10, 10])
    with pytest.raises(ValueError, match="do not tile 20 columns"):  # one head: the blocks' own check
        fit_logistic(_model(), feats, labels, blocks=(8, 8))
    with pytest.raises(ValueError, match=r"head widths \[10, 5\] do not tile 20 columns"):
        fit_logistic(_model(), feats, labels, heads=[10, 5])
    found = fit_logistic(_model(), feats, labels, blocks=(4, 6, 10), heads=[10, 10])
    assert found.blocks == 3 and len(found.heads) == 2


def test_separate_heads_of_three_classes_are_each_divided_by_their_spread():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    feats = torch.randn(90, 2, 20, generator=g)
    feats[..., :3] += torch.nn.functional.one_hot(labels, 3).float().unsqueeze(1) * 1.5
    feats[..., 10:13] += torch.nn.functional.one_hot(labels, 3).float().unsqueeze(1) * 1.5
    model = _model(classes=3)
    found = fit_logistic(model, feats, labels, seed=0, heads=[10, 10])
    assert found.fused_by == "spread" and found.fusion[2] == 0.0 and min(found.fusion[:2]) > 0
    assert (model.forward_head(feats[:, 0]).argmax(1) == labels).float().mean() > 0.9
